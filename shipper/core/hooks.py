"""Run-parts style hooks, with shipper's contract (DESIGN.md, Hooks).

A hook is an executable file in `<dir>/<phase>.d/`. Hooks of every configured
folder run in name order; a later folder's hook replaces an earlier one of the
same name (so /etc/shipper/hooks can override a shipped hook). Each gets a
clean environment with only SHIPPER_* variables and a PATH: no secret reaches
a hook. A non-zero exit, a timeout or an unsafe file fails the phase.
"""

from __future__ import annotations

import logging
import os
import signal
import stat
import subprocess
import threading
from pathlib import Path
from typing import IO, Dict, List, Mapping, Sequence, Tuple

from shipper.core import process as children
from shipper.core.errors import ShipperError

log = logging.getLogger("shipper.hooks")

PRE_SNAPSHOT = "pre-snapshot"
POST_APPLY = "post-apply"  # a warm standby, after each apply (slave/standby.py)
POST_RESTORE = "post-restore"

_SKIPPED_SUFFIXES = (
    "~",
    ".rpmsave",
    ".rpmnew",
    ".rpmorig",
    ".dpkg-old",
    ".dpkg-new",
    ".disabled",
    ".swp",
)


class HookFailed(ShipperError):
    pass


def find(dirs: Sequence[str], phase: str) -> List[Path]:
    """The hooks of a phase, in the order they run."""
    chosen: Dict[str, Path] = {}
    for folder in dirs:
        phase_dir = Path(folder) / f"{phase}.d"
        if not phase_dir.is_dir():
            continue
        for entry in phase_dir.iterdir():
            if _is_hook(entry):
                chosen[entry.name] = entry
    return [chosen[name] for name in sorted(chosen)]


def _is_hook(path: Path) -> bool:
    name = path.name
    if name.startswith(".") or name.endswith(_SKIPPED_SUFFIXES):
        return False
    return path.is_file() and os.access(path, os.X_OK)


def unsafe_reason(path: Path) -> str:
    """Why a hook may not run ('' when it may): it must be root's, writable by root only."""
    owner = os.geteuid()
    for item in (path, path.parent):
        info = item.stat()
        if info.st_uid not in (0, owner):
            return f"{item} is owned by uid {info.st_uid}, not root"
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return f"{item} is writable by others (mode {stat.S_IMODE(info.st_mode):o})"
    return ""


def run_phase(
    phase: str,
    dirs: Sequence[str],
    env: Mapping[str, str],
    timeout: int,
) -> List[str]:
    """Run every hook of a phase; returns their names, raises HookFailed on the first failure."""
    ran = []
    for hook in find(dirs, phase):
        run_one(hook, phase, env, timeout)
        ran.append(hook.name)
    return ran


def run_one(hook: Path, phase: str, env: Mapping[str, str], timeout: int) -> None:
    reason = unsafe_reason(hook)
    if reason:
        raise HookFailed(
            f"{phase} hook {hook} refused: {reason}; run: chown root:root {hook} && chmod go-w {hook}"
        )
    clean_env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "SHIPPER_PHASE": phase,
        **env,
    }
    log.info("%s hook %s: starting", phase, hook.name)
    process = children.spawn(
        [str(hook)],
        env=clean_env,
        stdin=children.DEVNULL,
        stdout=children.PIPE,
        stderr=children.STDOUT,
        start_new_session=True,
    )
    assert process.stdout is not None
    reader, chunks = _read_in_background(process.stdout)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise HookFailed(
            f"{phase} hook {hook} did not finish within {timeout}s and was killed; "
            "fix the hook or raise hooks.timeout"
        ) from None
    # A daemon the hook started may hold its output open for ever: wait for the hook, not for it.
    reader.join(_OUTPUT_GRACE)
    if reader.is_alive():
        log.info("%s hook %s: a process it started keeps its output open", phase, hook.name)
    output = b"".join(list(chunks))
    for line in output.decode(errors="replace").splitlines():
        log.info("%s hook %s: %s", phase, hook.name, line)
    if process.returncode != 0:
        tail = output.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise HookFailed(
            f"{phase} hook {hook} failed (exit {process.returncode}): {tail[0]}; "
            "its full output is in the log"
        )


_OUTPUT_GRACE = 2.0


def _read_in_background(stream: IO[bytes]) -> Tuple[threading.Thread, List[bytes]]:
    chunks: List[bytes] = []

    def read() -> None:
        for chunk in iter(lambda: stream.read1(65536), b""):  # type: ignore[attr-defined]
            chunks.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return reader, chunks
