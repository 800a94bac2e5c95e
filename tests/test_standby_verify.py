"""Warm standby's row check with MariaDB: real mariadb-dump, two real MariaDB servers.

The master counts each table's rows in the dump's stream (tuples outside the
string literals; the rows here hold quotes, parentheses and backslashes); the
apply counts them again in the loaded database. A slave server that swallows
rows without an error (enforce_storage_engine=BLACKHOLE: every table the dump
creates becomes a black hole, and the load exits 0) must fail the apply.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional

import pytest

from tests.test_standby import DB, Site, assert_critical, dump_details


class MariaDBSite(Site):
    """The standby site of tests/test_standby.py with MariaDB servers instead."""

    @staticmethod
    def databases(server: Any) -> Dict[str, Any]:
        entry = {**dataclasses.asdict(server.config()), "databases": [DB]}
        return {"enabled": True, "mariadb": [entry], "postgresql": []}

    def insert(self, first: int, last: int) -> None:
        self.master_pg.sql(
            "INSERT INTO notes SELECT seq, CONCAT('it''s (', seq, '),(\\\\', MD5(seq)) "
            f"FROM seq_{first}_to_{last}",
            db=DB,
        )

    def rows(self, server: Any) -> List[Any]:
        query = "SELECT count(*), md5(group_concat(body ORDER BY id SEPARATOR ',')) FROM notes"
        return list(server.sql(query, DB)[0])


@pytest.fixture
def site(
    tmp_path_factory: pytest.TempPathFactory, mariadb_server: Any, make_mariadb_server: Any
) -> MariaDBSite:
    return MariaDBSite(tmp_path_factory.mktemp("standby"), mariadb_server, make_mariadb_server())


def swallow_rows(server: Any, engine: Optional[str]) -> None:
    if engine:
        if not [row for row in server.sql("SHOW ENGINES") if row[0] == engine]:
            server.sql("INSTALL SONAME 'ha_blackhole'")
        server.sql(f"SET GLOBAL enforce_storage_engine = '{engine}'")
    else:
        server.sql("SET GLOBAL enforce_storage_engine = DEFAULT")


def test_a_load_that_silently_lost_rows_fails_the_apply(site: MariaDBSite) -> None:
    site.master.take("first")
    assert dump_details(site, "mariadb")["rows"] == {"notes": 200}
    done = site.apply()
    assert done.returncode == 0, done.stdout + done.stderr
    assert site.record()["tables_checked"] == 1
    assert site.rows(site.slave_pg) == site.rows(site.master_pg)

    site.insert(201, 260)
    second = site.master.take("second")
    assert dump_details(site, "mariadb")["rows"] == {"notes": 260}
    swallow_rows(site.slave_pg, "BLACKHOLE")
    try:
        failed = site.apply()
        assert failed.returncode == 1, failed.stdout + failed.stderr
        assert "the rows loaded differ from the dumps'" in failed.stderr
        assert f"mariadb:{DB}: notes has 0 rows, the dump 260" in failed.stderr
        # One line, beside the log's word that the default email (sendmail) could not go.
        said = [line for line in failed.stderr.splitlines() if "could not send" not in line]
        assert len(said) == 1, failed.stderr
        assert_critical(site, "the rows loaded differ")
        record = site.record()
        assert record["state"] == "failed" and record["set"] == second
        assert f"mariadb:{DB}" not in record["dumps"]
        plan = site.plan()  # never the set with the black holes: the database loads again
        assert plan["route"] == "delta"
        assert f"mariadb:{DB}" in [load["part"] for load in plan["databases"]]
    finally:
        swallow_rows(site.slave_pg, None)
    done = site.apply()
    assert done.returncode == 0, done.stdout + done.stderr
    assert site.record()["state"] == "applied" and site.record()["set"] == second
    assert site.rows(site.slave_pg) == site.rows(site.master_pg)
