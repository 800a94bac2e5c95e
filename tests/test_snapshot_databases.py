"""Database parts in a set, against real MariaDB and PostgreSQL servers and real restic."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid

import pytest

from shipper.core import config, sets
from shipper.core import manifest as manifests
from shipper.core.restic import Restic
from tests.shipperenv import ShipperEnv

EXIT_PARTIAL = 4


def server_entry(server, **overrides) -> dict:
    return dataclasses.asdict(server.config(**overrides))


@pytest.fixture
def db_env(shipper_env: ShipperEnv, mariadb_server, postgresql_server):
    """A master whose config dumps fresh databases on the shared test servers."""
    tag = uuid.uuid4().hex[:6]
    shop, skipped, app = f"shop_{tag}", f"skip_{tag}", f"app_{tag}"
    mariadb_server.sql(f"CREATE DATABASE {shop}")
    mariadb_server.sql(f"CREATE DATABASE {skipped}")
    mariadb_server.sql(f"CREATE TABLE {shop}.items (id INT PRIMARY KEY, name TEXT)")
    mariadb_server.sql(f"INSERT INTO {shop}.items VALUES (1, 'chair'), (2, 'table')")
    postgresql_server.sql(f"CREATE DATABASE {app}")
    postgresql_server.sql("CREATE TABLE notes (id int primary key, body text)", db=app)
    postgresql_server.sql(
        "INSERT INTO notes SELECT g, md5(g::text) FROM generate_series(1, 500) g", db=app
    )
    shipper_env.write_config(
        databases={
            "enabled": True,
            "mariadb": [server_entry(mariadb_server, databases=[shop, skipped], exclude=[skipped])],
            "postgresql": [server_entry(postgresql_server, databases=[app])],
        }
    )
    shipper_env.run("init", check=True)
    shipper_env.names = {"shop": shop, "skipped": skipped, "app": app}
    yield shipper_env
    mariadb_server.sql(f"DROP DATABASE IF EXISTS {shop}")
    mariadb_server.sql(f"DROP DATABASE IF EXISTS {skipped}")
    postgresql_server.sql(f"DROP DATABASE IF EXISTS {app}")


def restic_for(env: ShipperEnv) -> Restic:
    return Restic.for_config(config.load(str(env.config_path)))


def test_a_set_holds_each_database_and_the_globals(db_env: ShipperEnv):
    env = db_env
    names = env.names
    result = env.run("snapshot", "--json", check=True)
    outcome = json.loads(result.stdout)
    assert outcome["status"] == "complete"

    [listed] = json.loads(env.run("sets", "--json", check=True).stdout)
    part_names = {p["name"] for p in listed["parts"]}
    assert part_names == {
        "files",
        "mariadb:globals",
        f"mariadb:{names['shop']}",
        "postgresql:globals",
        f"postgresql:{names['app']}",
    }
    assert f"mariadb:{names['skipped']}" not in part_names

    restic = restic_for(env)
    chosen = sets.find(sets.group(restic.snapshots()), listed["id"])
    manifest = manifests.read_json(restic, chosen)
    assert manifest["status"] == "complete"
    assert manifest["versions"]["mariadb"] and manifest["versions"]["postgresql"]
    by_name = {p["name"]: p for p in manifest["parts"]}
    shop = by_name[f"mariadb:{names['shop']}"]
    assert shop["details"]["engine"] == "mariadb" and shop["details"]["database"] == names["shop"]
    # The manifest's digest is the digest of the stream restic stored.
    part = chosen.parts[shop["name"]]
    stored = restic.read_file(part.snapshot, "/" + shop["details"]["filename"])
    assert shop["details"]["bytes"] == len(stored)
    assert shop["details"]["sha256"] == hashlib.sha256(stored).hexdigest()
    assert b"chair" in stored


def test_an_unchanged_second_set_adds_almost_nothing(db_env: ShipperEnv):
    env = db_env
    env.run("snapshot", check=True)
    second = json.loads(env.run("snapshot", "--json", check=True).stdout)
    mariadb = [p for p in second["parts"] if p["name"].startswith("mariadb:")]
    assert len(mariadb) == 2 and all(p["details"]["bytes"] > 0 for p in mariadb)
    # An unchanged MariaDB dump is byte-identical (--skip-dump-date): only the
    # snapshot's tree metadata is new.
    assert all(p["bytes_added"] < 2_000 for p in mariadb), mariadb
    # pg_dump writes a fresh random \restrict key at the top and the bottom of
    # every dump (a safety measure kept on purpose), so the first and last
    # chunks are new each time; bench/bench_databases.py measures that on a
    # large dump. Here: never more than one compressed copy.
    postgresql = [p for p in second["parts"] if p["name"].startswith("postgresql:")]
    assert all(p["bytes_added"] <= p["details"]["bytes"] + 2_000 for p in postgresql), postgresql


def test_a_failing_dump_commits_a_partial_set_and_keeps_the_other_parts(
    db_env: ShipperEnv, mariadb_server
):
    env = db_env
    missing = "no_such_db_" + uuid.uuid4().hex[:6]
    env.write_config(
        databases={
            **env.settings["databases"],
            "mariadb": [server_entry(mariadb_server, databases=[env.names["shop"], missing])],
        }
    )
    result = env.run("snapshot")
    assert result.returncode == EXIT_PARTIAL, result
    assert f"mariadb:{missing}" in result.stderr
    assert "Traceback" not in result.stderr
    [listed] = json.loads(env.run("sets", "--json", check=True).stdout)
    assert listed["status"] == "partial"
    names = {p["name"] for p in listed["parts"]}
    assert f"mariadb:{env.names['shop']}" in names and f"mariadb:{missing}" not in names


def test_databases_disabled_dumps_nothing(db_env: ShipperEnv):
    env = db_env
    env.write_config(databases={**env.settings["databases"], "enabled": False})
    env.run("snapshot", check=True)
    [listed] = json.loads(env.run("sets", "--json", check=True).stdout)
    assert [p["name"] for p in listed["parts"]] == ["files"]


def test_restore_db_with_globals_brings_back_table_level_grants(db_env: ShipperEnv, mariadb_server):
    env = db_env
    shop = env.names["shop"]
    user = "reader_" + shop[-6:]
    mariadb_server.sql(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'reader-pw'")
    mariadb_server.sql(f"GRANT SELECT ON {shop}.items TO '{user}'@'%'")
    env.run("snapshot", check=True)
    mariadb_server.sql(f"DROP USER '{user}'@'%'")
    mariadb_server.sql(f"DROP DATABASE {shop}")
    env.run("restore-db", "latest", f"mariadb:{shop}", "--globals", check=True)
    grants = " ".join(row[0] for row in mariadb_server.sql(f"SHOW GRANTS FOR '{user}'@'%'"))
    assert f"GRANT SELECT ON `{shop}`.`items`" in grants
    conn = mariadb_server.connect(db=shop, user=user, password="reader-pw", tcp=True)
    conn.close()
