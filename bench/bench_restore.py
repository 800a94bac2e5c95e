"""Restoring by hand: `shipper restore` and `shipper restore-db` of a whole set
against plain restic in the same run.

Makes a bench/dataset.py tree, N small MariaDB databases on a throwaway
server and, with --pg-scale / --mariadb-mib, a pgbench database and a large
MariaDB one, takes one set into a local repository, then times, alternating,
with the page cache dropped before each:

  files  plain `restic restore SNAPSHOT --target DIR` (the snapshot id known)
         against `shipper restore SET --target DIR`
  dbs    plain `restic dump SNAPSHOT /FILE | mariadb DB` (or `| psql`) per
         database into a new database, one after the other and `--parallel`
         at a time, against one `shipper restore-db SET --suffix _s`
         (databases.parallel loads)

Both sides run restic as an operator types it, with restic's usual shared
lock (which costs each restic process ~0.2 s of waiting: restic checks for
other locks 200 ms after making its own); shipper keeps that lock so a
concurrent prune cannot pull data from under a restore. --plain-no-lock runs
the plain side without it (as this bench did before). Every restic process
pays the repository's key derivation; `restore` of a set id runs one, as
plain restic does, and `restore-db` of a set id one more than plain (the
manifest, which names every dump's snapshot; no listing).
Prints the ratios (target: at most 1.05 x plain).
Run as root: .venv/bin/python bench/bench_restore.py [--databases N --rows R
--pg-scale S --mariadb-mib M --files N --mib M --parallel P --runs K
--plain-no-lock]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_promote import (  # noqa: E402
    drop_caches,
    fill_mariadb,
    fill_postgresql,
    newest_set,
)
from shipper.core import config  # noqa: E402
from shipper.core.manifest import Dump  # noqa: E402
from tests.dbservers import MariaDBServer, PostgreSQLServer  # noqa: E402
from tests.shipperenv import ShipperEnv, make_dataset, tool_path  # noqa: E402


def fill(server: MariaDBServer, count: int, rows: int) -> List[str]:
    names = [f"db{i:03d}" for i in range(count)]
    for name in names:
        server.sql(f"CREATE DATABASE {name}")
        server.sql(f"CREATE TABLE {name}.t (id INT PRIMARY KEY, body VARCHAR(200))")
        server.sql(
            f"INSERT INTO {name}.t SELECT seq, CONCAT(SHA2(seq, 256), MD5(seq)) "
            f"FROM seq_1_to_{rows}",
            name,
        )
    return names


def timed(work: Callable[[], Any]) -> float:
    drop_caches()
    started = time.monotonic()
    work()
    return time.monotonic() - started


def drop(server: Any, name: str) -> None:
    server.sql(f"DROP DATABASE IF EXISTS {name}")


def client(server: Any, name: str) -> str:
    """The plain client command loading into a new database `name`."""
    drop(server, name)
    server.sql(f"CREATE DATABASE {name}")
    if isinstance(server, PostgreSQLServer):
        return f"psql -q -h {server.socket} -p {server.port} -U postgres -d {name} >/dev/null"
    return f"mariadb -S {server.socket} -u root {name}"


def plain_loads(
    env: ShipperEnv, servers: Dict[str, Any], loads: List[Dump], parallel: int, restic: str
) -> None:

    def one(load: Dump) -> None:
        into = client(servers[load.engine], f"{load.database}_p")
        pipe = f"{restic} dump {load.snapshot} /{load.filename} | {into}"
        subprocess.run(["bash", "-o", "pipefail", "-c", pipe], check=True, env=env.env())

    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, loads))


def shipper_loads(env: ShipperEnv, servers: Dict[str, Any], loads: List[Dump], set_id: str) -> None:
    for load in loads:
        drop(servers[load.engine], f"{load.database}_s")
    done = env.run("restore-db", set_id, "--suffix", "_s", check=True, timeout=3600)
    print("  " + done.stdout.strip().replace("\n", "\n  "), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", type=int, default=20, help="small MariaDB databases")
    parser.add_argument("--rows", type=int, default=20000, help="rows per database (~100 B each)")
    parser.add_argument("--pg-scale", type=int, default=0, help="a pgbench database too (0: none)")
    parser.add_argument("--mariadb-mib", type=int, default=0, help="a large MariaDB one (0: none)")
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--mib", type=int, default=100)
    parser.add_argument("--parallel", type=int, default=2, help="databases.parallel, both sides")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument(
        "--plain-no-lock", action="store_true", help="plain restic with --no-lock (unsafe)"
    )
    args = parser.parse_args()
    os.environ["PATH"] = tool_path()
    base = Path(tempfile.mkdtemp(prefix="shipper-bench-restore-"))
    os.chmod(base, 0o711)
    servers = {"mariadb": MariaDBServer(base / "mariadb")}
    if args.pg_scale:
        servers["postgresql"] = PostgreSQLServer(base / "postgresql")
    try:
        for server in servers.values():
            server.start()
        return run(args, base, servers)
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(base, ignore_errors=True)


def fill_all(args: argparse.Namespace, servers: Dict[str, Any]) -> Dict[str, Any]:
    """Every database; the `databases` config section naming them."""
    names = fill(servers["mariadb"], args.databases, args.rows)
    if args.mariadb_mib:
        fill_mariadb(servers["mariadb"], args.mariadb_mib)  # database `bench`
        names.append("bench")
    section: Dict[str, Any] = {"enabled": True, "parallel": args.parallel, "postgresql": []}
    section["mariadb"] = [{**dataclasses.asdict(servers["mariadb"].config()), "databases": names}]
    if args.pg_scale:
        fill_postgresql(servers["postgresql"], args.pg_scale)  # database `bench`
        pg = {**dataclasses.asdict(servers["postgresql"].config()), "databases": ["bench"]}
        section["postgresql"] = [pg]
    return section


def run(args: argparse.Namespace, base: Path, servers: Dict[str, Any]) -> int:
    env = ShipperEnv(base / "master")
    make_dataset(env.src, files=args.files, mib=args.mib, seed=31)
    env.write_config(databases=fill_all(args, servers))
    env.run("init", check=True)
    env.run("snapshot", check=True, timeout=3600)
    set_id, files, dumps = newest_set(config.load(str(env.config_path)))
    loads = [d for d in dumps if not d.is_globals]
    mb = sum(d.bytes for d in loads) / 1e6
    print(
        f"set {set_id}: {args.files} files / {args.mib} MiB; {len(loads)} databases, "
        f"{mb:.0f} MB of dumps",
        flush=True,
    )

    restic = f"restic -r {env.repo} --password-file {env.password_file} -q"
    restic += " --no-lock" if args.plain_no_lock else ""
    plain_target, shipper_target = base / "plain", base / "shipper"

    def plain_files() -> None:
        command = f"{restic} restore {files} --target {plain_target}"
        subprocess.run(command, shell=True, check=True, env=env.env(), stdout=subprocess.DEVNULL)

    def shipper_files() -> None:
        env.run("restore", set_id, "--target", str(shipper_target), check=True)

    times: Dict[str, List[float]] = {k: [] for k in ("pf", "sf", "p1", "pp", "sd")}
    for index in range(args.runs):
        shutil.rmtree(plain_target, ignore_errors=True)
        shutil.rmtree(shipper_target, ignore_errors=True)
        order = [("pf", plain_files), ("sf", shipper_files)]
        for key, work in order if index % 2 == 0 else list(reversed(order)):
            times[key].append(timed(work))
        dbs = [
            ("p1", lambda: plain_loads(env, servers, loads, 1, restic)),
            ("pp", lambda: plain_loads(env, servers, loads, args.parallel, restic)),
            ("sd", lambda: shipper_loads(env, servers, loads, set_id)),
        ]
        for key, work in dbs if index % 2 == 0 else list(reversed(dbs)):
            times[key].append(timed(work))
        print(f"run {index + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()))
    m = {k: statistics.mean(v) for k, v in times.items()}
    print(
        f"files: plain restic restore {m['pf']:.2f}s, shipper restore {m['sf']:.2f}s, "
        f"ratio {m['sf'] / m['pf']:.2f}"
    )
    print(
        f"databases: plain one by one {m['p1']:.2f}s, plain {args.parallel} at a time "
        f"{m['pp']:.2f}s, shipper restore-db {m['sd']:.2f}s; ratio {m['sd'] / m['p1']:.2f} "
        f"(one by one), {m['sd'] / m['pp']:.2f} (same parallelism)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
