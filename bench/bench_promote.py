"""The time to recover: `shipper promote` against plain restic plus plain loads.

Makes a bench/dataset.py tree (default 60,000 files, 2 GiB), a PostgreSQL
pgbench database and a MariaDB database (together about 800 MB of dumps) on
throwaway "master" servers, takes one set into a local repository, then on
throwaway "slave" servers times, from the same empty state and a dropped page
cache each time:

  plain    restic restore of the files snapshot, then for each dump part
           `restic dump | mariadb` / `| psql` (globals included), one after
           the other, as an operator without shipper would do it
  promote  `shipper promote --yes` (preflight, plan, files and databases side
           by side, hooks, role), its report split into files and databases

Prints the times and the ratios (target: promote at most 1.10 x plain).

With --standby, a warm standby slave too (issue 12): `shipper standby apply`
of that set (the first, full apply), then --change percent of the files
changed on the master, a new set, and its apply (the apply lag and its CPU
and I/O cost), then `shipper promote` with the standby current: its RTO
against the cold promote above (target: at most 10 s and 0.25 x cold).

Run as root: .venv/bin/python bench/bench_promote.py [--files N --mib M
--pg-scale S --mariadb-mib M --standby --change PCT --keep]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from shipper.core import config, sets  # noqa: E402
from shipper.core import manifest as manifests  # noqa: E402
from shipper.core.manifest import Dump  # noqa: E402
from shipper.core.restic import Repository, Restic  # noqa: E402
from tests.dbservers import MariaDBServer, PostgreSQLServer  # noqa: E402
from tests.shipperenv import (  # noqa: E402
    TOOLS,
    ShipperEnv,
    make_dataset,
    mutate_dataset,
    tool_path,
)


def drop_caches() -> None:
    """The same cold page cache for both: flush and drop (root only)."""
    subprocess.run(["sync"], check=False)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        print("  (cannot drop the page cache: times are warm)", flush=True)


def fill_postgresql(server: PostgreSQLServer, scale: int) -> None:
    server.sql("CREATE DATABASE bench")
    argv = ["pgbench", "-i", "-q", "-s", str(scale), "-h", server.socket, "-p", str(server.port)]
    subprocess.run([*argv, "-U", "postgres", "bench"], check=True, capture_output=True)


def fill_mariadb(server: MariaDBServer, mib: int) -> None:
    server.sql("CREATE DATABASE bench")
    server.sql(
        "CREATE TABLE events (id INT AUTO_INCREMENT PRIMARY KEY, at DATETIME, kind INT,"
        " body VARCHAR(255), KEY (kind))",
        "bench",
    )
    rows = mib * (1 << 20) // 160  # about 160 bytes a row in the dump
    done = 0
    while done < rows:
        batch = min(200000, rows - done)
        server.sql(
            "INSERT INTO events (at, kind, body) SELECT NOW() - INTERVAL seq SECOND, seq % 97,"
            f" CONCAT(SHA2(seq + {done}, 256), ' ', MD5(seq), ' ', REPEAT('x', seq % 40))"
            f" FROM seq_1_to_{batch}",
            "bench",
        )
        done += batch


def newest_set(cfg: config.Config) -> Tuple[str, str, List[Dump]]:
    repo = cfg.repository
    restic = Restic(
        Repository(url=repo.url, password_file=repo.password_file), binary=str(TOOLS / "restic")
    )
    chosen = sets.group(restic.snapshots())[0]
    manifest = manifests.read(restic, chosen)
    assert manifest is not None and chosen.status == sets.COMPLETE, chosen.status
    return (
        chosen.id,
        chosen.parts[sets.FILES_PART].snapshot,
        manifest.dumps(chosen),
    )


def plain_run(
    env: ShipperEnv,
    files: str,
    loads: List[Dump],
    target: Path,
    servers: Dict[str, Any],
) -> Tuple[float, float]:
    """restic restore, then each dump piped into its client: (files seconds, databases seconds)."""
    restic = f"restic -r {env.repo} --password-file {env.password_file} --no-lock"
    started = time.monotonic()
    subprocess.run(
        f"{restic} restore {files} --target {target} -q", shell=True, check=True, env=env.env()
    )
    files_seconds = time.monotonic() - started
    started = time.monotonic()
    for load in loads:
        server = servers[load.engine]
        subprocess.run(
            [
                "bash",
                "-o",
                "pipefail",
                "-c",
                f"{restic} dump {load.snapshot} /{load.filename} | {client(server, load)}",
            ],
            check=not load.is_globals,  # the loading account itself exists already
            env=env.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    return files_seconds, time.monotonic() - started


def client(server: Any, load: Dump) -> str:
    if isinstance(server, MariaDBServer):
        if load.is_globals:
            return f"mariadb -S {server.socket} -u root --force"
        server.sql("DROP DATABASE IF EXISTS plain; CREATE DATABASE plain")
        return f"mariadb -S {server.socket} -u root plain"
    if load.is_globals:
        return f"psql -q -h {server.socket} -p {server.port} -U postgres -d postgres"
    server.sql("DROP DATABASE IF EXISTS plain")
    server.sql("CREATE DATABASE plain")
    return f"psql -q -h {server.socket} -p {server.port} -U postgres -d plain"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=60000)
    parser.add_argument("--mib", type=int, default=2048)
    parser.add_argument(
        "--pg-scale", type=int, default=45, help="pgbench scale (100,000 accounts each)"
    )
    parser.add_argument("--mariadb-mib", type=int, default=400, help="MariaDB dump size, about")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--standby", action="store_true", help="time the warm standby path too")
    parser.add_argument("--change", type=int, default=1, help="percent of files changed (standby)")
    args = parser.parse_args()
    os.environ["PATH"] = tool_path()
    base = Path(tempfile.mkdtemp(prefix="shipper-bench-promote-"))
    os.chmod(base, 0o711)  # PostgreSQL's own user reaches its data folder inside
    servers: List[Any] = []
    try:
        return run(args, base, servers)
    finally:
        for server in servers:
            server.stop()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


def run(args: argparse.Namespace, base: Path, servers: List[Any]) -> int:
    master_db = [MariaDBServer(base / "m-mariadb"), PostgreSQLServer(base / "m-postgresql")]
    slave_db = [MariaDBServer(base / "s-mariadb"), PostgreSQLServer(base / "s-postgresql")]
    servers += [server.start() for server in master_db + slave_db]
    env = ShipperEnv(base / "master")
    print(
        f"dataset: {args.files} files, {args.mib} MiB; pgbench scale {args.pg_scale}; "
        f"MariaDB about {args.mariadb_mib} MiB",
        flush=True,
    )
    make_dataset(env.src, files=args.files, mib=args.mib, seed=21)
    fill_postgresql(master_db[1], args.pg_scale)
    fill_mariadb(master_db[0], args.mariadb_mib)

    def databases(pair: List[Any]) -> Dict[str, Any]:
        return {
            "enabled": True,
            "mariadb": [{**dataclasses.asdict(pair[0].config()), "databases": ["bench"]}],
            "postgresql": [{**dataclasses.asdict(pair[1].config()), "databases": ["bench"]}],
        }

    env.write_config(databases=databases(master_db))
    env.run("init", check=True)
    started = time.monotonic()
    env.run("snapshot", check=True, timeout=3600)
    print(f"set taken in {time.monotonic() - started:.1f}s", flush=True)

    slave = json.loads(json.dumps(env.settings))
    slave.update(role="slave", state_dir=str(base / "slave-state"), databases=databases(slave_db))
    slave["repository"]["local_path"] = slave["repository"]["url"]
    slave_config = base / "slave.yml"
    slave_config.write_text(yaml.safe_dump(slave))
    set_id, files, loads = newest_set(config.load(str(slave_config)))
    dump_bytes = sum(load.bytes for load in loads)
    print(f"set {set_id}: {len(loads)} dump parts, {dump_bytes / 1e6:.0f} MB of dumps", flush=True)

    drop_caches()
    by_engine = {"mariadb": slave_db[0], "postgresql": slave_db[1]}
    plain_files, plain_db = plain_run(env, files, loads, base / "plain-root", by_engine)
    print(f"plain: files {plain_files:.1f}s, databases {plain_db:.1f}s", flush=True)
    shutil.rmtree(base / "plain-root")

    drop_caches()
    started = time.monotonic()
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "shipper"),
            "promote",
            "--yes",
            "--json",
            "--root",
            str(base / "promote-root"),
        ],
        env={**env.env(), "SHIPPER_CONFIG": str(slave_config)},
        capture_output=True,
        text=True,
    )
    wall = time.monotonic() - started
    if done.returncode != 0:
        print(done.stdout, done.stderr, file=sys.stderr)
        return 1
    report = json.loads(done.stdout)
    split = report["split"]
    plan = next(s["seconds"] for s in report["steps"] if s["name"] == "preflight and plan")
    rows = [
        ("files", split["files"] + plan, plain_files),
        ("databases", split["databases"], plain_db),
        ("total (wall)", wall, plain_files + plain_db),
    ]
    print(f"\n{'RTO':<14} {'promote s':>10} {'plain s':>10} {'ratio':>7}")
    for label, ours, theirs in rows:
        print(f"{label:<14} {ours:>10.1f} {theirs:>10.1f} {ours / theirs:>7.3f}")
    print(
        f"(promote's files row includes its preflight and plan, {plan:.1f}s; promote restores "
        f"the files while the databases load, {promote_parallel(slave)} at a time, so its two "
        "rows overlap and add up to more than its total)"
    )
    print("target: total ratio <= 1.10")
    if args.standby:
        return bench_standby(args, env, slave, base, wall)
    return 0


def shipper(config_path: Path, env: ShipperEnv, *args: str) -> Tuple[float, Dict[str, float]]:
    """Run one shipper command; its wall time and its CPU and I/O (children included)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "shipper"), *args],
        env={**env.env(), "SHIPPER_CONFIG": str(config_path)},
        capture_output=True,
        text=True,
    )
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"shipper {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return wall, {
        "cpu": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
        "read_mb": (after.ru_inblock - before.ru_inblock) * 512 / 1e6,
        "write_mb": (after.ru_oublock - before.ru_oublock) * 512 / 1e6,
    }


