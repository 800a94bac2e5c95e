"""Which destination a config names, and the restic arguments each gives."""

from __future__ import annotations

from shipper.core import destinations
from shipper.core.destinations import LocalPath, RestServer

REST = (
    "repository:\n  url: rest:https://slave:8000/master/\n  cacert: /etc/shipper/slave.pem\n"
    "  rest_user: master\n  local_path: /var/lib/shipper/repo/master\n"
)


def test_the_master_pushes_to_the_rest_server(make_config) -> None:
    cfg = config_with(make_config, REST)
    chosen = destinations.for_config(cfg)
    assert isinstance(chosen, RestServer)
    repo = chosen.repository()
    assert (repo.url, repo.cacert, repo.rest_user) == (
        "rest:https://slave:8000/master/",
        "/etc/shipper/slave.pem",
        "master",
    )
    assert chosen.local_folder() is None


def test_the_slave_reads_its_own_copy_unless_remote(make_config) -> None:
    cfg = config_with(make_config, REST + "role: slave\n")
    own = destinations.for_config(cfg)
    assert isinstance(own, LocalPath)
    assert (own.repository().url, own.repository().cacert) == ("/var/lib/shipper/repo/master", None)
    assert str(own.local_folder()) == "/var/lib/shipper/repo/master"
    assert isinstance(destinations.for_config(cfg, remote=True), RestServer)


def test_a_path_is_a_local_destination(make_config) -> None:
    chosen = destinations.for_config(make_config())
    assert isinstance(chosen, LocalPath) and str(chosen.local_folder()) == "/srv/repo"
    assert chosen.probe() is None


def test_an_unreachable_receiver_is_named_with_what_to_do(make_config) -> None:
    cfg = config_with(make_config, REST.replace("slave:8000", "127.0.0.1:9"))
    why = destinations.for_config(cfg).probe()
    assert why and "cannot reach the receiver at 127.0.0.1:9" in why
    assert "systemctl start shipper-receiver.service" in why


def config_with(make_config, text: str):
    """make_config with the repository section replaced."""
    cfg = make_config()
    from shipper.core import config

    state = cfg.state_dir
    return config.parse(text + f"state_dir: {state}\n", "unit.yml")


S3 = (
    "destinations:\n  - name: offsite\n    kind: s3\n    endpoint: https://s3.example.net\n"
    "    bucket: shipper/master\n    region: eu-1\n"
    "    access_key_id_file: {folder}/key-id\n    secret_access_key_file: {folder}/secret\n"
)


def test_an_s3_destination_passes_its_keys_by_environment_only(make_config, tmp_path) -> None:
    (tmp_path / "key-id").write_text("AKIDEXAMPLE\n")
    (tmp_path / "secret").write_text("very-secret\n")
    cfg = make_config(S3.format(folder=tmp_path))
    chosen = destinations.named(cfg, "offsite")
    repo = chosen.repository()
    assert repo.url == "s3:https://s3.example.net/shipper/master"
    assert repo.options == ("s3.region=eu-1", "s3.retries=1")
    assert repo.secret_env() == {
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "very-secret",
    }
    assert "very-secret" not in repr(repo) and "very-secret" not in repo.location()
    assert [d.name for d in destinations.copies(cfg)] == ["offsite"]
    assert destinations.named(cfg, None).name == "primary"


def test_destination_problems_name_file_line_and_key(make_config) -> None:
    import pytest

    from shipper.core import config

    text = "destinations:\n  - name: offsite\n    kind: s3\n    endpoint: http://x\n"
    text += "  - name: offsite\n    kind: local\n    url: /srv/copy\n"
    with pytest.raises(config.ConfigError) as caught:
        make_config(text)
    problems = caught.value.problems
    assert any("unit.yml:" in p and "a s3 destination needs bucket" in p for p in problems)
    assert any("name 'offsite' is used twice" in p for p in problems)
    with pytest.raises(config.ConfigError) as caught:
        make_config("destinations:\n  - {name: near, kind: local, url: /x, object_lock_days: 3}\n")
    assert any(
        "object_lock_days applies to s3 destinations only" in p for p in caught.value.problems
    )


