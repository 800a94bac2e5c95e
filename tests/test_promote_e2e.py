"""The moment shipper exists for: the master dies, the slave runs `shipper promote --yes`.

Two hosts in two network namespaces joined by a veth pair, each with its own
MariaDB and PostgreSQL servers. The slave runs the receiver (`shipper setup
slave`), the master pushes to it over TLS (`shipper setup master`) while its
databases are under a write load (pgbench, and inserts into MariaDB). The
master is killed (every process, and its link), the slave promotes, and
then: files, databases, logins, hooks, machine-specific files, and the
refused push of the returning old master are checked. Promote is killed at
its database steps on the way and re-run; the dry run changes nothing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
import yaml

from tests.netns import Host
from tests.shipperenv import VENV_BIN, make_dataset, mutate_dataset, tool_path, write_secret
from tests.test_promote import file_state

pytestmark = [pytest.mark.slow, pytest.mark.netns]

SHIPPER = str(VENV_BIN / "shipper")
HOOKS = Path(__file__).resolve().parent.parent / "hooks"
APP_PASSWORD = "app old password 7"
PGAPP_PASSWORD = "pgapp old password"

PG_STATE = (
    "SELECT (SELECT count(*) FROM pgbench_accounts), (SELECT sum(abalance) FROM pgbench_accounts),"
    " (SELECT sum(bbalance) FROM pgbench_branches), (SELECT sum(tbalance) FROM pgbench_tellers),"
    " (SELECT count(*) FROM pgbench_history), (SELECT coalesce(sum(delta), 0) FROM pgbench_history),"
    " (SELECT md5(string_agg(aid || ':' || abalance, ',' ORDER BY aid)) FROM pgbench_accounts)"
)
MARIADB_LOAD = """
import os, pymysql
conn = pymysql.connect(unix_socket=os.environ["SOCK"], user="root", password=os.environ["PW"],
                       database="shop", autocommit=True)
cur = conn.cursor()
while True:
    cur.execute("INSERT INTO orders (customer, total) VALUES ('load', 9.5)")
"""
LOGIN = """
import sys, pymysql, psycopg2
kind, port, user, password, db = sys.argv[1:]
if kind == "mariadb":
    pymysql.connect(host="127.0.0.1", port=int(port), user=user, password=password, database=db).close()
else:
    psycopg2.connect(host="127.0.0.1", port=int(port), user=user, password=password, dbname=db).close()
"""


class Side:
    """One host's shipper: its config, state and files."""

    def __init__(self, host: Host, base: Path):
        self.host = host
        self.base = base
        self.etc = base / "etc"
        self.config = self.etc / "shipper.yml"

    def env(self, **extra: str) -> Dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RESTIC_", "SHIPPER_"))}
        return {**env, "PATH": tool_path(), "SHIPPER_CONFIG": str(self.config), **extra}

    def shipper(
        self, *args: str, check: bool = True, fault: Optional[str] = None
    ) -> subprocess.CompletedProcess:
        extra = {"SHIPPER_FAULT_KILL": fault} if fault else {}
        done = self.host.run(
            [SHIPPER, *args], env=self.env(**extra), timeout=300, start_new_session=True
        )
        if check:
            assert done.returncode == 0, f"shipper {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done

    def edit(self, change: Any) -> None:
        settings = yaml.safe_load(self.config.read_text())
        change(settings)
        self.config.write_text(yaml.safe_dump(settings, sort_keys=False))

    def settings(self) -> Dict[str, Any]:
        return yaml.safe_load(self.config.read_text())


def server_settings(server: Any, databases: List[str]) -> Dict[str, Any]:
    return {**dataclasses.asdict(server.config()), "databases": databases}


def mariadb_state(server: Any) -> List[Any]:
    tables = server.sql("CHECKSUM TABLE customers, orders", "shop")
    count = server.sql("SELECT COUNT(*) FROM orders", "shop")
    return [row[1] for row in tables] + [count[0][0]]


def pg_state(server: Any) -> List[Any]:
    return list(server.sql(PG_STATE, "pgbench")[0])


def assert_pgbench_invariant(state: List[Any]) -> None:
    accounts, abalance, bbalance, tbalance, _, delta, _ = state
    assert accounts == 100000 and abalance == bbalance == tbalance == delta, state


