"""Warm standby: real restic, real PostgreSQL servers (one master's, one slave's), the real CLI.

One site, one flow (each step needs the one before): the standby follows
two sets, is killed in the middle of an apply and repaired by the next one,
promote with a current standby is fast and exact; a standby one set behind
gives promote's delta path; a failed apply is CRITICAL in status while the
last good set stays promotable.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml

from shipper.slave.standby import mtime_ns
from tests.shipperenv import VENV_BIN, ShipperEnv, mutate_dataset
from tests.test_promote import Master

DB = "standby_app"


def test_mtime_ns_reads_restics_nanoseconds() -> None:
    assert mtime_ns("1970-01-01T00:00:01.5Z") == 1_500_000_000
    assert mtime_ns("1970-01-01T02:00:01.000000007+02:00") == 1_000_000_007
    assert mtime_ns("garbage") == -1


class Site:
    """A master (files + one PostgreSQL database) and its warm standby slave."""

    def __init__(self, base: Path, master_pg: Any, slave_pg: Any):
        self.master = Master(ShipperEnv(base))
        self.master_pg, self.slave_pg = master_pg, slave_pg
        master_pg.sql(f"DROP DATABASE IF EXISTS {DB}")
        master_pg.sql(f"CREATE DATABASE {DB}")
        master_pg.sql("CREATE TABLE notes (id int PRIMARY KEY, body text)", db=DB)
        self.insert(1, 200)
        self.master.build()
        self.master.env.write_config(databases=self.databases(master_pg))
        self.master.env.run("init", check=True)
        self.first = ""
        self.slave = self.master.slave()
        self.edit_slave(
            databases=self.databases(slave_pg),
            standby={"enabled": True, "root": str(self.slave.root)},
        )

    @staticmethod
    def databases(server: Any) -> Dict[str, Any]:
        entry = {**dataclasses.asdict(server.config()), "databases": [DB]}
        return {"enabled": True, "mariadb": [], "postgresql": [entry]}

    def insert(self, first: int, last: int) -> None:
        self.master_pg.sql(
            f"INSERT INTO notes SELECT g, md5(g::text) FROM generate_series({first}, {last}) g",
            db=DB,
        )

    def edit_slave(self, **changes: Any) -> None:
        settings = yaml.safe_load(self.slave.config.read_text())
        settings.update(changes)
        self.slave.config.write_text(yaml.safe_dump(settings, sort_keys=False))

    def shipper(self, *args: str, fault: str = "") -> subprocess.CompletedProcess:
        extra = {"SHIPPER_FAULT_KILL": fault} if fault else {}
        return subprocess.run(
            [str(VENV_BIN / "shipper"), *args],
            env=self.slave.env(**extra),
            capture_output=True,
            text=True,
            timeout=300,
            start_new_session=True,
        )

    def apply(self, fault: str = "") -> subprocess.CompletedProcess:
        return self.shipper("standby", "apply", fault=fault)

    def record(self) -> Dict[str, Any]:
        return json.loads((self.slave.state / "standby.json").read_text())

    def rows(self, server: Any) -> List[Any]:
        return list(
            server.sql("SELECT count(*), md5(string_agg(body, ',' ORDER BY id)) FROM notes", DB)[0]
        )

    def plan(self) -> Dict[str, Any]:
        done = self.shipper("promote", "--root", str(self.slave.root), "--dry-run", "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout[done.stdout.index("{") :])


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, postgresql_server: Any, make_postgresql_server: Any
) -> Site:
    made = Site(tmp_path_factory.mktemp("standby"), postgresql_server, make_postgresql_server())
    made.first = made.master.take("first")
    return made


def test_the_standby_follows_sets_survives_a_kill_and_promotes_fast(site: Site) -> None:
    master, slave = site.master, site.slave
    first = site.first
    done = site.apply()
    assert done.returncode == 0, done.stdout + done.stderr
    record = site.record()
    assert record["set"] == first and record["state"] == "applied" and record["files_checked"] > 0
    slave.assert_promoted_to("first")
    assert site.rows(site.slave_pg) == site.rows(site.master_pg)
    assert "already applied" in site.apply().stdout
    assert f"standby:     at set {first} (" in site.shipper("status").stdout

    mutate_dataset(master.app, percent=20, seed=5)
    site.insert(201, 300)
    second = master.take("second")
    killed = site.apply(fault="files:end")
    assert killed.returncode == -signal.SIGKILL
    assert site.record()["state"] == "applying" and site.record()["set"] == second
    plan = site.plan()
    assert plan["set_id"] == second and plan["route"] == "delta"  # never the half-applied one

    done = site.apply()
    assert done.returncode == 0, done.stdout + done.stderr
    assert site.record()["state"] == "applied" and site.record()["set"] == second
    # The killed apply had put the files in place: the repair rewrites none of them.
    journal = json.loads((slave.state / "standby" / f"{second}.json").read_text())
    assert journal["steps"]["files"]["detail"]["bytes_restored"] < 100_000
    slave.assert_promoted_to("second")
    assert site.rows(site.slave_pg) == site.rows(site.master_pg)

    plan = site.plan()
    assert plan["route"] == "standby" and plan["databases"] == [] and not plan["files_snapshot"]
    clock = time.monotonic()
    done = slave.promote("--yes", check=True)
    took = time.monotonic() - clock
    assert "PROMOTED" in done.stdout and slave.role() == "master"
    slave.assert_promoted_to("second")
    assert site.rows(site.slave_pg) == site.rows(site.master_pg)
    assert (slave.root / "hook-ran").read_text().split()[1] == second
    print(f"promote with a current standby: {took:.1f}s")


def test_a_standby_one_set_behind_gives_the_delta_path(site: Site) -> None:
    site.slave = site.master.slave()
    site.edit_slave(
        databases=site.databases(site.slave_pg),
        standby={"enabled": True, "root": str(site.slave.root)},
    )
    assert site.apply().returncode == 0
    site.master.etc.joinpath("app.conf").write_text("listen 9090\n")
    third = site.master.take("third")  # files change, the dump does not
    plan = site.plan()
    assert plan["route"] == "delta" and plan["set_id"] == third
    assert plan["changes"]["changed"] == 1  # app.conf only
    # pg_dump's random \restrict key differs, the content does not: the dumps are in place
    assert plan["databases"] == [] and "2 of 2 dumps already in place" in plan["route_note"]
    site.slave.promote("--yes", check=True)
    site.slave.assert_promoted_to("third")
    assert site.rows(site.slave_pg) == site.rows(site.master_pg)


def test_a_failed_apply_is_critical_and_keeps_the_last_good_set(site: Site) -> None:
    site.slave = site.master.slave()
    site.edit_slave(
        databases=site.databases(site.slave_pg),
        standby={"enabled": True, "root": str(site.slave.root)},
    )
    assert site.apply().returncode == 0
    good = site.record()["set"]
    site.insert(301, 310)
    fourth = site.master.take("fourth")
    site.slave_pg.stop()  # down: preflight fails, nothing changes
    try:
        failed = site.apply()
        assert failed.returncode == 1 and "nothing was changed" in failed.stderr
        assert_critical(site, "apply of set")
        assert site.record()["state"] == "applied" and site.record()["set"] == good
    finally:
        site.slave_pg.start()
    read_only(site.slave_pg, "on")  # up, but the dump does not load: files changed already
    try:
        failed = site.apply()
        assert failed.returncode == 1 and "read-only transaction" in failed.stderr
        assert_critical(site, "read-only transaction")
        assert site.record()["state"] == "failed" and site.record()["set"] == fourth
        assert site.plan()["route"] == "delta"
    finally:
        read_only(site.slave_pg, "off")
    assert site.apply().returncode == 0 and site.record()["state"] == "applied"
    report = json.loads(site.shipper("status", "--json").stdout)  # (no receiver runs here)
    assert report["standby"]["error"] is None and report["standby"]["state"] == "applied"
    assert not [p for p in report["problems"] if "standby" in p["text"]]
    assert site.rows(site.slave_pg) == site.rows(site.master_pg)


def assert_critical(site: Site, text: str) -> None:
    status = site.shipper("status", "--json")
    report = json.loads(status.stdout)
    assert status.returncode == 2 and text in report["standby"]["error"]
    assert any(p["level"] == "CRITICAL" and text in p["text"] for p in report["problems"])


def read_only(server: Any, value: str) -> None:
    server.sql(f"ALTER SYSTEM SET default_transaction_read_only = {value}")
    server.sql("SELECT pg_reload_conf()")


def test_the_slave_daemon_applies_each_new_set(site: Site) -> None:
    site.slave = site.master.slave()
    site.edit_slave(
        databases=site.databases(site.slave_pg),
        standby={"enabled": True, "root": str(site.slave.root)},
    )
    log = site.slave.base / "daemon.log"
    with open(log, "w") as out:
        daemon = subprocess.Popen(
            [str(VENV_BIN / "shipper"), "daemon", "--check-interval", "0.5"],
            env=site.slave.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        newest = json.loads(site.shipper("sets", "--json").stdout)[0]["id"]
        wait_for(lambda: site.record().get("set") == newest and applied(site), log)
        (site.master.app / "daemon.txt").write_text("applied by the daemon\n")
        newer = site.master.take("fifth")
        wait_for(lambda: site.record().get("set") == newer and applied(site), log)
        assert (site.slave.path(site.master.app) / "daemon.txt").exists()
        wait_for(lambda: f"set {newer} applied and verified" in log.read_text(), log)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)


def applied(site: Site) -> bool:
    return site.record().get("state") == "applied"


def wait_for(done: Any, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if done():
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.3)
    raise AssertionError(f"not done within {timeout}s; the daemon's log:\n{log.read_text()}")


# ---------------------------------------------------------------- what an apply loads and checks


def fresh_standby(site: Site) -> None:
    site.slave = site.master.slave()
    site.edit_slave(
        databases=site.databases(site.slave_pg),
        standby={"enabled": True, "root": str(site.slave.root)},
    )
    done = site.apply()
    assert done.returncode == 0, done.stdout + done.stderr


def dump_details(site: Site, engine: str = "postgresql") -> Dict[str, Any]:
    """The newest set's dump of DB, as the master recorded it in the manifest."""
    run = json.loads((site.master.env.state / "last-run.json").read_text())
    return next(p["details"] for p in run["parts"] if p["name"] == f"{engine}:{DB}")


