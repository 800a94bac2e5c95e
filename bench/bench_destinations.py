"""A set to two slaves and an S3 bucket, against today's single slave (issue 11's shape).

Two rest-servers (the slave `repository` and a second slave) and one
SeaweedFS, all on loopback. A set is what shipper takes: a tree
(bench/dataset.py) and the dumps of a MariaDB and a PostgreSQL database, each
on a throwaway server of the bench's own (`--mariadb-mib 0 --pg-scale 0`: files
only). Times, in one run on the same tree and databases: a set to one slave
alone (the baseline); the same set
with a second slave and the bucket as copy destinations: until complete on
the first destination (the set's own duration: `repository`) and until
complete on all three (the whole `shipper snapshot` run), for a set after
10% of the files changed and for an unchanged one (after a first set that
creates the copies, timed apart; "on all three" ends when the last copy
does, the whole run also looks at each destination for its gauges; in a
changed round 1% of each database's rows change too); then a catch-up: the
bucket down for N sets, then back (time and bytes the bucket grew). The issue
asks first <= 1.05x and all <= 2.0x, and dumps run once: the bench counts them.
Run: .venv/bin/python bench/bench_destinations.py [--files N --mib M --mariadb-mib M
     --pg-scale S --missed N --rounds N]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_promote import fill_mariadb, fill_postgresql  # noqa: E402
from tests.dbservers import MariaDBServer, PostgreSQLServer  # noqa: E402
from tests.seaweed import SeaweedFS  # noqa: E402
from tests.shipperenv import RestServer, ShipperEnv, free_port, tool_path  # noqa: E402


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def snapshot(env: ShipperEnv) -> Tuple[float, float, float, float]:
    """Seconds until the set was complete on repository, until it was complete on every
    destination (the last copy's end; the run itself when there are none), of the whole
    run (which then also looks at each destination for its gauges), and the CPU seconds
    of the whole run and its restic processes (what a busy machine does not blur)."""
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    result = env.run("snapshot", "--json", check=True)
    ended = time.time()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime
    data = json.loads(result.stdout)
    dumps = [p for p in data["parts"] if "engine" in p["details"]]
    if any(p["outcome"] != "ok" for p in dumps):
        raise SystemExit(f"a dump failed: {dumps}")
    DUMPS_RUN.append(len(dumps))
    copies = data.get("destinations", [])
    failed = [d for d in copies if d["error"]]
    if failed:
        raise SystemExit(f"a copy failed: {failed}")
    everywhere = max((d.get("done_at", ended) for d in copies), default=ended) - started
    return data["duration"], everywhere, ended - started, used


# How many dumps each timed run took (the set's database parts): once per set, not per destination.
DUMPS_RUN: List[int] = []


def bucket_entry(env: ShipperEnv, store: SeaweedFS, name: str, down: bool) -> Dict[str, Any]:
    endpoint = f"http://127.0.0.1:{free_port()}" if down else store.endpoint
    entry = {"name": "offsite", "kind": "s3", "endpoint": endpoint, "bucket": name}
    entry.update(store.credential_files(env.base / "creds"))
    return entry


def master(
    base: Path,
    first: RestServer,
    name: str,
    second: Optional[RestServer] = None,
    store: Optional[SeaweedFS] = None,
    down: bool = False,
    databases: Optional[Dict[str, Any]] = None,
) -> ShipperEnv:
    env = ShipperEnv(base / name)
    if databases:
        env.write_config(databases=databases)
    extra: List[Dict[str, Any]] = []
    if second is not None:
        extra.append({"name": "spare", "kind": "slave", "url": f"{second.url}{name}/"})
    if store is not None:
        extra.append(bucket_entry(env, store, name, down))
    env.write_config(repository={"url": f"{first.url}{name}/"}, destinations=extra)
    env.run("init", check=True)
    return env


Times = Tuple[float, float, float, float]


def ratios(label: str, alone: List[Times], spread: List[Times]) -> None:
    """Medians of the rounds: the machine is shared, one run says little."""
    a_first, _, a_run, a_cpu = (statistics.median(t[i] for t in alone) for i in range(4))
    s_first, s_all, s_run, s_cpu = (statistics.median(t[i] for t in spread) for i in range(4))
    print(
        f"{label} (median of {len(alone)}): one slave alone {a_first:.1f}s (run {a_run:.1f}s); "
        f"two slaves + bucket: complete on the first {s_first:.1f}s ({s_first / a_first:.2f}x), "
        f"on all three {s_all:.1f}s ({s_all / a_run:.2f}x of the run), "
        f"whole run with the destinations' gauges {s_run:.1f}s ({s_run / a_run:.2f}x); "
        f"CPU {a_cpu:.1f}s alone, {s_cpu:.1f}s ({s_cpu / a_cpu:.2f}x)"
    )


def rounds(
    one: ShipperEnv,
    spread: ShipperEnv,
    count: int,
    change: bool,
    servers: Dict[str, Any],
    listed: bool = False,
) -> Tuple[List[Times], List[Times]]:
    """Each round takes the same set both ways, in alternating order (page cache).
    `listed`: without the copy records, so every copy lists both sides first (the
    path before the fast one, on the same repositories and key derivation costs)."""
    alone, both = [], []
    for index in range(count):
        if change:
            one.mutate_dataset(seed=10 + index)
            change_rows(servers)
        if listed:
            shutil.rmtree(spread.state / "copies", ignore_errors=True)
        if index % 2:
            both.append(snapshot(spread))
            alone.append(snapshot(one))
        else:
            alone.append(snapshot(one))
            both.append(snapshot(spread))
    return alone, both


def change_rows(servers: Dict[str, Any]) -> None:
    """1% of each database's rows, as a day's work between two sets might."""
    if "mariadb" in servers:
        servers["mariadb"].sql("UPDATE events SET kind = kind + 1 WHERE id % 100 = 0", "bench")
    if "postgresql" in servers:
        servers["postgresql"].sql(
            "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 100 = 0", "bench"
        )


def start_databases(base: Path, args: argparse.Namespace) -> Dict[str, Any]:
    """The bench's own servers, filled: the same databases in every set both ways."""
    servers: Dict[str, Any] = {}
    if args.mariadb_mib:
        servers["mariadb"] = MariaDBServer(base / "mariadb").start()
        fill_mariadb(servers["mariadb"], args.mariadb_mib)
    if args.pg_scale:
        servers["postgresql"] = PostgreSQLServer(base / "postgresql").start()
        fill_postgresql(servers["postgresql"], args.pg_scale)
    return servers


def databases_section(servers: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    if not servers:
        return None
    section: Dict[str, Any] = {"enabled": True, "mariadb": [], "postgresql": []}
    for engine, server in servers.items():
        section[engine] = [{**dataclasses.asdict(server.config()), "databases": ["bench"]}]
    return section


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--mib", type=int, default=200)
    parser.add_argument("--mariadb-mib", type=int, default=40, help="0: no MariaDB database")
    parser.add_argument("--pg-scale", type=int, default=4, help="pgbench scale; 0: none")
    parser.add_argument("--missed", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    os.environ["PATH"] = tool_path()
    base = Path(tempfile.mkdtemp(prefix="bench-dest-"))
    os.chmod(base, 0o711)  # the database servers' own user reaches its data below
    servers = start_databases(base, args)
    store = SeaweedFS(base / "weed").start()
    first = RestServer(base / "rest1", free_port(), ["--no-auth", "--append-only"]).start()
    second = RestServer(base / "rest2", free_port(), ["--no-auth", "--append-only"]).start()
    try:
        section = databases_section(servers)
        one = master(base, first, "single", databases=section)
        one.make_dataset(files=args.files, mib=args.mib)
        spread = master(base, first, "spread", second, store, databases=section)
        spread.src.rmdir()
        spread.write_config(paths=[str(one.src)])
        # The first set also creates the two copies (restic init): not what a run costs.
        snapshot(one)
        created = snapshot(spread)
        print(f"first set ever, creating both copies: {created[2]:.1f}s")
        print(f"each set: {args.files} files / {args.mib} MiB, {DUMPS_RUN[-1]} dumps")
        DUMPS_RUN.clear()
        for label, change, listed in (
            ("set after 10% of the files and 1% of the rows changed", True, False),
            ("unchanged set", False, False),
            ("changed, listing path", True, True),
            ("unchanged, listing path", False, True),
        ):
            ratios(label, *rounds(one, spread, args.rounds, change, servers, listed))
        print(f"dumps per set, every timed run: {sorted(set(DUMPS_RUN))} (never per destination)")
        catch_up(base, first, store, one.src, args.missed)
    finally:
        first.stop()
        second.stop()
        store.stop()
        for server in servers.values():
            server.stop()


def catch_up(base: Path, server: RestServer, store: SeaweedFS, src: Path, missed: int) -> None:
    env = master(base, server, "late", store=store, down=True)
    env.write_config(paths=[str(src)])
    for _ in range(missed):
        env.run("snapshot", check=True)
    env.write_config(destinations=[{**env.settings["destinations"][0], "endpoint": store.endpoint}])
    before = disk_bytes(store.base)
    _, _, total, _ = snapshot(env)
    grown = disk_bytes(store.base) - before
    print(
        f"catch-up of {missed + 1} unchanged sets: {total:.1f}s, the store grew {grown / 2**20:.1f} MiB"
    )


if __name__ == "__main__":
    os.environ.setdefault("TMPDIR", "/tmp")
    main()