def sets_of(side: Side) -> List[Dict[str, Any]]:
    return json.loads(side.shipper("sets", "--json").stdout)


def take_set(master: Side) -> str:
    done = master.shipper("snapshot", "--json", check=False)
    assert done.returncode in (0, 4), done.stderr
    return json.loads(done.stdout)["set_id"]


def start_load(master: Side, mariadb: Any, pg: Any) -> List[subprocess.Popen]:
    pgbench = [
        "pgbench",
        "-n",
        "-c",
        "2",
        "-j",
        "1",
        "-T",
        "600",
        "-h",
        pg.socket,
        "-p",
        str(pg.port),
    ]
    return [
        master.host.popen(
            [*pgbench, "-U", "pgapp", "pgbench"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        master.host.popen(
            [sys.executable, "-c", MARIADB_LOAD],
            env={**os.environ, "SOCK": mariadb.socket, "PW": mariadb.password},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]


def stop_load(load: List[subprocess.Popen]) -> None:
    for process in load:
        process.kill()
        process.wait()


def fill_master_databases(mariadb: Any, pg: Any) -> None:
    mariadb.sql("CREATE DATABASE shop CHARACTER SET utf8mb4")
    mariadb.sql(
        "CREATE TABLE customers (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(80));"
        "CREATE TABLE orders (id INT AUTO_INCREMENT PRIMARY KEY, customer VARCHAR(80), total DECIMAL(8,2));"
        "INSERT INTO customers (name) SELECT CONCAT('customer ', seq) FROM seq_1_to_20000;"
        "INSERT INTO orders (customer, total) SELECT CONCAT('c', seq), seq / 3 FROM seq_1_to_50000",
        "shop",
    )
    mariadb.sql(
        f"CREATE USER app@'%' IDENTIFIED BY '{APP_PASSWORD}'; GRANT ALL ON shop.* TO app@'%'"
    )
    pg.sql(f"CREATE ROLE pgapp LOGIN PASSWORD '{PGAPP_PASSWORD}'")
    pg.sql("CREATE DATABASE pgbench OWNER pgapp")
    subprocess.run(
        [
            "pgbench",
            "-i",
            "-q",
            "-s",
            "1",
            "-h",
            pg.socket,
            "-p",
            str(pg.port),
            "-U",
            "pgapp",
            "pgbench",
        ],
        check=True,
        capture_output=True,
    )


def fill_slave_databases(mariadb: Any, pg: Any) -> None:
    """What the slave holds before promote: an old shop to be replaced, and its own database."""
    mariadb.sql(
        "CREATE DATABASE shop; CREATE TABLE shop.customers (id INT); CREATE DATABASE slave_only"
    )
    pg.sql("CREATE DATABASE slave_only")


def build_master_tree(top: Path) -> None:
    make_dataset(top / "srv" / "app", files=400, mib=4)
    (top / "etc" / "ssh").mkdir(parents=True)
    (top / "etc" / "hostname").write_text("master\n")
    (top / "etc" / "ssh" / "ssh_host_ed25519_key").write_text("master key\n")
    (top / "etc" / "app.conf").write_text("db = shop\n")


def promote_killed_during_pg_load(slave: Side, pg: Any) -> None:
    """SIGKILL promote (and the client it feeds) while PostgreSQL loads into its scratch database."""
    process = slave.host.popen(
        [SHIPPER, "promote", "--yes", "--root", str(slave.base / "root")],
        env=slave.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    query = "SELECT count(*) FROM pg_database WHERE datname LIKE 'shipper_load_%'"
    while process.poll() is None and time.monotonic() < deadline:
        if pg.sql(query)[0][0]:
            break
        time.sleep(0.02)
    assert process.poll() is None, "promote ended before the PostgreSQL load could be interrupted"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def test_promote_after_the_master_dies(
    two_hosts: Any, make_mariadb_server: Any, make_postgresql_server: Any, tmp_path: Path
) -> None:
    master = Side(two_hosts.master, tmp_path / "master")
    slave = Side(two_hosts.slave, tmp_path / "slave")
    servers = {
        "mariadb_m": make_mariadb_server(netns=master.host.name),
        "pg_m": make_postgresql_server(netns=master.host.name),
        "mariadb_s": make_mariadb_server(netns=slave.host.name),
        "pg_s": make_postgresql_server(netns=slave.host.name),
    }
    try:
        run_scenario(master, slave, tmp_path, **servers)
    finally:
        for server in servers.values():
            server.stop()


def run_scenario(
    master: Side, slave: Side, tmp_path: Path, mariadb_m: Any, pg_m: Any, mariadb_s: Any, pg_s: Any
) -> None:
    password = write_secret(tmp_path / "shared-password", "the one shared secret")
    root = slave.base / "root"
    top = master.base / "tree"

    # ------------------------------------------------------------ the two servers
    setup = slave.shipper(
        "setup",
        "slave",
        "--password-file",
        str(password),
        "--etc-dir",
        str(slave.etc),
        "--state-dir",
        str(slave.base / "state"),
        "--repo-dir",
        str(slave.base / "repo"),
        "--listen",
        f"{slave.host.address}:8000",
        "--name",
        slave.host.address,
        "--service-manager",
        "none",
        "--json",
    )
    fingerprint = json.loads(setup.stdout)["fingerprint"]
    master.shipper(
        "setup",
        "master",
        "--password-file",
        str(password),
        "--etc-dir",
        str(master.etc),
        "--state-dir",
        str(master.base / "state"),
        "--slave",
        f"{slave.host.address}:8000",
        "--fingerprint",
        fingerprint,
        "--service-manager",
        "none",
        "--no-first-set",
    )
    build_master_tree(top)
    fill_master_databases(mariadb_m, pg_m)
    fill_slave_databases(mariadb_s, pg_s)
    machine = [str(top / "etc" / "hostname"), str(top / "etc" / "ssh")]

    def master_settings(settings: Dict[str, Any]) -> None:
        settings["paths"] = [str(top / "srv"), str(top / "etc")]
        settings["machine_specific"] = machine
        settings["databases"] = {
            "mariadb": [server_settings(mariadb_m, ["shop"])],
            "postgresql": [server_settings(pg_m, ["pgbench"])],
        }

    master.edit(master_settings)
    slave_hooks = slave.base / "hooks"
    (slave_hooks / "post-restore.d").mkdir(parents=True)
    mark = slave_hooks / "post-restore.d" / "10-mark"
    mark.write_text(
        '#!/bin/sh\necho "$SHIPPER_SET_ID $SHIPPER_ROLE" >> "$SHIPPER_ROOT/post-restore-ran"\n'
    )
    mark.chmod(0o755)

    def slave_settings(settings: Dict[str, Any]) -> None:
        settings["databases"] = {
            "mariadb": [server_settings(mariadb_s, ["all"])],
            "postgresql": [server_settings(pg_s, ["all"])],
        }
        settings["hooks"] = {"dirs": [str(HOOKS), str(slave_hooks)]}
        settings["promote"] = {"services": ["shipper-test-app.service"]}

    slave.edit(slave_settings)
    for real, text in {
        "etc/hostname": "slave\n",
        "etc/ssh/ssh_host_ed25519_key": "slave key\n",
        "srv/stale.txt": "the slave's stale copy\n",
    }.items():
        target = root / str(top / real).lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    # ------------------------------------------------------------ sets under a write load
    load = start_load(master, mariadb_m, pg_m)
    try:
        time.sleep(1)
        take_set(master)
        mutate_dataset(top / "srv" / "app", percent=15, seed=5)
        (top / "srv" / "new-in-second.txt").write_text("second\n")
        older = take_set(master)
        older_files = file_state(top)
    finally:
        stop_load(load)
    (top / "etc" / "app.conf").write_text("db = shop # final\n")
    final = take_set(master)
    final_files = file_state(top)
    final_mariadb, final_pg = mariadb_state(mariadb_m), pg_state(pg_m)
    assert_pgbench_invariant(final_pg)
    assert final_pg[4] > 0, "pgbench wrote no history: the load did not run"

    def broken(settings: Dict[str, Any]) -> None:
        settings["databases"]["mariadb"][0]["databases"] = ["shop", "no_such_db"]

    master.edit(broken)
    partial = take_set(master)
    assert {s["id"]: s["status"] for s in sets_of(slave)}[partial] == "partial"

    # ------------------------------------------------------------ the master dies
    master.host.kill_all()
    master.host.link(False)

    before = (
        file_state(root),
        mariadb_s.sql("SHOW DATABASES"),
        pg_s.sql("SELECT datname FROM pg_database"),
    )
    dry = slave.shipper("promote", "--dry-run", "--root", str(root))
    assert f"promote set {final}" in dry.stdout and "replace database shop" in dry.stdout
    assert "OK   mariadb server" in dry.stdout and "OK   postgresql server" in dry.stdout
    after = (
        file_state(root),
        mariadb_s.sql("SHOW DATABASES"),
        pg_s.sql("SELECT datname FROM pg_database"),
    )
    assert after == before

    refused = slave.shipper("promote", "--yes", "--root", str(root), "--set", partial, check=False)
    assert refused.returncode == 1 and "failed part(s): mariadb:no_such_db" in refused.stdout

    # Killed at database steps, then run again until it ends.
    killed = slave.shipper(
        "promote", "--yes", "--root", str(root), fault="globals:mariadb:end", check=False
    )
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    promote_killed_during_pg_load(slave, pg_s)
    killed = slave.shipper(
        "promote", "--yes", "--root", str(root), fault="database:mariadb:shop:end", check=False
    )
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    done = slave.shipper("promote", "--yes", "--root", str(root))
    assert f"promote of set {final}: PROMOTED" in done.stdout, done.stdout

    # ------------------------------------------------------------ what the slave is now
    assert_files(root, top, final_files)
    assert mariadb_state(mariadb_s) == final_mariadb
    assert pg_state(pg_s) == final_pg
    assert mariadb_s.sql("SHOW DATABASES LIKE 'slave_only'") and pg_s.sql(
        "SELECT 1 FROM pg_database WHERE datname = 'slave_only'"
    )
    assert not pg_s.sql("SELECT datname FROM pg_database WHERE datname LIKE 'shipper_%'")
    assert not mariadb_s.sql("SHOW DATABASES LIKE 'shipper\\_%'")
    for kind, server, user, secret, db in (
        ("mariadb", mariadb_s, "app", APP_PASSWORD, "shop"),
        ("postgresql", pg_s, "pgapp", PGAPP_PASSWORD, "pgbench"),
    ):
        login = slave.host.run(
            [sys.executable, "-c", LOGIN, kind, str(server.port), user, secret, db]
        )
        assert login.returncode == 0, f"{user} cannot log in with the old password: {login.stderr}"
    assert (root / "post-restore-ran").read_text().split() == [final, "master"]
    settings = slave.settings()
    assert settings["role"] == "master" and settings["enabled"] is False
    report = json.loads((slave.base / "state" / "last-promote.json").read_text())
    assert report["outcome"] == "promoted" and report["split"]["databases"] > 0
    assert {s["name"] for s in report["steps"]} >= {
        "files",
        "globals:postgresql",
        "database:postgresql:pgbench",
        "hook:50-services",
        "hook:10-mark",
        "receiver",
        "role",
    }

    # ------------------------------------------------------------ the old master comes back
    master.host.link(True)
    count = len(sets_of(slave))

    def files_only(settings: Dict[str, Any]) -> None:
        settings["databases"] = {"enabled": False}

    master.edit(files_only)
    pushed = master.shipper("snapshot", check=False)
    assert pushed.returncode != 0, pushed.stdout
    assert len(sets_of(slave)) == count

    # ------------------------------------------------------------ an older set, by hand
    slave.shipper("promote", "--yes", "--root", str(root), "--set", older, "--force")
    assert_files(root, top, older_files)
    assert_pgbench_invariant(pg_state(pg_s))


def assert_files(root: Path, top: Path, expected: Dict[str, Any]) -> None:
    """Every file under paths equals the master's at the set; the slave's machine files stay."""
    got = file_state(root / str(top).lstrip("/"))
    mine = ("etc/hostname", "etc/ssh")
    want = {rel: item for rel, item in expected.items() if not rel.startswith(mine) and rel != "."}
    have = {rel: item for rel, item in got.items() if not rel.startswith(mine) and rel != "."}
    assert have == want
    assert (root / str(top).lstrip("/") / "etc/hostname").read_text() == "slave\n"
    assert (
        root / str(top).lstrip("/") / "etc/ssh/ssh_host_ed25519_key"
    ).read_text() == "slave key\n"
