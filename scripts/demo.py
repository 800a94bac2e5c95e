"""The main job on an embedded default, on this one machine.

A slave (receiver on loopback, TLS, htpasswd, append-only) and a master (a
sample tree and sample MariaDB and PostgreSQL databases on their own
throwaway servers) are set up with `shipper setup`; the master takes two sets
with a change between them; the sets are listed; the newest is restored into
a scratch folder and compared; then the slave promotes the newest set into a
scratch root with its own database servers, and the result is compared with
the master. Everything lives under demo-run/ (the database servers' data in a
temporary folder PostgreSQL's own user can reach) and stops at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from tests.dbservers import MariaDBServer, PostgreSQLServer  # noqa: E402
from tests.shipperenv import free_port, make_dataset, mutate_dataset, tool_path, tree_digest  # noqa: E402

BASE = Path(os.environ.get("SHIPPER_DEMO_DIR") or ROOT / "demo-run")  # the suite runs it elsewhere
SHIPPER = str(Path(sys.executable).parent / "shipper")


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def shipper(*args: str, config: Path = None, capture: bool = False, ok=(0,)) -> str:
    argv = [SHIPPER, *(["-c", str(config)] if config else []), *args]
    print(
        "$ shipper " + " ".join(a if "/" not in a else os.path.relpath(a, ROOT) for a in argv[1:]),
        flush=True,
    )
    result = subprocess.run(argv, env=ENV, text=True, stdout=subprocess.PIPE if capture else None)
    if result.returncode not in ok:
        raise SystemExit(f"demo: `shipper {' '.join(args)}` failed (exit {result.returncode})")
    return result.stdout if capture else ""


def edit_config(path: Path, **changes) -> None:
    data = yaml.safe_load(path.read_text())
    data.update(changes)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def database_entry(server, **extra) -> dict:
    entry = server.config(**extra)
    return {k: v for k, v in entry.__dict__.items()}


def sample_databases(mariadb: MariaDBServer, postgresql: PostgreSQLServer) -> None:
    mariadb.sql("CREATE DATABASE shop")
    mariadb.sql("CREATE TABLE shop.orders (id INT PRIMARY KEY, item TEXT, cents INT)")
    mariadb.sql("INSERT INTO shop.orders VALUES (1, 'chair', 4900), (2, 'desk', 19900)")
    mariadb.sql("CREATE USER 'clerk'@'%' IDENTIFIED BY 'clerk-password'")
    mariadb.sql("GRANT SELECT, INSERT ON shop.* TO 'clerk'@'%'")
    postgresql.sql("CREATE ROLE crm_app LOGIN PASSWORD 'crm-password'")
    postgresql.sql("CREATE DATABASE crm OWNER crm_app")
    postgresql.sql("CREATE TABLE contacts (id int primary key, name text)", db="crm")
    postgresql.sql(
        "INSERT INTO contacts SELECT g, 'contact ' || g FROM generate_series(1, 1000) g", db="crm"
    )


def change_databases(mariadb: MariaDBServer, postgresql: PostgreSQLServer) -> None:
    mariadb.sql("INSERT INTO shop.orders VALUES (3, 'lamp', 2900)")
    postgresql.sql("DELETE FROM contacts WHERE id > 990", db="crm")


def database_state(mariadb: MariaDBServer, postgresql: PostgreSQLServer) -> tuple:
    return (
        mariadb.sql("SELECT id, item, cents FROM shop.orders ORDER BY id"),
        postgresql.sql("SELECT count(*), sum(id) FROM contacts", db="crm"),
    )


def main() -> int:
    shutil.rmtree(BASE, ignore_errors=True)
    BASE.mkdir(mode=0o711)
    password = BASE / "shared-password"
    password.write_text("demo shared password, the same on both servers\n")
    password.chmod(0o600)
    servers = []
    made: List[Path] = []  # folders outside demo-run/, removed at the end
    try:
        step("slave: shipper setup slave (receiver on loopback: rest-server, append-only, TLS)")
        port = free_port()
        slave_etc, master_etc = BASE / "slave" / "etc", BASE / "master" / "etc"
        out = shipper(
            "setup", "slave", "--password-file", str(password), "--etc-dir", str(slave_etc),
            "--state-dir", str(BASE / "slave" / "state"), "--repo-dir", str(BASE / "slave" / "repo"),
            "--listen", f"127.0.0.1:{port}", "--service-manager", "none", "--json",
            capture=True,
        )  # fmt: skip
        fingerprint = json.loads(out)["fingerprint"]
        print(f"receiver on 127.0.0.1:{port}, certificate fingerprint {fingerprint}")

        step("master: sample tree and sample databases on throwaway MariaDB and PostgreSQL servers")
        tree = BASE / "master" / "srv"
        make_dataset(tree, files=2000, mib=40, seed=5)
        # Outside the checkout: PostgreSQL runs as its own user, which must reach its data
        # folder, and a clone often sits in a folder only root can enter (/root, mktemp -d).
        dbroot = Path(tempfile.mkdtemp(prefix="shipper-demo-db-"))
        dbroot.chmod(0o711)
        made.append(dbroot)
        master_my = MariaDBServer(dbroot / "master-mariadb")
        master_pg = PostgreSQLServer(dbroot / "master-postgresql")
        servers += [master_my, master_pg]
        master_my.start(), master_pg.start()
        sample_databases(master_my, master_pg)

        step("master: shipper setup master (pins the slave's certificate, creates the repository)")
        shipper(
            "setup", "master", "--password-file", str(password), "--etc-dir", str(master_etc),
            "--state-dir", str(BASE / "master" / "state"), "--slave", f"127.0.0.1:{port}",
            "--fingerprint", fingerprint, "--service-manager", "none", "--no-first-set",
        )  # fmt: skip
        master_cfg = master_etc / "shipper.yml"
        edit_config(
            master_cfg,
            paths=[str(tree)],
            databases={
                "mariadb": [database_entry(master_my)],
                "postgresql": [database_entry(master_pg)],
            },
            hooks={"dirs": [str(ROOT / "hooks")]},
        )
        shipper("config", "validate", config=master_cfg)

        step("master: first set")
        shipper("snapshot", config=master_cfg)
        step("master: the tree and the databases change; second set")
        mutate_dataset(tree, percent=10, seed=6)
        change_databases(master_my, master_pg)
        shipper("snapshot", config=master_cfg)
        expected_tree = tree_digest(tree)
        expected_databases = database_state(master_my, master_pg)

        step("the sets, newest first")
        shipper("sets", config=master_cfg)

        step("restore the newest set into a scratch folder and compare")
        scratch = BASE / "restored"
        shipper("restore", "latest", "--target", str(scratch), config=master_cfg)
        restored = tree_digest(scratch / tree.relative_to("/"))
        assert restored == expected_tree, "the restored tree differs from the master's"
        print(f"OK: {len(restored)} entries restored byte for byte")

        step("the master dies; the slave promotes the newest set into a scratch root")
        master_my.stop(), master_pg.stop()
        slave_my = MariaDBServer(dbroot / "slave-mariadb")
        slave_pg = PostgreSQLServer(dbroot / "slave-postgresql")
        servers += [slave_my, slave_pg]
        slave_my.start(), slave_pg.start()
        slave_cfg = slave_etc / "shipper.yml"
        edit_config(
            slave_cfg,
            paths=[str(tree)],
            databases={
                "mariadb": [database_entry(slave_my)],
                "postgresql": [database_entry(slave_pg)],
            },
            hooks={"dirs": [str(ROOT / "hooks")]},
        )
        root = BASE / "promoted-root"
        shipper("promote", "--dry-run", "--root", str(root), config=slave_cfg)
        started = time.monotonic()
        shipper("promote", "--yes", "--root", str(root), config=slave_cfg)
        took = time.monotonic() - started
        assert tree_digest(root / tree.relative_to("/")) == expected_tree, "promoted files differ"
        assert database_state(slave_my, slave_pg) == expected_databases, "promoted databases differ"
        slave_my.connect(db="shop", user="clerk", password="clerk-password", tcp=True).close()
        slave_pg.connect(db="crm", user="crm_app", password="crm-password", tcp=True).close()
        print(
            f"OK: promoted in {took:.1f}s; files, databases and logins equal the master's last set"
        )
        step("status of the promoted server (WARNING: its schedule waits for a new slave)")
        shipper("status", config=slave_cfg, ok=(0, 1))
    finally:
        for server in servers:
            server.stop()
        subprocess.run([SHIPPER, "-c", str(BASE / "slave" / "etc" / "shipper.yml"), "receiver", "stop"],
                       env=ENV, capture_output=True)  # fmt: skip
        for folder in made:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"\ndemo done; everything it made is in {os.path.relpath(BASE, Path.cwd())}/")
    return 0


ENV = {**os.environ, "PATH": tool_path()}

if __name__ == "__main__":
    sys.exit(main())
