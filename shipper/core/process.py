"""Child processes die with shipper.

Every process shipper starts (restic, hooks, database clients) gets
PR_SET_PDEATHSIG: if shipper is killed, even by SIGKILL, the child gets
SIGTERM. Otherwise a killed run leaves its children working on: a backup
would commit a set its run never saw finish, a restore or a database load
would race the re-run of promote. SIGTERM (not SIGKILL) lets restic remove
its lock on the way out.
"""

from __future__ import annotations

import ctypes
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """A preexec_fn: runs in the child between fork and exec."""
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