def bench_standby(
    args: argparse.Namespace, env: ShipperEnv, slave: Dict[str, Any], base: Path, cold: float
) -> int:
    settings = json.loads(json.dumps(slave))
    settings.update(
        state_dir=str(base / "standby-state"),
        standby={"enabled": True, "root": str(base / "standby-root")},
    )
    config_path = base / "standby.yml"
    config_path.write_text(yaml.safe_dump(settings))
    drop_caches()
    first, cost = shipper(config_path, env, "standby", "apply")
    print(f"\nstandby: first apply (everything) {first:.1f}s, {describe(cost)}", flush=True)
    mutate_dataset(env.src, percent=args.change, seed=22)
    env.run("snapshot", check=True, timeout=3600)
    drop_caches()
    lag, cost = shipper(config_path, env, "standby", "apply")
    print(f"standby: apply of a {args.change}% change {lag:.1f}s, {describe(cost)}", flush=True)
    drop_caches()
    rto, _ = shipper(config_path, env, "promote", "--yes", "--root", str(base / "standby-root"))
    print(
        f"standby: promote with a current standby {rto:.1f}s, cold {cold:.1f}s, "
        f"ratio {rto / cold:.3f} (targets: <= 10 s, <= 0.25; apply lag <= 60 s)"
    )
    return 0


def describe(cost: Dict[str, float]) -> str:
    return (
        f"CPU {cost['cpu']:.1f}s, read {cost['read_mb']:.0f} MB, written {cost['write_mb']:.0f} MB"
    )


def promote_parallel(settings: Dict[str, Any]) -> int:
    return int(settings.get("databases", {}).get("parallel", 2))


if __name__ == "__main__":
    sys.exit(main())
