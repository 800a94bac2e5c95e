"""Runs that meet: a master's run while the slave's prune holds the exclusive lock, two prunes.

The slave's `shipper prune` is stopped (SIGSTOP) while its `restic prune`
holds the repository's exclusive lock, so the overlap lasts as long as the
test wants. Two snapshots at once on the master are in tests/test_snapshot.py
(test_second_concurrent_run_is_refused).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.faults.helpers import (
    EXIT_LOCK_HELD,
    clean_failure,
    is_restic,
    restored_digest,
    sets_json,
    snapshot_ok,
    wait_for_descendant,
)
from tests.shipperenv import ShipperEnv, make_dataset, tree_digest

pytestmark = pytest.mark.slow


def lock_names(repo: Path) -> set:
    return {p.name for p in (repo / "locks").iterdir() if "-tmp-" not in p.name}


def test_a_run_while_prune_holds_the_exclusive_lock(fresh_repo: ShipperEnv, tmp_path: Path):
    env = fresh_repo
    env.write_config(repository={"lock_wait": 3})
    make_dataset(env.src, files=60, mib=1)
    first = snapshot_ok(env)

    slave_cfg = tmp_path / "slave.yml"
    settings = yaml.safe_load(env.config_path.read_text())
    settings.update(role="slave", state_dir=str(tmp_path / "slave-state"))
    settings["repository"]["local_path"] = str(env.repo)
    slave_cfg.write_text(yaml.safe_dump(settings))

    before = lock_names(env.repo)
    prune = env.popen(
        "-c", str(slave_cfg), "prune", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    restic = wait_for_descendant(prune.pid, is_restic("prune"), what="restic prune")
    deadline = time.monotonic() + 30
    while not lock_names(env.repo) - before:
        assert time.monotonic() < deadline, "restic prune took no lock"
        time.sleep(0.01)
    os.kill(restic, signal.SIGSTOP)
    try:
        # The master gives up after lock_wait with a message that says why and what to do.
        clock = time.monotonic()
        refused = env.run("snapshot", timeout=60)
        took = time.monotonic() - clock
        err = clean_failure(refused)
        assert "is locked by another restic process (waited 3s)" in err, err
        assert "exclusively" in err, err
        assert took < 20, f"gave up after {took:.0f}s"
        # A second prune on the slave meets the host lock at once.
        second = env.run("-c", str(slave_cfg), "prune")
        assert second.returncode == EXIT_LOCK_HELD, second.stderr
        assert f"`shipper prune`, pid {prune.pid}" in second.stderr, second.stderr

        # With a longer wait, the run waits for prune to end, then succeeds.
        env.write_config(repository={"lock_wait": 60})
        waiting = env.popen(
            "snapshot", "--json", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        time.sleep(4)
        assert waiting.poll() is None, "the run did not wait for the lock"
    finally:
        os.kill(restic, signal.SIGCONT)
    out, err = prune.communicate(timeout=120)
    assert prune.returncode == 0, out + err
    out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err

    # Nothing broke: both sets are complete, the repository is sound, the restore exact.
    assert [s["status"] for s in sets_json(env)] == ["complete", "complete"]
    assert first in [s["id"] for s in sets_json(env)]
    checked = env.restic("check", check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert restored_digest(env, "latest", tmp_path / "restored") == tree_digest(env.src)
