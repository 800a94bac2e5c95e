"""The slave's disk fills up: a 40 MiB tmpfs holds the repository behind a real rest-server."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.faults.helpers import clean_failure, restored_digest, sets_json, snapshot_ok
from tests.shipperenv import RestServer, ShipperEnv, free_port, make_dataset, tmpfs, tree_digest

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "slave-disk", "size=40m") as disk:
        yield disk


def fill(disk: Path, leave: int) -> Path:
    """A filler file that leaves `leave` bytes free on the disk."""
    filler = disk / "filler"
    size = shutil.disk_usage(disk).free - leave
    with open(filler, "wb") as handle:
        handle.write(b"\0" * size)
    return filler


def test_slave_disk_full_fails_clearly_keeps_old_sets_and_recovers(
    shipper_env: ShipperEnv, small_disk: Path, blank_repository: Path, tmp_path: Path
):
    env = shipper_env
    server = RestServer(small_disk, free_port(), ["--no-auth", "--append-only"]).start()
    try:
        env.write_config(repository={"url": server.url + "master/", "network_timeout": 60})
        shutil.copytree(blank_repository, small_disk / "master")  # restic init, done once
        make_dataset(env.src, files=60, mib=1)
        good_state = tree_digest(env.src)
        good = snapshot_ok(env)

        filler = fill(small_disk, leave=6 << 20)
        (env.src / "big.bin").write_bytes(os.urandom(20 << 20))  # incompressible
        clock = time.monotonic()
        failed = env.run("snapshot", timeout=120)
        took = time.monotonic() - clock
        err = clean_failure(failed)
        assert "slave disk full" in err and server.url + "master/" in err, err
        assert took < 30, f"a full disk took {took:.0f}s to fail (restic retries for 15 min)"

        # The sets already there stay whole and readable.
        assert [(s["id"], s["status"]) for s in sets_json(env)] == [(good, "complete")]
        repo = small_disk / "master"
        checked = env.restic("check", "--read-data", repo=str(repo), check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert restored_digest(env, good, tmp_path / "r1") == good_state

        # Space freed: the next run succeeds and restores byte for byte.
        filler.unlink()
        now_state = tree_digest(env.src)
        second = snapshot_ok(env)
        assert restored_digest(env, second, tmp_path / "r2") == now_state
        checked = env.restic("check", repo=str(repo), check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    finally:
        server.stop()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 100 MiB tmpfs with 64 inodes: filled or remounted read-only by the test."""
    with tmpfs(tmp_path / "tiny-disk", "size=100m,nr_inodes=64") as disk:
        yield disk


def test_master_state_disk_full_or_read_only_names_the_state_folder(
    fresh_repo: ShipperEnv, tiny_disk: Path
):
    env = fresh_repo
    state = tiny_disk / "state"
    env.write_config(state_dir=str(state))
    make_dataset(env.src, files=20, mib=1)
    snapshot_ok(env)
    before = sets_json(env)
    filler = fill(tiny_disk, leave=0)
    failed = env.run("snapshot")
    err = clean_failure(failed).strip().splitlines()[-1]  # after the notifier's warnings
    assert err.startswith("shipper: error: cannot write"), err
    assert f"shipper's state folder {state}" in err and "no space" in err, err
    filler.unlink()
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], check=True)
    failed = env.run("snapshot")
    err = clean_failure(failed).strip().splitlines()[-1]
    assert f"shipper's state folder {state}" in err and "read-only" in err, err
    assert sets_json(env) == before


def test_promote_root_out_of_inodes_names_that_disk(
    fresh_repo: ShipperEnv, tiny_disk: Path, tmp_path: Path
):
    """The repository's disk has room; the root's has too few inodes: the message says which.

    Promote finds it in preflight, before anything changes; `shipper restore`
    (no preflight) fails on the way and names the target's disk, not the repository.
    """
    env = fresh_repo
    for number in range(200):
        (env.src / f"f{number:03}").write_text("x")
    snapshot_ok(env)
    settings = {**env.settings, "role": "slave", "state_dir": str(tmp_path / "slave-state")}
    settings["repository"] = {
        **settings["repository"],
        "local_path": env.settings["repository"]["url"],
    }
    env.write_config(**settings)
    failed = env.run("promote", "--yes", "--root", str(tiny_disk))
    clean_failure(failed)
    assert f"FAIL inodes: {tiny_disk}: " in failed.stdout and "df -i" in failed.stdout, (
        failed.stdout
    )
    assert os.listdir(tiny_disk) == [] and not (tmp_path / "slave-state" / "promote").exists()
    failed = env.run("restore", "latest", "--target", str(tiny_disk))
    err = clean_failure(failed)
    assert len(err.strip().splitlines()) == 1, err
    assert f"no space or no inodes left on the filesystem of {tiny_disk}" in err, err
    assert "repository" not in err, err
