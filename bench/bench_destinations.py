"""A set to two slaves and an S3 bucket, against today's single slave (issue 11's shape).

Two rest-servers (the slave `repository` and a second slave) and one
SeaweedFS, all on loopback. Times, in one run on the same tree
(bench/dataset.py): a set to one slave alone (the baseline); the same set
with a second slave and the bucket as copy destinations: until complete on
the first destination (the set's own duration: `repository`) and until
complete on all three (the whole `shipper snapshot` run), for a set after
10% of the files changed and for an unchanged one (after a first set that
creates the copies, timed apart; "on all three" ends when the last copy
does, the whole run also looks at each destination for its gauges); then a catch-up: the bucket down for N
sets, then back (time and bytes the bucket grew). The issue asks first <= 1.05x and all <= 2.0x.
Run: .venv/bin/python bench/bench_destinations.py [--files N --mib M --missed N --rounds N]
"""

from __future__ import annotations

import argparse
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

from tests.seaweed import SeaweedFS  # noqa: E402
from tests.shipperenv import RestServer, ShipperEnv, free_port  # noqa: E402


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
    copies = data.get("destinations", [])
    failed = [d for d in copies if d["error"]]
    if failed:
        raise SystemExit(f"a copy failed: {failed}")
    everywhere = max((d.get("done_at", ended) for d in copies), default=ended) - started
    return data["duration"], everywhere, ended - started, used


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
) -> ShipperEnv:
    env = ShipperEnv(base / name)
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
    one: ShipperEnv, spread: ShipperEnv, count: int, change: bool, listed: bool = False
) -> Tuple[List[Times], List[Times]]:
    """Each round takes the same set both ways, in alternating order (page cache).
    `listed`: without the copy records, so every copy lists both sides first (the
    path before the fast one, on the same repositories and key derivation costs)."""
    alone, both = [], []
    for index in range(count):
        if change:
            one.mutate_dataset(seed=10 + index)
        if listed:
            shutil.rmtree(spread.state / "copies", ignore_errors=True)
        if index % 2:
            both.append(snapshot(spread))
            alone.append(snapshot(one))
        else:
            alone.append(snapshot(one))
            both.append(snapshot(spread))
    return alone, both


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--mib", type=int, default=200)
    parser.add_argument("--missed", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-dest-"))
    store = SeaweedFS(base / "weed").start()
    first = RestServer(base / "rest1", free_port(), ["--no-auth", "--append-only"]).start()
    second = RestServer(base / "rest2", free_port(), ["--no-auth", "--append-only"]).start()
    try:
        one = master(base, first, "single")
        one.make_dataset(files=args.files, mib=args.mib)
        spread = master(base, first, "spread", second, store)
        spread.src.rmdir()
        spread.write_config(paths=[str(one.src)])
        # The first set also creates the two copies (restic init): not what a run costs.
        snapshot(one)
        created = snapshot(spread)
        print(f"first set ever, creating both copies: {created[2]:.1f}s")
        ratios("set after 10% of the files changed", *rounds(one, spread, args.rounds, True))
        ratios("unchanged set", *rounds(one, spread, args.rounds, False))
        ratios("10% changed, listing path", *rounds(one, spread, args.rounds, True, True))
        ratios("unchanged, listing path", *rounds(one, spread, args.rounds, False, True))
        catch_up(base, first, store, one.src, args.missed)
    finally:
        first.stop()
        second.stop()
        store.stop()


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
