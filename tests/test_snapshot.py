"""`shipper snapshot`, `sets` and `restore` of files, against real restic.

Every test runs the real CLI as a subprocess on a real repository: a local
path, or restic's rest-server on loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.shipperenv import TOOLS, ShipperEnv, make_dataset, tree_digest, write_secret

EXIT_LOCK_HELD = 3
EXIT_PARTIAL = 4


def sets_json(env: ShipperEnv) -> list:
    return json.loads(env.run("sets", "--json", check=True).stdout)


def snapshot_ok(env: ShipperEnv) -> str:
    """Take a set, expect it complete, return its id."""
    result = env.run("snapshot", "--json", check=True)
    data = json.loads(result.stdout)
    assert data["status"] == "complete", result
    return data["set_id"]


def restored_digest(env: ShipperEnv, set_id: str, target: Path) -> dict:
    env.run("restore", set_id, "--target", str(target), check=True)
    return tree_digest(target / env.src.relative_to("/"))


@pytest.fixture(params=["local", "rest-server"])
def repo_env(request, shipper_env: ShipperEnv) -> ShipperEnv:
    if request.param == "rest-server":
        server = request.getfixturevalue("rest_server")
        shipper_env.write_config(repository={"url": server.url + "master/"})
    shipper_env.run("init", check=True)
    return shipper_env


def test_two_sets_restore_byte_for_byte(repo_env: ShipperEnv, tmp_path: Path):
    env = repo_env
    env.make_dataset(files=400, mib=6)
    first_state = tree_digest(env.src)
    first = snapshot_ok(env)

    env.mutate_dataset(percent=20)
    (env.src / "new-file.txt").write_text("added between sets\n")
    os.symlink("new-file.txt", env.src / "link")
    second_state = tree_digest(env.src)
    assert second_state != first_state
    second = snapshot_ok(env)

    listed = sets_json(env)
    assert [s["id"] for s in listed] == [second, first]
    for item in listed:
        assert item["status"] == "complete"
        assert [p["name"] for p in item["parts"]] == ["files"]
        assert len(item["parts"][0]["snapshot"]) == 64

    assert restored_digest(env, first, tmp_path / "r1") == first_state
    assert restored_digest(env, second, tmp_path / "r2") == second_state
    assert restored_digest(env, "latest", tmp_path / "r3") == second_state


def test_restore_one_path_keeps_full_original_path(shipper_env: ShipperEnv, tmp_path: Path):
    env = shipper_env
    env.run("init", check=True)
    (env.src / "app").mkdir()
    (env.src / "app" / "x").write_text("x")
    (env.src / "other").write_text("o")
    set_id = snapshot_ok(env)
    target = tmp_path / "out"
    env.run("restore", set_id, "--target", str(target), "--path", str(env.src / "app"), check=True)
    assert (target / str(env.src / "app" / "x").lstrip("/")).read_text() == "x"
    assert not (target / str(env.src / "other").lstrip("/")).exists()


def test_plain_restic_restores_what_shipper_wrote(shipper_env: ShipperEnv, tmp_path: Path):
    env = shipper_env
    env.run("init", check=True)
    env.make_dataset(files=100, mib=2)
    snapshot_ok(env)
    env.restic("restore", "latest", "--target", str(tmp_path / "plain"))
    assert tree_digest(tmp_path / "plain" / env.src.relative_to("/")) == tree_digest(env.src)


def test_unrelated_snapshots_are_ignored(shipper_env: ShipperEnv, tmp_path: Path):
    env = shipper_env
    env.run("init", check=True)
    other = tmp_path / "other"
    other.mkdir()
    (other / "f").write_text("not shipper's")
    env.restic("backup", str(other))
    env.restic("backup", str(other), "--tag", "shipper-set:garbage")
    assert sets_json(env) == []
    set_id = snapshot_ok(env)
    assert [s["id"] for s in sets_json(env)] == [set_id]


def test_a_set_without_manifest_shows_incomplete_and_is_not_latest(
    shipper_env: ShipperEnv, tmp_path: Path
):
    env = shipper_env
    env.run("init", check=True)
    good = snapshot_ok(env)
    # A run that died after a data part: a part snapshot, no manifest.
    env.restic(
        "backup", str(env.src), "--tag", "shipper-set:20991231T000000Z,shipper-part:mariadb:x"
    )
    listed = sets_json(env)
    assert [(s["id"], s["status"]) for s in listed] == [
        ("20991231T000000Z", "incomplete"),
        (good, "complete"),
    ]
    result = env.run("restore", "latest", "--target", str(tmp_path / "t"), check=True)
    assert good in result.stdout
    refused = env.run("restore", "20991231T000000Z", "--target", str(tmp_path / "u"))
    assert refused.returncode == 1
    assert "incomplete" in refused.stderr


def test_unreadable_file_makes_the_set_partial_and_is_named(shipper_env: ShipperEnv):
    env = shipper_env
    env.run("init", check=True)
    (env.src / "fine").write_text("ok")
    locked = env.src / "locked"
    locked.write_text("secret")
    locked.chmod(0)
    # root reads everything; without CAP_DAC_* it meets the mode like anyone.
    cmd = [
        "setpriv",
        "--bounding-set=-dac_override,-dac_read_search",
        str(TOOLS.parent.parent / ".venv/bin/shipper"),
        "snapshot",
    ]
    result = subprocess.run(cmd, env=env.env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == EXIT_PARTIAL, result
    assert str(locked) in result.stderr
    [item] = sets_json(env)
    assert item["status"] == "partial"


def test_missing_configured_path_makes_the_set_partial(shipper_env: ShipperEnv):
    env = shipper_env
    env.run("init", check=True)
    gone = str(env.base / "does-not-exist")
    env.write_config(paths=[str(env.src), gone])
    result = env.run("snapshot")
    assert result.returncode == EXIT_PARTIAL
    assert f"{gone}: configured path does not exist" in result.stderr


def test_dry_run_writes_nothing(shipper_env: ShipperEnv):
    env = shipper_env
    env.run("init", check=True)
    result = env.run("snapshot", "--dry-run", check=True)
    assert str(env.src) in result.stdout
    assert sets_json(env) == []


# ---------------------------------------------------------------- concurrency and kills


@pytest.fixture
def big_env(shipper_env: ShipperEnv) -> ShipperEnv:
    """A tree whose first backup takes a few seconds: long enough to interrupt."""
    shipper_env.run("init", check=True)
    make_dataset(shipper_env.src, files=2000, mib=400, seed=7)
    return shipper_env


def wait_for_restic_child(
    process: subprocess.Popen, command: str = "backup", timeout: float = 20
) -> int:
    """The pid of the `restic <command>` that shipper started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split():
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except FileNotFoundError:
                continue
            if argv[0].endswith(b"restic") and command.encode() in argv:
                return int(pid)
        time.sleep(0.02)
    raise TimeoutError(f"shipper started no restic {command}")


