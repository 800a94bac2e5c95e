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
