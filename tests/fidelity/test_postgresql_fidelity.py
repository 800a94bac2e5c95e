"""PostgreSQL fidelity: a messy master loaded over an older slave comes back exactly.

Both servers are compared with PostgreSQL's own tools; docs/fidelity.md
lists what may differ and why. Every other difference fails.
"""

from __future__ import annotations

import dataclasses
import io
import os
import subprocess
from typing import Any, Callable, List

import pytest

from shipper.databases import DatabaseError, PostgreSQL, base
from tests.fidelity import postgresql_messy as messy
from tests.shipperenv import ShipperEnv

pytestmark = pytest.mark.slow


def shipper_for(env: ShipperEnv, server: Any) -> None:
    settings = dataclasses.asdict(server.config())
    env.write_config(databases={"enabled": True, "postgresql": [settings]})


def restore_all(env: ShipperEnv, databases: List[str]) -> None:
    for index, db in enumerate(databases):
        extra = ["--globals"] if index == 0 else []
        env.run("restore-db", "latest", f"postgresql:{db}", "--replace", *extra, check=True)


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
    databases = [messy.SHOP, messy.LATIN, messy.PLAIN, messy.TEMPLATE]
    databases += [messy.ICU] if icu else []
    env = shipper_env
    env.run("init", check=True)
    shipper_for(env, master)
    env.run("snapshot", check=True)

    shipper_for(env, slave)
    restore_all(env, databases)
    restore_all(env, databases)  # a second load over the first changes nothing

    messy.settle_documented(master, slave)
    found = messy.differences(master, slave, databases)
    assert not found, "\n\n".join(f"{aspect}:\n{diff}" for aspect, diff in found.items())


def test_failed_loads_say_what_to_do_and_keep_the_slave_database(
    shipper_env: ShipperEnv, pair: Any
) -> None:
    master, slave = pair
    env = shipper_env
    for statement in (
        "CREATE ROLE owner_only_on_master",
        "CREATE DATABASE app OWNER owner_only_on_master CONNECTION LIMIT 9",
    ):
        master.sql(statement)
    master.sql(messy.tablespace(master, "postgres"))
    master.sql(f'CREATE DATABASE spaced TABLESPACE "{messy.SPACE}"')
    master.sql("CREATE TABLE t (v text); INSERT INTO t VALUES ('master')", "spaced")
    master.sql("CREATE TABLE t (v text); INSERT INTO t VALUES ('master')", "app")
    for db in ("app", "spaced"):
        slave.sql(f"CREATE DATABASE {db} CONNECTION LIMIT 2")
        slave.sql("CREATE TABLE t (v text); INSERT INTO t VALUES ('slave')", db)
    env.run("init", check=True)
    shipper_for(env, master)
    env.run("snapshot", check=True)
    shipper_for(env, slave)

    # Without the globals the owner role and the tablespace are missing.
    for db, names in (("app", "owner_only_on_master"), ("spaced", messy.SPACE)):
        failed = env.run("restore-db", "latest", f"postgresql:{db}", "--replace")
        assert failed.returncode == 1
        assert "Traceback" not in failed.stderr and len(failed.stderr.strip().splitlines()) == 1
        message = failed.stderr
        assert f"database {db}" in message and names in message, message
        assert "globals" in message, message
        assert slave.sql("SELECT v FROM t", db) == [("slave",)]
        limit = f"SELECT datconnlimit FROM pg_database WHERE datname = '{db}'"
        assert slave.sql(limit) == [(2,)]
    assert slave.sql("SELECT count(*) FROM pg_database WHERE datname LIKE 'shipper%'") == [(0,)]

    slave.sql(messy.tablespace(slave, "postgres"))  # one machine: each needs its own folder
    env.run("restore-db", "latest", "postgresql:app", "--globals", "--replace", check=True)
    env.run("restore-db", "latest", "postgresql:spaced", "--replace", check=True)
    assert slave.sql("SELECT v FROM t", "spaced") == [("master",)]
    assert slave.sql("SELECT v FROM t", "app") == [("master",)]
    assert slave.sql("SELECT datconnlimit FROM pg_database WHERE datname = 'app'") == [(9,)]


def test_an_old_copy_that_cannot_be_dropped_is_named(
    postgresql_server: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    server = postgresql_server
    server.sql("DROP DATABASE IF EXISTS stuck")
    server.sql("CREATE DATABASE stuck")
    server.sql("CREATE TABLE t (v text); INSERT INTO t VALUES ('before')", "stuck")
    engine = PostgreSQL(server.config(databases=["stuck"]))
    with engine.credentials():
        job = engine.dump_jobs()[1]
        dump = subprocess.run(job.command, env={**os.environ, **job.env}, capture_output=True)
    server.sql("UPDATE t SET v = 'after'", "stuck")
    real_drop = engine._drop_database
    aside = base.scratch_name("old", "stuck")

    def stuck_drop(name: str) -> None:
        if name == aside and server.sql(f"SELECT 1 FROM pg_database WHERE datname = '{aside}'"):
            raise DatabaseError("postgresql: ERROR: cannot drop it")
        real_drop(name)

    monkeypatch.setattr(engine, "_drop_database", stuck_drop)
    engine.load(io.BytesIO(dump.stdout), "stuck")  # the old copy stays: a warning, no failure
    assert server.sql("SELECT v FROM t", "stuck") == [("before",)]
    assert f"its old copy {aside} could not be dropped" in caplog.text

    with pytest.raises(DatabaseError, match=f"drop {aside} by hand and load again"):
        engine.load(io.BytesIO(dump.stdout), "stuck")
    monkeypatch.undo()
    engine.load(io.BytesIO(dump.stdout), "stuck")
    assert not server.sql(f"SELECT 1 FROM pg_database WHERE datname = '{aside}'")
    server.sql("DROP DATABASE stuck")  # the server is shared with other tests
