"""shipper's database parts against a plain dump pipe into restic.

Starts throwaway PostgreSQL and MariaDB servers, fills one database each
(default about 400 MB of dump each: pgbench for PostgreSQL, a table of text
rows for MariaDB), then for each engine times:

- plain:   `pg_dump DB | restic backup --stdin` (mariadb-dump for MariaDB)
- shipper: `shipper snapshot` of a config that holds only that database

on two fresh repositories of the same kind (local paths, on tmpfs so that
the master's own disk is measured alone), and prints the ratio (target at
most 1.10), the bytes an unchanged second set adds (target under 2% of the
dump) and the peak extra disk used on the master's filesystems during the
run (target 0). Run: .venv/bin/python bench/bench_databases.py [--scale N]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.dbservers import MariaDBServer, PostgreSQLServer, postgresql_bindir  # noqa: E402
from tests.shipperenv import ShipperEnv, tool_path  # noqa: E402


class DiskWatch:
    """Peak drop in free space on the given filesystems while it runs."""

    def __init__(self, paths):
        self.paths = paths
        self.peak = 0
        self._stop = threading.Event()

    def _free(self) -> int:
        return sum(os.statvfs(p).f_bavail * os.statvfs(p).f_frsize for p in self.paths)

    def __enter__(self):
        self.start = self._free()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.start - self._free())
            time.sleep(0.02)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def fill_postgresql(server: PostgreSQLServer, scale: int) -> None:
    server.sql("CREATE DATABASE bench")
    pgbench = postgresql_bindir() / "pgbench"
    env = {**os.environ, "PGPASSWORD": "shipper-test-superuser"}
    subprocess.run(
        [str(pgbench), "-i", "-q", "-s", str(scale), "-h", str(server.socket), "-p", str(server.port),
         "-U", "postgres", "bench"],
        check=True, env=env, capture_output=True,
    )  # fmt: skip


def fill_mariadb(server: MariaDBServer, megabytes: int) -> None:
    server.sql("CREATE DATABASE bench")
    server.sql("CREATE TABLE bench.docs (id INT PRIMARY KEY, body TEXT)")
    rows = megabytes * 1024 * 1024 // 1100
    step = 20000
    for start in range(0, rows, step):
        server.sql(
            "INSERT INTO docs SELECT seq, REPEAT(MD5(seq), 32) "
            f"FROM seq_{start}_to_{min(start + step, rows) - 1}",
            db="bench",
        )


def plain_pipe(dump_argv, dump_env, restic_argv, restic_env) -> float:
    started = time.monotonic()
    dump = subprocess.Popen(dump_argv, stdout=subprocess.PIPE, env=dump_env)
    backup = subprocess.run(restic_argv, stdin=dump.stdout, env=restic_env, capture_output=True)
    dump.stdout.close()
    if dump.wait() != 0 or backup.returncode != 0:
        raise SystemExit(f"plain pipe failed: {backup.stderr[-500:]}")
    return time.monotonic() - started


def bench_engine(label, entry, dump_argv, dump_env, work: Path, repos: Path) -> dict:
    """shipper's state on the master's disk; both repositories on tmpfs."""
    env = ShipperEnv(work / label)
    env.write_config(
        repository={"url": str(repos / label / "shipper-repo")},
        paths=[],
        databases={"enabled": True, "mariadb": [], "postgresql": [], label: [entry]},
    )
    env.run("init", check=True)
    plain_repo = repos / label / "plain-repo"
    env.restic("init", repo=str(plain_repo))
    restic_argv = [
        "restic", "-r", str(plain_repo), "--password-file", str(env.password_file), "backup", "--json",
        "--stdin", "--stdin-filename", f"{label}-bench.sql",
    ]  # fmt: skip
    restic_env = {**env.env(), "RESTIC_CACHE_DIR": str(work / label / "plain-cache")}

    plain = plain_pipe(dump_argv, dump_env, restic_argv, restic_env)
    watched = [str(work), "/var", "/tmp", "/run"]
    with DiskWatch(sorted({os.stat(p).st_dev: p for p in watched}.values())) as disk:
        started = time.monotonic()
        first = json.loads(env.run("snapshot", "--json", check=True, timeout=3600).stdout)
        ours = time.monotonic() - started
    plain_again = plain_pipe(dump_argv, dump_env, restic_argv, restic_env)
    started = time.monotonic()
    second = json.loads(env.run("snapshot", "--json", check=True, timeout=3600).stdout)
    ours_again = time.monotonic() - started
    part = next(p for p in second["parts"] if p["name"] == f"{label}:bench")
    return {
        "engine": label,
        "dump_bytes": part["details"]["bytes"],
        "plain_s": plain,
        "shipper_s": ours,
        "plain_again_s": plain_again,
        "shipper_again_s": ours_again,
        "unchanged_added": part["bytes_added"],
        "first_added": sum(p["bytes_added"] for p in first["parts"]),
        "peak_disk": disk.peak,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scale", type=int, default=40, help="pgbench scale (40: about 450 MB of dump)"
    )
    parser.add_argument("--mariadb-mb", type=int, default=420, help="MariaDB table size in MB")
    args = parser.parse_args()
    os.environ["PATH"] = tool_path()
    work = Path(tempfile.mkdtemp(prefix="shipper-dbbench-"))
    os.chmod(work, 0o711)
    repos, servers_dir = work / "repos", work / "servers"
    # Repositories and database servers on tmpfs: the disk watch then sees the
    # master's own filesystems with only shipper (and the dump tools) on them.
    for folder in (repos, servers_dir):
        folder.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4g", "tmpfs", str(folder)], check=True)
    os.chmod(servers_dir, 0o711)
    servers = []
    try:
        pg = PostgreSQLServer(servers_dir / "pg")
        my = MariaDBServer(servers_dir / "my")
        servers += [pg, my]
        pg.start(), my.start()
        print("filling PostgreSQL (pgbench) and MariaDB ...", flush=True)
        fill_postgresql(pg, args.scale)
        fill_mariadb(my, args.mariadb_mb)

        pg_entry = dataclasses.asdict(pg.config(databases=["bench"]))
        pg_argv = [str(postgresql_bindir() / "pg_dump"), "-h", str(pg.socket), "-p", str(pg.port), "-U",
                   "postgres", "--format=plain", "bench"]  # fmt: skip
        pg_env = {**os.environ, "PGPASSWORD": "shipper-test-superuser"}
        my_entry = dataclasses.asdict(my.config(databases=["bench"]))
        my_argv = ["mariadb-dump", f"--socket={my.socket}", "-uroot", "--password=shipper-test-superuser",
                   "--single-transaction", "--routines", "--events", "--triggers", "--hex-blob",
                   "--skip-dump-date", "bench"]  # fmt: skip
        rows = [
            bench_engine("postgresql", pg_entry, pg_argv, pg_env, work, repos),
            bench_engine("mariadb", my_entry, my_argv, dict(os.environ), work, repos),
        ]
        print(f"{'engine':<11} {'dump MB':>8} {'plain s':>8} {'shipper s':>10} {'ratio':>6} "
              f"{'unchanged: ratio':>17} {'added':>10} {'% of dump':>9} {'peak disk':>10}")  # fmt: skip
        for r in rows:
            mb = r["dump_bytes"] / 1e6
            print(
                f"{r['engine']:<11} {mb:>8.0f} {r['plain_s']:>8.1f} {r['shipper_s']:>10.1f} "
                f"{r['shipper_s'] / r['plain_s']:>6.3f} {r['shipper_again_s'] / r['plain_again_s']:>17.3f} "
                f"{r['unchanged_added'] / 1e6:>8.2f}MB {100 * r['unchanged_added'] / r['dump_bytes']:>8.2f}% "
                f"{r['peak_disk'] / 1e6:>8.1f}MB"
            )
        print("targets: ratio <= 1.10; unchanged set adds < 2% of the dump; peak extra disk 0")
        print(
            "(peak disk counts every writer on those filesystems, the database servers' own files too)"
        )
    finally:
        for server in servers:
            server.stop()
        for folder in (repos, servers_dir):
            subprocess.run(["umount", str(folder)], check=False)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