def wait_for_upload(env: ShipperEnv, minimum: int = 20 << 20, timeout: float = 30) -> None:
    """Until restic has written some pack data: the kill lands mid-backup."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = env.repo / "data"
        size = sum(f.stat().st_size for f in data.rglob("*") if f.is_file()) if data.exists() else 0
        if size >= minimum:
            return
        time.sleep(0.05)
    raise TimeoutError("restic uploaded nothing")


def assert_recovers(env: ShipperEnv, tmp_path: Path) -> None:
    """No committed set from the broken run; the next run succeeds; restic check passes."""
    assert all(s["status"] == "incomplete" for s in sets_json(env))
    set_id = snapshot_ok(env)
    assert [s["id"] for s in sets_json(env) if s["status"] == "complete"] == [set_id]
    env.restic("check")
    assert restored_digest(env, set_id, tmp_path / "after") == tree_digest(env.src)


@pytest.mark.slow
def test_sigkill_of_shipper_mid_backup_commits_nothing(big_env: ShipperEnv, tmp_path: Path):
    env = big_env
    run = env.popen("snapshot", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    restic_pid = wait_for_restic_child(run)
    wait_for_upload(env)
    run.send_signal(signal.SIGKILL)
    run.wait()
    # restic follows its parent (PR_SET_PDEATHSIG) instead of committing the set.
    deadline = time.monotonic() + 15
    while Path(f"/proc/{restic_pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{restic_pid}").exists(), "restic outlived the killed shipper"
    assert_recovers(env, tmp_path)


@pytest.mark.slow
def test_sigkill_of_restic_mid_backup_fails_the_run_and_commits_nothing(
    big_env: ShipperEnv, tmp_path: Path
):
    env = big_env
    run = env.popen("snapshot", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    restic_pid = wait_for_restic_child(run)
    wait_for_upload(env)
    os.kill(restic_pid, signal.SIGKILL)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 1
    assert "killed by signal 9" in err
    assert "Traceback" not in err
    assert_recovers(env, tmp_path)


@pytest.mark.slow
def test_second_concurrent_run_is_refused(big_env: ShipperEnv):
    env = big_env
    first = env.popen("snapshot", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_restic_child(first)
        second = env.run("snapshot")
        assert second.returncode == EXIT_LOCK_HELD
        assert f"pid {first.pid}" in second.stderr
        assert "another shipper run holds the lock" in second.stderr
    finally:
        assert first.wait(120) == 0
    assert len(sets_json(env)) == 1


# ---------------------------------------------------------------- clear errors


def test_wrong_password(shipper_env: ShipperEnv):
    env = shipper_env
    env.run("init", check=True)
    write_secret(env.password_file, "not the password")
    result = env.run("snapshot")
    assert result.returncode == 1
    assert "wrong password" in result.stderr and str(env.password_file) in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_repository(shipper_env: ShipperEnv):
    result = shipper_env.run("snapshot")
    assert result.returncode == 1
    assert "no restic repository at" in result.stderr and "shipper init" in result.stderr


def test_unreachable_receiver_fails_within_the_network_timeout(shipper_env: ShipperEnv):
    env = shipper_env
    from tests.shipperenv import free_port

    port = free_port()
    env.write_config(
        repository={"url": f"rest:http://127.0.0.1:{port}/master/", "network_timeout": 5}
    )
    started = time.monotonic()
    result = env.run("snapshot", timeout=60)
    assert result.returncode == 1
    assert "cannot reach the receiver at" in result.stderr and f"127.0.0.1:{port}" in result.stderr
    assert "refused" in result.stderr.lower()
    assert time.monotonic() - started < 30


def test_bad_config_names_file_line_and_key(shipper_env: ShipperEnv):
    env = shipper_env
    env.config_path.write_text(env.config_path.read_text() + 'schedule: "*/61 * * * *"\n')
    result = env.run("snapshot")
    assert result.returncode == 1
    line = len(env.config_path.read_text().splitlines())
    assert (
        f"{env.config_path}:{line}: schedule: '*/61 * * * *' is not a valid cron expression"
        in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_world_readable_password_file_is_refused(shipper_env: ShipperEnv):
    shipper_env.password_file.chmod(0o644)
    result = shipper_env.run("snapshot")
    assert result.returncode == 1
    assert "readable by others" in result.stderr


def test_restic_too_old_is_named(shipper_env: ShipperEnv, tmp_path: Path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "restic").write_text(
        "#!/bin/sh\necho 'restic 0.14.0 compiled with go1.19 on linux/amd64'\n"
    )
    (fake / "restic").chmod(0o755)
    env = shipper_env.env()
    env["PATH"] = f"{fake}:{env['PATH']}"
    result = subprocess.run(
        [shutil.which("shipper", path=env["PATH"]) or "shipper", "snapshot"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "restic 0.14.0 is installed" in result.stderr and "0.17.0 or newer" in result.stderr


def test_help_everywhere(shipper_env: ShipperEnv):
    for args in (
        ["--help"],
        ["snapshot", "--help"],
        ["sets", "--help"],
        ["restore", "--help"],
        ["config", "validate", "--help"],
    ):
        result = shipper_env.run(*args)
        assert result.returncode == 0 and "usage:" in result.stdout


# ---------------------------------------------------------------- settings export


def test_shipped_settings_hook_exports_into_the_set(shipper_env: ShipperEnv, tmp_path: Path):
    env = shipper_env
    env.run("init", check=True)
    hook_dir = env.hooks / "pre-snapshot.d"
    hook_dir.mkdir(parents=True)
    shipped = Path(__file__).resolve().parent.parent / "hooks" / "pre-snapshot.d" / "10-packages"
    shutil.copy2(shipped, hook_dir / "10-packages")
    result = json.loads(env.run("snapshot", "--json", check=True).stdout)
    settings = next(p for p in result["parts"] if p["name"] == "settings")
    assert settings["outcome"] == "ok" and settings["details"]["hooks"] == ["10-packages"]
    export = env.state / "set" / "export"
    env.run("restore", "latest", "--target", str(tmp_path / "r"), "--path", str(export), check=True)
    restored = tmp_path / "r" / str(export).lstrip("/")
    assert (restored / "kernel.txt").read_text().strip() == os.uname().release
    assert len((restored / "packages.txt").read_text().splitlines()) > 10


def test_a_failing_settings_hook_makes_the_set_partial_and_names_it(shipper_env: ShipperEnv):
    env = shipper_env
    env.run("init", check=True)
    hook_dir = env.hooks / "pre-snapshot.d"
    hook_dir.mkdir(parents=True)
    hook = hook_dir / "20-broken"
    hook.write_text("#!/bin/sh\necho 'cannot export the widget settings' >&2\nexit 7\n")
    hook.chmod(0o755)
    result = env.run("snapshot")
    assert result.returncode == EXIT_PARTIAL
    assert "20-broken" in result.stderr and "exit 7" in result.stderr
    [item] = sets_json(env)
    assert item["status"] == "partial"
    assert [p["name"] for p in item["parts"]] == ["files"]
