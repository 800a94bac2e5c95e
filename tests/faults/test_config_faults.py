"""Malformed, truncated and hostile config files, through the real `shipper` command.

tests/test_config.py checks the loader itself (and fuzzes it); here every
case is a file on disk read by the CLI as an operator would meet it: a clear
message naming the file (and line and key when there is one), a non-zero
exit, never a traceback, and nothing done.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Tuple

import pytest

from tests.shipperenv import ShipperEnv

BASE = "repository:\n  url: {repo}\n  password_file: {secret}\nstate_dir: {state}\n"

# name: (text after the base config, what the message must hold)
CASES = {
    "wrong type": ("paths: /srv\n", ":6: paths"),
    "wrong nested type": ("hooks:\n  timeout: soon\n", ":7: hooks.timeout"),
    "negative": ("databases:\n  parallel: -1\n", ":7: databases.parallel"),
    "unknown key": ("retension:\n  daily: 3\n", ":6: retension"),
    "unknown nested key": ("notify:\n  email: root\n", ":7: notify.email"),
    "never fires": ('schedule: "0 0 31 2 *"\n', ":6: schedule"),
    "bad cron": ('schedule: "every hour"\n', ":6: schedule"),
    "relative path": ("paths: [srv]\n", ":6: paths"),
    "bad bucket name": (
        "destinations:\n  - {name: offsite, kind: s3, bucket: B}\n",
        ":7: destinations[0].bucket: 'B' does not fit: s3: the bucket",
    ),
    "truncated": ('paths: ["/srv", "/et', ":6"),
    "tab indent": ("hooks:\n\ttimeout: 3\n", ":7"),
    "not a mapping": ("- just\n- a list\n", ":6"),
    "python tag": ("paths: !!python/object/apply:os.system ['touch {pwned}']\n", ":6"),
    "duplicate anchor bomb": (
        "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
        "g: [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n",
        ":6: a",
    ),
    "missing required": (None, ":2: (top level): 'repository' is a required property"),
}


def write_case(env: ShipperEnv, tmp_path: Path, case: str) -> Tuple[Path, str]:
    extra, expected = CASES[case]
    base = BASE.format(repo=env.repo, secret=env.password_file, state=env.state)
    text = "# a config\n" + ("state_dir: /tmp/x\n" if extra is None else base + extra)
    path = tmp_path / "bad.yml"
    path.write_text(text.replace("{pwned}", str(tmp_path / "pwned")))
    return path, expected


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_config_names_file_line_and_key(shipper_env: ShipperEnv, tmp_path: Path, case):
    path, expected = write_case(shipper_env, tmp_path, case)
    for command in (["snapshot"], ["config", "validate"]):
        done = shipper_env.run("-c", str(path), *command, timeout=60)
        assert done.returncode == 1, f"{command}: {done.stdout}{done.stderr}"
        assert "Traceback" not in done.stderr
        assert f"{path}{expected}" in done.stderr, done.stderr
    assert not (tmp_path / "pwned").exists(), "a YAML tag ran a command"
    assert not shipper_env.state.exists(), "a run with a bad config wrote state"


COMMANDS = [
    ["snapshot"],
    ["sets"],
    ["status"],
    ["check"],
    ["promote", "--dry-run"],
    ["prune", "--dry-run"],
    ["daemon"],
    ["receiver", "status"],
    ["restore", "latest", "--target", "/tmp/nowhere"],
    ["enable"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_every_command_refuses_a_bad_config_cleanly(
    shipper_env: ShipperEnv, tmp_path: Path, command
):
    path, expected = write_case(shipper_env, tmp_path, "unknown nested key")
    before = path.read_text()
    done = shipper_env.run("-c", str(path), *command, timeout=60)
    unknown = 3 if command == ["status"] else 1  # status speaks the monitoring plugins' codes
    said = done.stdout + done.stderr
    assert done.returncode == unknown and "Traceback" not in said, said
    assert f"{path}{expected}" in said, said
    assert path.read_text() == before


def test_files_that_are_not_a_config(shipper_env: ShipperEnv, tmp_path: Path):
    binary = tmp_path / "binary.yml"
    binary.write_bytes(os.urandom(4096) + b"\xff\xfe")
    empty = tmp_path / "empty.yml"
    empty.write_text("")
    fifo = tmp_path / "fifo.yml"
    os.mkfifo(fifo)
    unreadable = tmp_path / "unreadable.yml"
    unreadable.write_text("repository: {url: /x}\n")
    unreadable.chmod(0)
    for path in (binary, empty, tmp_path, tmp_path / "missing.yml", fifo, Path("/dev/zero")):
        done = shipper_env.run("-c", str(path), "snapshot", timeout=30)
        assert done.returncode == 1 and "Traceback" not in done.stderr, (path, done.stderr)
        assert str(path) in done.stderr, done.stderr
    cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "shipper", "-c"]
    done = subprocess.run([*cmd, str(unreadable), "snapshot"], env=shipper_env.env(),
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert str(unreadable) in done.stderr and "Permission denied" in done.stderr


def test_paths_that_do_not_exist_are_named(shipper_env: ShipperEnv):
    env = shipper_env
    gone = env.base / "no-such-folder"
    env.write_config(paths=[str(gone)], hooks={"dirs": [str(env.base / "no-hooks")]})
    validated = env.run("config", "validate")
    assert f"{env.config_path}: paths: {gone} does not exist" in validated.stderr
    missing_secret = env.base / "no-secret"
    env.write_config(repository={"password_file": str(missing_secret)})
    done = env.run("snapshot")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"repository.password_file: {missing_secret} does not exist" in done.stderr


def test_a_world_readable_password_file_is_named_with_the_fix(shipper_env: ShipperEnv):
    env = shipper_env
    env.password_file.chmod(0o644)
    for command in (["config", "validate"], ["snapshot"], ["sets"]):
        done = env.run(*command)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert "repository.password_file" in done.stderr and "readable by others" in done.stderr
        assert f"chmod 600 {env.password_file}" in done.stderr
