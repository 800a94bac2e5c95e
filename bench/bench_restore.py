"""Restoring by hand: `shipper restore` and `shipper restore-db` of a whole set
against plain restic in the same run.

Makes a bench/dataset.py tree and N small MariaDB databases on a throwaway
server, takes one set into a local repository, then times, alternating, with
the page cache dropped before each:

  files  plain `restic restore SNAPSHOT --target DIR` (the snapshot id known)
         against `shipper restore SET --target DIR`
  dbs    plain `restic dump SNAPSHOT /FILE | mariadb DB` per database, one
         after the other and `--parallel` at a time, against one
         `shipper restore-db SET --suffix _s` (databases.parallel loads)

Prints the ratios (target: at most 1.05 x plain). Every restic process pays
the repository's key derivation; shipper's restore of a set id runs one, as
plain restic does, and restore-db runs two more than plain (the listing and
the manifest).
Run as root: .venv/bin/python bench/bench_restore.py [--databases N --rows R
--files N --mib M --parallel P --runs K]
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

from bench.bench_promote import drop_caches, newest_set  # noqa: E402
from shipper.core import config  # noqa: E402
from shipper.core.manifest import Dump  # noqa: E402
from tests.dbservers import MariaDBServer  # noqa: E402
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


def plain_loads(env: ShipperEnv, server: MariaDBServer, loads: List[Dump], parallel: int) -> None:
    restic = f"restic -r {env.repo} --password-file {env.password_file} --no-lock"

    def one(load: Dump) -> None:
        name = f"{load.database}_p"
        server.sql(f"DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name}")
        pipe = f"{restic} dump {load.snapshot} /{load.filename} | mariadb -S {server.socket} -u root {name}"
        subprocess.run(["bash", "-o", "pipefail", "-c", pipe], check=True, env=env.env())

    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, loads))


def shipper_loads(server: MariaDBServer, env: ShipperEnv, names: List[str]) -> None:
    for name in names:
        server.sql(f"DROP DATABASE IF EXISTS {name}_s")
    env.run("restore-db", "latest", "--suffix", "_s", check=True, timeout=3600)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", type=int, default=20)
    parser.add_argument("--rows", type=int, default=20000, help="rows per database (~100 B each)")
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--mib", type=int, default=100)
    parser.add_argument("--parallel", type=int, default=2, help="databases.parallel, both sides")
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    os.environ["PATH"] = tool_path()
    base = Path(tempfile.mkdtemp(prefix="shipper-bench-restore-"))
    os.chmod(base, 0o711)
    server = MariaDBServer(base / "mariadb")
    try:
        server.start()
        return run(args, base, server)
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def run(args: argparse.Namespace, base: Path, server: MariaDBServer) -> int:
    env = ShipperEnv(base / "master")
    make_dataset(env.src, files=args.files, mib=args.mib, seed=31)
    names = fill(server, args.databases, args.rows)
    entry = {**dataclasses.asdict(server.config()), "databases": names}
    env.write_config(
        databases={"enabled": True, "parallel": args.parallel, "mariadb": [entry], "postgresql": []}
    )
    env.run("init", check=True)
    env.run("snapshot", check=True, timeout=3600)
    set_id, files, dumps = newest_set(config.load(str(env.config_path)))
    loads = [d for d in dumps if not d.is_globals]
    mb = sum(d.bytes for d in loads) / 1e6
    print(
        f"set {set_id}: {args.files} files / {args.mib} MiB; {len(loads)} databases, {mb:.0f} MB of dumps"
    )

    restic = f"restic -r {env.repo} --password-file {env.password_file} --no-lock -q"
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
        times["p1"].append(timed(lambda: plain_loads(env, server, loads, 1)))
        times["pp"].append(timed(lambda: plain_loads(env, server, loads, args.parallel)))
        times["sd"].append(timed(lambda: shipper_loads(server, env, names)))
    m = {k: statistics.mean(v) for k, v in times.items()}
    print(
        f"files: plain restic restore {m['pf']:.2f}s, shipper restore {m['sf']:.2f}s, ratio {m['sf'] / m['pf']:.2f}"
    )
    print(
        f"databases: plain one by one {m['p1']:.2f}s, plain {args.parallel} at a time {m['pp']:.2f}s, "
        f"shipper restore-db {m['sd']:.2f}s; ratio {m['sd'] / m['p1']:.2f} (one by one), "
        f"{m['sd'] / m['pp']:.2f} (same parallelism)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
