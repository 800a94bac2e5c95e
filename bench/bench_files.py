"""shipper snapshot against plain `restic backup` of the same paths.

Makes a bench/dataset.py tree (default 20,000 files, 1 GiB), then times, on two
fresh local repositories of the same kind: a first run, an unchanged second
run and a run after a 5% mutation, for `shipper snapshot` and for plain
`restic backup`. Prints the ratios (target: at most 1.05 on the first and the
unchanged run). Run: .venv/bin/python bench/bench_files.py [--files N --mib M]

--baseline SHIPPER times another shipper executable too (an older checkout's
.venv/bin/shipper), on a repository of its own, in the same run: before and
after a change, under the same machine load.
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
    parser.add_argument("--baseline", metavar="SHIPPER", help="another shipper to time as well")
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
        runners = [("restic", plain, plain_env), ("shipper", shipper, env.env())]
        if args.baseline:
            old = ShipperEnv(base / "baseline")
            old.write_config(paths=[str(env.src)])
            old.run("init", check=True)
            runners.append(("baseline", [args.baseline, "snapshot"], old.env()))

        rows = []
        for label, rounds in (("first run", 1), ("unchanged", args.rounds), ("5% changed", 1)):
            if label == "5% changed":
                mutate_dataset(env.src, percent=5, seed=12)
            spent = {name: 0.0 for name, _, _ in runners}
            for _ in range(rounds):
                for name, argv, run_env in runners:
                    drop_caches()
                    spent[name] += timed(argv, run_env)
            rows.append((label, {name: total / rounds for name, total in spent.items()}))

        names = [name for name, _, _ in runners]
        print(f"{'run':<12} " + " ".join(f"{n + ' s':>11}" for n in names) + "  ratios to restic")
        for label, seconds in rows:
            ratios = " ".join(
                f"{n}={seconds[n] / seconds['restic']:.3f}" for n in names if n != "restic"
            )
            print(f"{label:<12} " + " ".join(f"{seconds[n]:>11.2f}" for n in names) + f"  {ratios}")
        print("target: ratio <= 1.05 on the first and the unchanged run")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
