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


def test_every_manifest_carrier_is_copied_after_every_part() -> None:
    import datetime as dt

    from shipper.core import copies, sets
    from shipper.core.restic import Snapshot

    def snap(sid: str, *parts: str) -> Snapshot:
        tags = ("shipper-set:20261203T120000Z", *(f"shipper-part:{p}" for p in parts))
        return Snapshot(sid, sid, dt.datetime(2026, 12, 3), "h", (), tags, {})

    amended = sets.group(
        [snap("a", "files", "manifest"), snap("b", "mariadb:app"), snap("c", "manifest")]
    )
    assert copies.split_carriers(amended) == (["b"], ["a", "c"])
