"""`shipper config validate` says what database autodetection found (databases.X: null)."""

from __future__ import annotations

import dataclasses

from shipper import databases
from shipper.core import config
from tests.shipperenv import ShipperEnv

PREFIX = "databases, autodetected: "


def detected_lines(env: ShipperEnv) -> list:
    result = env.run("config", "validate", check=True)
    return [line[len(PREFIX) :] for line in result.stdout.splitlines() if line.startswith(PREFIX)]


def test_validate_reports_detection_for_each_null_engine_only(
    shipper_env: ShipperEnv, postgresql_server
):
    env = shipper_env
    pinned = dataclasses.asdict(postgresql_server.config())
    env.write_config(databases={"enabled": True, "mariadb": None, "postgresql": [pinned]})
    assert detected_lines(env) == databases.detect_local(["mariadb"])
    env.write_config(databases={"enabled": True, "mariadb": None, "postgresql": None})
    assert detected_lines(env) == databases.detect_local()
    env.write_config(databases={"enabled": True, "mariadb": [], "postgresql": [pinned]})
    assert detected_lines(env) == []
    env.write_config(databases={"enabled": False, "mariadb": None, "postgresql": None})
    assert detected_lines(env) == []


def test_detection_finds_a_listening_server_and_names_a_missing_socket(
    monkeypatch, mariadb_server, postgresql_server, tmp_path
):
    """What a null engine would dump: a server that listens on the default socket, or none."""
    defaults = {
        "mariadb": mariadb_server.config(),
        "postgresql": postgresql_server.config(host=str(tmp_path)),  # no server there
    }
    monkeypatch.setattr(databases, "default_server", defaults.__getitem__)
    mariadb, postgresql = databases.detect_local()
    assert mariadb == f"mariadb: local server on {mariadb_server.socket} (it will be dumped)"
    assert postgresql.startswith("postgresql: no local server") and str(tmp_path) in postgresql
    # And the engines a snapshot would use are exactly those.
    chosen = config.Databases(enabled=True, parallel=1, mariadb=None, postgresql=None)
    [engine] = databases.engines_from_config(chosen)
    assert engine.label == "mariadb" and engine.server.socket == mariadb_server.socket
