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


# ---------------------------------------------------------------- the copies' fast path (fakes)


class FakeRepo:
    """A restic repository as the copies see it: snapshots by id, and every call made."""

    def __init__(self) -> None:
        self.snaps: dict = {}
        self.exists = True
        self.calls: list = []
        self.fail = False


class FakeRestic:
    repos: dict = {}

    def __init__(self, repository, cache_dir=None) -> None:
        self.repository = repository
        self.repo = FakeRestic.repos[repository.url]

    def snapshots(self):
        from shipper.core.restic import RepositoryMissing

        self.repo.calls.append("snapshots")
        if not self.repo.exists:
            raise RepositoryMissing("no repository")
        return sorted(self.repo.snaps.values(), key=lambda snap: snap.time)

    def init_copying(self, source) -> None:
        self.repo.calls.append("init")
        self.repo.exists = True

    def copy(self, source, ids):
        from shipper.core.restic import RepositoryMissing, ResticError

        self.repo.calls.append(("copy", list(ids)))
        if not self.repo.exists:
            raise RepositoryMissing("no repository")
        if self.repo.fail:
            raise ResticError("restic copy failed (exit 1): no space left on device")
        offered = FakeRestic.repos[source.url].snaps
        copied = [i for i in ids if i not in self.repo.snaps]
        self.repo.snaps.update({i: offered[i] for i in ids})
        return [i[:8] for i in copied]


class Fleet:
    """A source and one destination 'spare' of fakes, and the sets taken so far."""

    def __init__(self, tmp_path, monkeypatch) -> None:
        import types

        from shipper.core import copies

        FakeRestic.repos = {"source": FakeRepo(), "spare": FakeRepo()}
        self.source, self.spare = FakeRestic.repos["source"], FakeRestic.repos["spare"]
        self.spare.exists = False
        self.cfg = types.SimpleNamespace(state=tmp_path)
        repo = types.SimpleNamespace(url="spare")
        self.dest = types.SimpleNamespace(
            name="spare",
            probe=lambda: None,
            refuses_new_repository=lambda through, record: None,
            repository=lambda: repo,
            entry=types.SimpleNamespace(catch_up=None),
        )
        monkeypatch.setattr(copies, "Restic", FakeRestic)
        monkeypatch.setattr(copies.destinations, "copies", lambda cfg: [self.dest])
        self.taken: list = []

    def take(self):
        """A set of two snapshots (a dump, then files + manifest) in the source."""
        import datetime as dt

        from shipper.core import copies
        from shipper.core.restic import Snapshot

        index = len(self.taken)
        set_id = f"20261203T1{index:02d}000Z"
        when = dt.datetime(2026, 12, 3, 10, index)
        ids = []
        for number, parts in enumerate((("mariadb:app",), ("files", "manifest"))):
            sid = f"{index:02d}{number:02d}" + "ab" * 30
            tags = (f"shipper-set:{set_id}", *(f"shipper-part:{p}" for p in parts))
            tags += ("shipper-status:complete",) if "manifest" in parts else ()
            self.source.snaps[sid] = Snapshot(sid, sid[:8], when, "h", (), tags, {})
            ids.append(sid)
        new = copies.NewSet(set_id, self.taken[-1] if self.taken else None, ids)
        self.taken.append(set_id)
        return new

    def copy(self, new):
        from shipper.core import copies

        FakeRestic.repos["source"].calls.clear()
        self.spare.calls.clear()
        (result,) = copies.copy_all(self.cfg, FakeRestic(types_url("source")), new)
        assert result.error is None, result.error
        return result

    def sets_there(self):
        from shipper.core import sets

        return sorted(s.id for s in sets.group(self.spare.snaps.values()))


def types_url(url: str):
    import types

    return types.SimpleNamespace(url=url)


