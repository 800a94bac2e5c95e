"""A set to a slave (rest-server) plus an S3 bucket (SeaweedFS), against today's single slave.

Times, in one run on the same tree (bench/dataset.py): a set to one slave
alone (baseline); a set to the slave with the bucket as a copy destination
(until complete on the slave, and until complete on both); the alternative
of pushing the same paths to the bucket with a second `restic backup`; and a
catch-up: the bucket down for N sets, then back (time and bytes the bucket
grew). Run: .venv/bin/python bench/bench_destinations.py [--files N --mib M --missed N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.seaweed import ACCESS_KEY, SECRET_KEY, SeaweedFS  # noqa: E402
from tests.shipperenv import TOOLS, RestServer, ShipperEnv, free_port  # noqa: E402


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def snapshot(env: ShipperEnv) -> tuple:
    """(seconds until the set was complete on repository, seconds in all)."""
    started = time.monotonic()
    result = env.run("snapshot", "--json", check=True)
    return json.loads(result.stdout)["duration"], time.monotonic() - started


def master(base: Path, server: RestServer, name: str, store=None, down=False) -> ShipperEnv:
    env = ShipperEnv(base / name)
    extra = []
    if store is not None:
        endpoint = f"http://127.0.0.1:{free_port()}" if down else store.endpoint
        extra = [{"name": "offsite", "kind": "s3", "endpoint": endpoint, "bucket": name}]
        extra[0].update(store.credential_files(env.base / "creds"))
    env.write_config(repository={"url": f"{server.url}{name}/"}, destinations=extra)
    env.run("init", check=True)
    return env


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--mib", type=int, default=200)
    parser.add_argument("--missed", type=int, default=10)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-dest-"))
    store = SeaweedFS(base / "weed").start()
    server = RestServer(base / "rest", free_port(), ["--no-auth", "--append-only"]).start()
    try:
        one = master(base, server, "single")
        one.make_dataset(files=args.files, mib=args.mib)
        both = master(base, server, "both", store)
        both.src.rmdir()
        both.write_config(paths=[str(one.src)])
        base_set, _ = snapshot(one)
        first, total = snapshot(both)
        print(
            f"first set: slave alone {base_set:.1f}s; with the bucket: on the slave {first:.1f}s "
            f"({first / base_set:.2f}x), on both {total:.1f}s ({total / base_set:.2f}x)"
        )
        push = push_backup(store, one)
        print(f"the alternative, a second restic backup of the paths into a bucket: {push:.1f}s")
        base_set, _ = snapshot(one)
        first, total = snapshot(both)
        push = push_backup(store, one)
        print(
            f"unchanged set: slave alone {base_set:.1f}s; with the bucket: on the slave {first:.1f}s, "
            f"on both {total:.1f}s; a second restic backup into a bucket instead: {push:.1f}s"
        )
        catch_up(base, server, store, one.src, args.missed)
    finally:
        server.stop()
        store.stop()


def push_backup(store: SeaweedFS, env: ShipperEnv) -> float:
    repo = f"s3:{store.endpoint}/push"
    plain = {**env.env(), "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    for args in ([] if (store.base / "pushed").exists() else [["init"]]) + [
        ["backup", str(env.src)]
    ]:
        started = time.monotonic()
        cmd = [str(TOOLS / "restic"), "-r", repo, "--password-file", str(env.password_file), *args]
        subprocess.run(cmd, env=plain, check=True, capture_output=True)
    (store.base / "pushed").touch()
    return time.monotonic() - started


def catch_up(base: Path, server: RestServer, store: SeaweedFS, src: Path, missed: int) -> None:
    env = master(base, server, "late", store, down=True)
    env.write_config(paths=[str(src)])
    for _ in range(missed):
        env.run("snapshot", check=True)
    env.write_config(destinations=[{**env.settings["destinations"][0], "endpoint": store.endpoint}])
    before = disk_bytes(store.base)
    _, total = snapshot(env)
    grown = disk_bytes(store.base) - before
    print(
        f"catch-up of {missed + 1} unchanged sets: {total:.1f}s, the store grew {grown / 2**20:.1f} MiB"
    )


if __name__ == "__main__":
    os.environ.setdefault("TMPDIR", "/tmp")
    main()
