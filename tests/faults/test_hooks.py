"""Hooks that hang, fail, or are not safe to run, through real snapshot and promote runs."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml

from tests.faults.helpers import EXIT_PARTIAL, gone, sets_json, snapshot_ok
from tests.shipperenv import ShipperEnv, make_dataset, tree_digest

TIMEOUT = 2


@pytest.fixture
def hook_env(fresh_repo: ShipperEnv) -> ShipperEnv:
    shipper_env = fresh_repo
    shipper_env.write_config(hooks={"timeout": TIMEOUT})
    (shipper_env.src / "f").write_text("data\n")
    (shipper_env.hooks / "pre-snapshot.d").mkdir(parents=True)
    return shipper_env


def add_hook(env: ShipperEnv, name: str, body: str, mode: int = 0o755) -> Path:
    hook = env.hooks / "pre-snapshot.d" / name
    hook.write_text("#!/bin/sh\n" + body)
    hook.chmod(mode)
    return hook


def settings_error(env: ShipperEnv, *args: str):
    """Run a snapshot that must end partial because of the settings export; its error."""
    result = env.run("snapshot", "--json", *args, timeout=120)
    assert result.returncode == EXIT_PARTIAL, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    parts = {p["name"]: p for p in json.loads(result.stdout)["parts"]}
    assert parts["settings"]["outcome"] == "failed" and parts["files"]["outcome"] == "ok"
    return parts["settings"]["error"]


@pytest.mark.parametrize("background", [False, True], ids=["hang", "hang-with-a-daemon-child"])
def test_a_hanging_hook_is_killed_at_its_timeout(hook_env: ShipperEnv, tmp_path: Path, background):
    env = hook_env
    pids = tmp_path / "pids"
    # A child in its own session that keeps the hook's output open outlives the kill of the
    # hook's process group: shipper must not wait for it.
    child = f"setsid sleep 60 & echo $! >> {pids}\n" if background else ""
    hook = add_hook(env, "10-hangs", f"echo $$ >> {pids}\n{child}exec sleep 60\n")
    clock = time.monotonic()
    error = settings_error(env)
    took = time.monotonic() - clock
    assert str(hook) in error and f"did not finish within {TIMEOUT}s and was killed" in error
    assert took < TIMEOUT + 15, f"the run took {took:.0f}s"
    hook_pid = int(pids.read_text().split()[0])
    assert gone(hook_pid, 5), "the hung hook still runs"
    for pid in map(int, pids.read_text().split()[1:]):
        os.kill(pid, 9)  # the escaped daemon child is the test's to clean up
    [partial] = sets_json(env)
    assert partial["status"] == "partial"


def test_a_failing_hook_fails_its_phase_with_its_name(hook_env: ShipperEnv):
    env = hook_env
    hook = add_hook(env, "20-fails", "echo starting\necho 'cannot export: no app' >&2\nexit 3\n")
    error = settings_error(env)
    assert str(hook) in error and "exit 3" in error and "cannot export: no app" in error
    result = env.run("snapshot")
    assert f"part settings failed: pre-snapshot hook {hook}" in result.stderr
    hook.unlink()
    snapshot_ok(env)


@pytest.mark.parametrize("unsafe", ["hook", "folder", "owner"])
def test_an_unsafe_hook_is_refused(hook_env: ShipperEnv, tmp_path: Path, unsafe: str):
    """Writable by others (the hook or its folder), or not root's: refused, never run."""
    env = hook_env
    ran = tmp_path / "ran"
    hook = add_hook(env, "30-unsafe", f"touch {ran}\n")
    if unsafe == "owner":
        os.chown(hook, 1234, 1234)
    else:
        (hook if unsafe == "hook" else hook.parent).chmod(0o757 if unsafe == "hook" else 0o777)
    error = settings_error(env)
    why = "is owned by uid 1234, not root" if unsafe == "owner" else "writable by others"
    assert f"{hook} refused" in error and why in error, error
    assert not ran.exists(), "an unsafe hook ran"
    os.chown(hook, 0, 0)
    hook.chmod(0o755)
    hook.parent.chmod(0o755)
    snapshot_ok(env)
    assert ran.exists()


def test_a_hook_that_leaves_a_daemon_running_does_not_hold_the_run(
    hook_env: ShipperEnv, tmp_path: Path
):
    """A hook that starts a service with `&` ends; the service keeps the hook's output open."""
    env = hook_env
    pids = tmp_path / "pids"
    add_hook(env, "10-starts-a-daemon", f"echo started\nsetsid sleep 60 & echo $! > {pids}\n")
    clock = time.monotonic()
    try:
        snapshot_ok(env)
    finally:
        if pids.exists():
            os.kill(int(pids.read_text()), 9)
    assert time.monotonic() - clock < 20


def test_post_restore_hook_faults_fail_promote_at_the_hook_and_a_rerun_finishes(
    hook_env: ShipperEnv, tmp_path: Path
):
    env = hook_env
    make_dataset(env.src, files=30, mib=1)
    state = tree_digest(env.src)
    snapshot_ok(env)
    hooks = tmp_path / "slave-hooks"
    (hooks / "post-restore.d").mkdir(parents=True)
    settings = yaml.safe_load(env.config_path.read_text())
    settings.update(role="slave", state_dir=str(tmp_path / "slave-state"))
    settings["repository"]["local_path"] = str(env.repo)
    settings["hooks"] = {"dirs": [str(hooks)], "timeout": TIMEOUT}
    config = tmp_path / "slave.yml"
    config.write_text(yaml.safe_dump(settings))
    root = tmp_path / "root"
    hook = hooks / "post-restore.d" / "10-start-app"

    def promote() -> str:
        done = env.run("-c", str(config), "promote", "--yes", "--root", str(root), timeout=120)
        assert "Traceback" not in done.stderr, done.stderr
        return ("PROMOTED " if done.returncode == 0 else "") + done.stdout + done.stderr

    hook.write_text("#!/bin/sh\necho started\n")
    hook.chmod(0o777)
    said = promote()
    assert f"post-restore hook {hook} refused" in said and "writable by others" in said, said
    hook.chmod(0o755)
    hook.write_text("#!/bin/sh\nexec sleep 60\n")
    clock = time.monotonic()
    said = promote()
    assert f"post-restore hook {hook} did not finish within {TIMEOUT}s and was killed" in said
    assert "hook:10-start-app" in said and time.monotonic() - clock < 30, said
    hook.write_text(f'#!/bin/sh\necho "$SHIPPER_SET_ID" > {tmp_path / "ran"}\n')
    said = promote()
    assert said.startswith("PROMOTED") and "resuming an interrupted promote" in said, said
    assert (tmp_path / "ran").exists()
    assert tree_digest(root / str(env.src).lstrip("/")) == state