def test_one_new_set_after_a_good_copy_is_one_restic_copy_and_no_listing(
    tmp_path, monkeypatch
) -> None:
    fleet = Fleet(tmp_path, monkeypatch)
    first = fleet.copy(fleet.take())
    assert first.listed and fleet.spare.calls[0] == "snapshots" and "init" in fleet.spare.calls
    previous = fleet.source.snaps.copy()
    new = fleet.take()
    second = fleet.copy(new)
    assert not second.listed and second.copied == [new.id]
    # One process for the destination, none for the source; the previous set is offered first.
    assert fleet.spare.calls == [("copy", [*sorted(previous), *new.snapshots])]
    assert fleet.source.calls == []
    assert fleet.sets_there() == fleet.taken


def test_a_record_that_lies_is_found_out_and_every_set_comes_back(tmp_path, monkeypatch) -> None:
    fleet = Fleet(tmp_path, monkeypatch)
    for _ in range(3):
        fleet.copy(fleet.take())
    fleet.spare.snaps.clear()  # emptied behind shipper's back; the repository stays
    result = fleet.copy(fleet.take())
    assert result.listed and sorted(result.copied) == fleet.taken
    assert fleet.sets_there() == fleet.taken
    after = fleet.copy(fleet.take())  # the record is true again: fast
    assert not after.listed and fleet.sets_there() == fleet.taken


def test_a_removed_repository_is_made_again_in_the_same_run(tmp_path, monkeypatch) -> None:
    fleet = Fleet(tmp_path, monkeypatch)
    fleet.copy(fleet.take())
    fleet.copy(fleet.take())
    fleet.spare.snaps.clear()
    fleet.spare.exists = False
    result = fleet.copy(fleet.take())
    assert result.listed and "init" in fleet.spare.calls
    assert fleet.sets_there() == fleet.taken


def test_after_a_failed_copy_or_a_set_in_between_the_copy_lists(tmp_path, monkeypatch) -> None:
    from shipper.core import copies

    fleet = Fleet(tmp_path, monkeypatch)
    fleet.copy(fleet.take())
    fleet.spare.fail = True
    (failed,) = copies.copy_all(fleet.cfg, FakeRestic(types_url("source")), fleet.take())
    assert failed.error and "no space left" in failed.error
    fleet.spare.fail = False
    assert fleet.copy(fleet.take()).listed  # the record says the last copy failed
    assert fleet.sets_there() == fleet.taken
    fleet.take()  # taken, never copied (the run was killed before its copies)
    assert fleet.copy(fleet.take()).listed
    assert fleet.sets_there() == fleet.taken
    assert not fleet.copy(fleet.take()).listed


def test_the_copy_record_reads_back_and_a_bad_file_is_no_record(tmp_path) -> None:
    from shipper.core import state

    record = state.CopyRecord("rest:http://x/", "20261203T100000Z", ["a", "b"], True)
    state.save_copy_record(tmp_path, "spare", record)
    assert state.copy_record(tmp_path, "spare") == record
    assert (tmp_path / "copies" / "spare.json").stat().st_mode & 0o077 == 0
    (tmp_path / "copies" / "spare.json").write_text('{"snapshots": 3, "ok": true}')
    assert state.copy_record(tmp_path, "spare") == state.CopyRecord()
    assert state.copy_record(tmp_path, "other") == state.CopyRecord()
    # One damaged value and the record vouches for nothing: the next copy lists both sides.
    damaged = '{"url": "u", "through": "20261203T100000Z", "snapshots": ["a", 7], "ok": true}'
    (tmp_path / "copies" / "spare.json").write_text(damaged)
    assert state.copy_record(tmp_path, "spare") == state.CopyRecord()


def test_restic_copy_output_names_the_snapshots_it_copied() -> None:
    from shipper.core.restic import copied_ids

    lines = [
        "",
        "snapshot 1a2b3c4d of [/srv] at 2026-12-03 10:00:00 +0000 UTC by root@m)",
        "skipping source snapshot 1a2b3c4d, was already copied to snapshot 99aa88bb",
        "",
        "snapshot 5e6f7a8b of [/srv] at 2026-12-03 11:00:00 +0000 UTC by root@m)",
        "  copy started, this may take a while...",
        "snapshot 0c0c0c0c saved",
    ]
    assert copied_ids(lines) == ["5e6f7a8b"]