def test_each_set_goes_oldest_first_its_manifest_carriers_after_its_parts() -> None:
    import datetime as dt

    from shipper.core import copies, sets
    from shipper.core.restic import Snapshot

    def snap(sid: str, set_id: str, minute: int, *parts: str) -> Snapshot:
        tags = (f"shipper-set:{set_id}", *(f"shipper-part:{p}" for p in parts))
        return Snapshot(sid, sid, dt.datetime(2026, 12, 3, 12, minute), "h", (), tags, {})

    older, newer = "20261203T110000Z", "20261203T120000Z"
    found = sets.group(
        [
            snap("a", newer, 1, "files", "manifest"),
            snap("b", newer, 2, "mariadb:app"),
            snap("c", newer, 3, "manifest"),
            snap("d", older, 0, "files"),
            snap("e", older, 0, "manifest"),
        ]
    )
    assert copies.copy_order(found) == ["d", "e", "b", "a", "c"]


def test_only_sets_newer_than_the_newest_there_are_copied() -> None:
    from shipper.core import copies, sets

    def whole(set_id: str) -> sets.SnapshotSet:
        return sets.SnapshotSet(set_id)

    source = [whole(i) for i in ("20261203T140000Z", "20261203T130000Z", "20261203T120000Z")]
    source.append(whole("20261203T110000Z"))
    # 11:00 was forgotten there by its own retention: it must not come back.
    there = [whole("20261203T120000Z")]
    assert [s.id for s in copies.missing_sets(source, there, None)] == [
        "20261203T130000Z",
        "20261203T140000Z",
    ]
    assert [s.id for s in copies.missing_sets(source, there, 1)] == ["20261203T140000Z"]
    assert [s.id for s in copies.missing_sets(source, [], 2)] == [
        "20261203T130000Z",
        "20261203T140000Z",
    ]


def test_the_lock_keeps_what_the_retention_drops_until_it_ends() -> None:
    import datetime as dt

    from shipper.core import sets
    from shipper.core.restic import Snapshot
    from shipper.slave import retention

    def complete(when: dt.datetime) -> sets.SnapshotSet:
        set_id = when.strftime(sets.ID_FORMAT)
        tags = (f"shipper-set:{set_id}", "shipper-part:manifest", "shipper-status:complete")
        return sets.SnapshotSet(set_id, [Snapshot(set_id, "m", when, "h", (), tags, {})])

    now = dt.datetime(2026, 11, 25, 16, 40, tzinfo=dt.timezone.utc)
    found = [complete(now - dt.timedelta(days=days)) for days in (0, 2, 6, 9)]
    policy = retention.Policy("1h", 0, 0, 0, object_lock_days=7)
    plan = retention.plan(found, policy, now=now)
    kept = {d.set.id: d.reasons for d in plan.decisions if d.keep}
    assert [d.set.id for d in plan.decisions if d.only_locked] == [found[1].id, found[2].id]
    assert kept[found[0].id][0].startswith("newest complete set")
    assert kept[found[2].id][0].startswith("object lock until 2026-11-26 16:40 UTC")
    assert plan.dropped == [found[3]]
    assert "Object Lock (7 days)" in policy.describe()
    without = retention.plan(found, retention.Policy("1h", 0, 0, 0), now=now)
    assert len(without.dropped) == 3


def test_a_destination_retention_overrides_key_by_key(make_config) -> None:
    from shipper.slave import retention

    text = (
        "retention:\n  keep_within: 7d\n  daily: 9\n"
        "destinations:\n  - name: far\n    kind: s3\n    endpoint: http://s3\n    bucket: far\n"
        "    access_key_id_file: /k\n    secret_access_key_file: /s\n"
        "    retention: {daily: 3}\n    object_lock_days: 5\n"
        "  - name: near\n    kind: local\n    url: /srv/near\n"
    )
    cfg = make_config(text)
    far, near = cfg.destinations
    assert retention.Policy.from_config(cfg, far) == retention.Policy(
        "7d", 168, 3, 12, cfg.repository.lock_wait, 5
    )
    assert retention.Policy.from_config(cfg, near) == retention.Policy.from_config(cfg)
