"""Database servers that go wrong on the master: killed mid-dump, down, a user without rights.

A master with files, a MariaDB database (on the shared test server) and a
PostgreSQL database on a server of its own, which the test kills and starts
again. Each fault gives a partial set that names what failed and keeps every
other part; the run after the fault is fixed is complete, and its parts
restore: the files byte for byte, the database equal to the source.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest

from tests.faults.helpers import EXIT_PARTIAL, restored_digest, snapshot_ok, wait_for_descendant
from tests.shipperenv import ShipperEnv, make_dataset, tree_digest

pytestmark = pytest.mark.slow


@pytest.fixture
def pg(make_postgresql_server: Any) -> Iterator[Any]:
    server = make_postgresql_server()
    yield server
    server.stop()


@pytest.fixture
def site(fresh_repo: ShipperEnv, mariadb_server: Any, pg: Any) -> Iterator[Dict[str, Any]]:
    shipper_env = fresh_repo
    tag = uuid.uuid4().hex[:6]
    shop, vault = f"shop_{tag}", f"vault_{tag}"
    for name in (shop, vault):
        mariadb_server.sql(f"CREATE DATABASE {name}")
        mariadb_server.sql(f"CREATE TABLE {name}.items (id INT PRIMARY KEY)")
    mariadb_server.sql(f"INSERT INTO {shop}.items VALUES (1), (2)")
    pg.sql("CREATE DATABASE app")
    pg.sql("CREATE TABLE notes (id int PRIMARY KEY, body text)", "app")
    pg.sql("INSERT INTO notes SELECT g, md5(g::text) FROM generate_series(1, 300) g", "app")
    databases = {
        "enabled": True,
        "mariadb": [dataclasses.asdict(mariadb_server.config(databases=[shop]))],
        "postgresql": [dataclasses.asdict(pg.config(databases=["app"]))],
    }
    shipper_env.write_config(databases=databases)
    make_dataset(shipper_env.src, files=40, mib=1)
    yield {"env": shipper_env, "shop": shop, "vault": vault, "databases": databases}
    for name in (shop, vault):
        mariadb_server.sql(f"DROP DATABASE IF EXISTS {name}")
    mariadb_server.sql("DROP USER IF EXISTS nopriv@localhost")


def partial(result: subprocess.CompletedProcess) -> Dict[str, Dict[str, Any]]:
    """The parts of a run that must have ended partial, by name."""
    assert result.returncode == EXIT_PARTIAL, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return {p["name"]: p for p in json.loads(result.stdout)["parts"]}


def assert_kept(parts: Dict[str, Dict[str, Any]], *names: str) -> None:
    for name in names:
        assert parts[name]["outcome"] == "ok" and parts[name]["snapshot"] or name == "files", parts


def pg_notes(pg: Any, database: str = "app") -> Any:
    return pg.sql("SELECT count(*), md5(string_agg(body, ',' ORDER BY id)) FROM notes", database)


def test_database_server_killed_mid_dump_then_down_then_back(
    site: Dict[str, Any], pg: Any, tmp_path: Path
):
    env, shop = site["env"], site["shop"]
    snapshot_ok(env)

    # Killed mid-dump: pg_dump waits for a lock held by another session, then the server dies.
    holder = pg.connect("app")
    holder.cursor().execute("BEGIN; LOCK TABLE notes IN ACCESS EXCLUSIVE MODE")
    run = env.popen("snapshot", "--json", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_descendant(
        run.pid, lambda a: bool(a) and a[0].endswith("pg_dump") and "app" in " ".join(a)
    )
    time.sleep(0.3)
    pg.kill()
    out, err = run.communicate(timeout=120)
    parts = partial(subprocess.CompletedProcess([], run.returncode, out, err))
    assert parts["postgresql:app"]["outcome"] == "failed", parts
    assert "postgresql:app" in parts["postgresql:app"]["error"]
    assert_kept(parts, "files", f"mariadb:{shop}", "mariadb:globals")

    # Down: the run names the server and its database, and keeps the other parts.
    down = partial(env.run("snapshot", "--json"))
    failed = down["postgresql:app"]
    assert failed["outcome"] == "failed" and pg.socket in failed["error"], failed
    assert failed["error"].startswith("app not dumped: postgresql at "), failed
    assert_kept(down, "files", f"mariadb:{shop}", "mariadb:globals")

    # Back: complete, and every part restores.
    pg.start()
    set_id = snapshot_ok(env)
    assert restored_digest(env, set_id, tmp_path / "files") == tree_digest(env.src)
    env.run("restore-db", set_id, "postgresql:app", "--as", "app_copy", check=True)
    assert pg_notes(pg, "app_copy") == pg_notes(pg)


def test_a_user_without_privileges_on_one_database(site: Dict[str, Any], mariadb_server: Any):
    env, shop, vault = site["env"], site["shop"], site["vault"]
    password = tmp = env.base / "nopriv-password"
    tmp.write_text("nopriv pw\n")
    password.chmod(0o600)
    mariadb_server.sql("CREATE USER nopriv@localhost IDENTIFIED BY 'nopriv pw'")
    mariadb_server.sql(
        f"GRANT SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES ON {shop}.* TO nopriv@localhost"
    )
    entry = dataclasses.asdict(
        mariadb_server.config(databases=[shop, vault], user="nopriv", password_file=str(password))
    )
    env.write_config(databases={**site["databases"], "mariadb": [entry]})
    parts = partial(env.run("snapshot", "--json"))
    assert parts[f"mariadb:{vault}"]["outcome"] == "failed", parts
    error = parts[f"mariadb:{vault}"]["error"]
    assert vault in error and "denied" in error.lower(), error
    assert_kept(parts, "files", f"mariadb:{shop}", "postgresql:app", "postgresql:globals")