def test_an_unchanged_postgresql_dump_is_not_reloaded_a_changed_one_is(site: Site) -> None:
    fresh_standby(site)
    before = dump_details(site)
    assert before["rows"] == {"public.notes": site.rows(site.master_pg)[0]}
    (site.master.app / "only-files.txt").write_text("a change of files only\n")
    site.master.take("files only")
    after = dump_details(site)
    # The real pg_dump writes a new \restrict key each time: the bytes differ, the content not.
    assert after["sha256"] != before["sha256"]
    assert after["content_sha256"] == before["content_sha256"]
    done = site.apply()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 dumps to load, 2 unchanged" in done.stdout
    assert site.record()["dumps"][f"postgresql:{DB}"] == after["content_sha256"]

    site.insert(1001, 1010)
    site.master.take("rows added")
    assert dump_details(site)["content_sha256"] != after["content_sha256"]
    done = site.apply()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 dumps to load, 0 unchanged" in done.stdout  # the globals load again with it
    assert f"database:postgresql:{DB}: done" in done.stdout
    assert site.rows(site.slave_pg) == site.rows(site.master_pg)
    record = site.record()
    assert record["tables_checked"] == 1 and record["files_read"] > 0
    assert "1 tables' rows as counted in the dumps" in done.stdout


def test_row_counts_are_exact_while_the_master_is_written_to(site: Site) -> None:
    """The master counts the dump's own rows (pg_dump's snapshot), not the live table."""
    fresh_standby(site)
    stop = threading.Event()
    written = []

    def write() -> None:
        next_id = 2_000_000
        while not stop.is_set():
            site.insert(next_id, next_id + 49)
            written.append(next_id)
            next_id += 50

    writer = threading.Thread(target=write)
    writer.start()
    try:
        site.master.take("under load")
    finally:
        stop.set()
        writer.join()
    assert len(written) > 3  # the table grew while the set was taken
    counted = dump_details(site)["rows"]["public.notes"]
    assert site.rows(site.master_pg)[0] > counted  # a count of the live table would differ
    done = site.apply()
    assert done.returncode == 0, done.stdout + done.stderr
    assert site.record()["tables_checked"] == 1
    assert site.slave_pg.sql("SELECT count(*) FROM notes", DB)[0][0] == counted


