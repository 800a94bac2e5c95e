"""One shipper run at a time per host: an flock on a file in the state dir."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
from pathlib import Path
from typing import Iterator

from shipper.core.errors import LockHeld


@contextlib.contextmanager
def host_lock(state_dir: Path, what: str) -> Iterator[None]:
    """Hold the host-wide lock; LockHeld names the holder when it is taken.

    flock dies with its process, so a killed run never leaves a stale lock.
    """
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state_dir / "lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeld(
                f"another shipper run holds the lock ({_holder(path)}); "
                "wait for it to finish, or check it with `shipper status`"
            ) from None
        holder = {"pid": os.getpid(), "what": what, "since": dt.datetime.now().isoformat()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        yield
    finally:
        os.close(fd)


def _holder(path: Path) -> str:
    try:
        holder = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "holder unknown"
    return f"`shipper {holder.get('what', '?')}`, pid {holder.get('pid', '?')}, since {holder.get('since', '?')}"
