"""What the fault tests share: running shipper, reading its sets, finding its children."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

from tests.shipperenv import ShipperEnv, tree_digest

EXIT_LOCK_HELD = 3
EXIT_PARTIAL = 4


def clean_failure(result: subprocess.CompletedProcess, code: int = 1) -> str:
    """The run failed with `code`, a message and no traceback; its stderr."""
    assert result.returncode == code, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.stderr.strip() or result.stdout.strip(), "failed without a word"
    return result.stderr


def sets_json(env: ShipperEnv) -> List[Dict]:
    return json.loads(env.run("sets", "--json", check=True).stdout)


def statuses(env: ShipperEnv) -> Dict[str, str]:
    return {s["id"]: s["status"] for s in sets_json(env)}


def snapshot_ok(env: ShipperEnv) -> str:
    """Take a set, expect it complete; its id."""
    result = env.run("snapshot", "--json", check=True)
    data = json.loads(result.stdout)
    assert data["status"] == "complete", result
    return data["set_id"]


def restored_digest(env: ShipperEnv, set_id: str, target: Path, src: Optional[Path] = None) -> Dict:
    """Restore a set with shipper and digest the source tree as restored."""
    env.run("restore", set_id, "--target", str(target), check=True)
    return tree_digest(target / (src or env.src).relative_to("/"))


def descendants(pid: int) -> List[int]:
    out: List[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        children: List[str] = []
        # Go programs (restic) start children from any of their threads.
        try:
            tasks = list(Path(f"/proc/{current}/task").iterdir())
        except OSError:  # it ended between the parent's listing and now
            continue
        for task in tasks:
            try:
                children += (task / "children").read_text().split()
            except OSError:
                continue
        for child in map(int, children):
            out.append(child)
            todo.append(child)
    return out


def argv_of(pid: int) -> List[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def wait_for_descendant(
    pid: int, match: Callable[[List[str]], bool], timeout: float = 30, what: str = "a child"
) -> int:
    """The pid of the first process under `pid` whose argv matches."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in descendants(pid):
            if match(argv_of(child)):
                return child
        time.sleep(0.01)
    raise TimeoutError(f"no {what} under pid {pid} after {timeout}s")


def is_restic(command: str, *words: str) -> Callable[[List[str]], bool]:
    def match(argv: List[str]) -> bool:
        return (
            bool(argv)
            and argv[0].endswith("restic")
            and command in argv
            and all(w in argv for w in words)
        )

    return match


def gone(pid: int, timeout: float = 15) -> bool:
    """True once the process is gone (or a zombie); looks at least once."""
    deadline = time.monotonic() + timeout
    while True:
        if not os.path.exists(f"/proc/{pid}") or _zombie(pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def session_reaped(sid: int, timeout: float = 30) -> bool:
    """True once no process of session `sid` is left, zombies included.

    restic judges a lock stale by asking whether its process exists; a killed
    process that nobody reaped yet (pid 1 reaps orphans late here) still does.
    """
    deadline = time.monotonic() + timeout
    while _session_members(sid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _session_members(sid: int) -> List[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid:  # state, ppid, pgrp, session
            members.append(int(entry.name))
    return members


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0