def test_killed_in_the_middle_of_a_database_load_the_next_apply_repairs(site: Site) -> None:
    fresh_standby(site)
    site.master_pg.sql(
        "CREATE TABLE bulk AS SELECT g AS id, repeat(md5(g::text), 4) AS body "
        "FROM generate_series(1, 800000) g",
        db=DB,
    )
    try:
        big = site.master.take("big table")
        expected = dump_details(site)["rows"]
        assert expected["public.bulk"] == 800_000
        apply = subprocess.Popen(
            [str(VENV_BIN / "shipper"), "standby", "apply"],
            env=site.slave.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until_loading(site, apply)
        os.killpg(apply.pid, signal.SIGKILL)
        apply.wait(30)
        record = site.record()
        assert record["state"] == "applying" and record["set"] == big
        assert f"postgresql:{DB}" not in record["dumps"]
        plan = site.plan()
        assert plan["route"] == "delta"
        assert f"postgresql:{DB}" in [load["part"] for load in plan["databases"]]

        done = site.apply()
        assert done.returncode == 0, done.stdout + done.stderr
        assert site.record()["state"] == "applied" and site.record()["set"] == big
        assert f"database:postgresql:{DB}: done" in done.stdout
        counted = site.slave_pg.sql("SELECT count(*) FROM bulk", DB)[0][0]
        assert counted == expected["public.bulk"]
        assert site.rows(site.slave_pg) == site.rows(site.master_pg)
    finally:
        site.master_pg.sql("DROP TABLE bulk", db=DB)


def wait_until_loading(site: Site, apply: subprocess.Popen, timeout: float = 120) -> None:
    """Until the slave's server runs the COPY of the big table (the load is under way)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert apply.poll() is None, apply.stdout.read() if apply.stdout else ""
        copying = site.slave_pg.sql(
            "SELECT count(*) FROM pg_stat_progress_copy "
            "WHERE datname LIKE 'shipper_load_%' AND tuples_processed > 100000"
        )
        if copying[0][0]:
            return
        time.sleep(0.1)
    raise AssertionError("the load of the big table never started")
