"""PostgreSQL fidelity: a messy master loaded over an older slave comes back exactly.

Both servers are compared with PostgreSQL's own tools; docs/fidelity.md
lists what may differ and why. Every other difference fails.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, List

import pytest

from tests.fidelity import postgresql_messy as messy
from tests.shipperenv import ShipperEnv

pytestmark = pytest.mark.slow


def shipper_for(env: ShipperEnv, server: Any) -> None:
    settings = dataclasses.asdict(server.config())
    env.write_config(databases={"enabled": True, "postgresql": [settings]})


def restore_all(env: ShipperEnv, databases: List[str]) -> None:
    for index, db in enumerate(databases):
        extra = ["--globals"] if index == 0 else []
        env.run("restore-db", "latest", f"postgresql:{db}", *extra, check=True)


@pytest.fixture
def pair(make_postgresql_server: Callable[..., Any]) -> Any:
    master, slave = make_postgresql_server(), make_postgresql_server()
    yield master, slave
    master.stop()
    slave.stop()


def test_messy_master_over_an_older_slave_comes_back_exactly(
    shipper_env: ShipperEnv, pair: Any
) -> None:
    master, slave = pair
    icu = messy.has_icu(master)
    messy.build_master(master, icu)
    messy.build_slave(slave, icu)
    databases = [messy.SHOP, messy.LATIN, messy.PLAIN] + ([messy.ICU] if icu else [])
    env = shipper_env
    env.run("init", check=True)
    shipper_for(env, master)
    env.run("snapshot", check=True)

    shipper_for(env, slave)
    restore_all(env, databases)
    restore_all(env, databases)  # a second load over the first changes nothing

    # docs/fidelity.md: roles only the slave has are kept, an expiry the
    # master's role lacks becomes 'infinity', and the loading role keeps its
    # own password.
    assert slave.sql("SELECT count(*) FROM pg_roles WHERE rolname = 'slave_only'") == [(1,)]
    slave.sql("DROP ROLE slave_only")
    expiry = "SELECT rolvaliduntil::text FROM pg_authid WHERE rolname = 'replicator'"
    assert slave.sql(expiry) == [("infinity",)]
    slave.sql("UPDATE pg_authid SET rolvaliduntil = NULL WHERE rolname = 'replicator'")
    for role in ("alice", "Bob-Reporter", "replicator"):
        assert messy.scram_of(slave, role) == messy.scram_of(master, role)
    slave.connect(user="alice", password=messy.ODD_PASSWORD, tcp=True).close()
    slave.sql(f"ALTER ROLE postgres PASSWORD '{messy.scram_of(master, 'postgres')}'")

    found = messy.differences(master, slave, databases)
    assert not found, "\n\n".join(f"{aspect}:\n{diff}" for aspect, diff in found.items())
