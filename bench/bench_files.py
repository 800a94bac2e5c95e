"""shipper snapshot against plain `restic backup` of the same paths.

Makes a bench/dataset.py tree (default 20,000 files, 1 GiB), then times, on two
fresh local repositories of the same kind: a first run, an unchanged second
run and a run after a 5% mutation, for `shipper snapshot` and for plain
`restic backup`. Prints the ratios (target: at most 1.05 on the first and the
unchanged run). Run: .venv/bin/python bench/bench_files.py [--files N --mib M]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.shipperenv import ShipperEnv, make_dataset, mutate_dataset, tool_path  # noqa: E402


def timed(argv, env) -> float:
    started = time.monotonic()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.monotonic() - started


def drop_caches() -> None:
    """Same page-cache state for both tools: flush and drop (root only)."""
    subprocess.run(["sync"], check=False)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3, help="unchanged runs to average")
    args = parser.parse_args()
    os.environ["PATH"] = tool_path()

    base = Path(tempfile.mkdtemp(prefix="shipper-bench-"))
    try:
        env = ShipperEnv(base)
        print(f"dataset: {args.files} files, {args.mib} MiB in {env.src}", flush=True)
        make_dataset(env.src, files=args.files, mib=args.mib, seed=11)
        env.run("init", check=True)
        plain_repo = base / "plain-repo"
        env.restic("init", repo=str(plain_repo))
        shipper = [str(Path(sys.executable).parent / "shipper"), "snapshot"]
        plain = [
            "restic", "-r", str(plain_repo), "--password-file", str(env.password_file),
            "backup", "--json", "--host", "bench", str(env.src),
        ]  # fmt: skip
        plain_env = {**env.env(), "RESTIC_CACHE_DIR": str(base / "plain-cache")}

        rows = []
        for label, rounds in (("first run", 1), ("unchanged", args.rounds), ("5% changed", 1)):
            if label == "5% changed":
                mutate_dataset(env.src, percent=5, seed=12)
            ours = theirs = 0.0
            for _ in range(rounds):
                drop_caches()
                theirs += timed(plain, plain_env)
                drop_caches()
                ours += timed(shipper, env.env())
            rows.append((label, ours / rounds, theirs / rounds))

        print(f"{'run':<12} {'shipper s':>10} {'restic s':>10} {'ratio':>7}")
        for label, ours, theirs in rows:
            print(f"{label:<12} {ours:>10.2f} {theirs:>10.2f} {ours / theirs:>7.3f}")
        print("target: ratio <= 1.05 on the first and the unchanged run")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
