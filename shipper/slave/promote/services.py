"""The services in promote.services: stopped and disabled on a warm standby, started at promote.

A standby holds the master's data in place; the applications that act on it
(a mail queue runner, a job worker) must not run there, or they would send
the master's mail twice or change data the next apply overwrites. Each apply
stops and disables them before it changes anything; promote enables and
starts them (after the post-restore hooks, which may `daemon-reload`).

The service manager is systemd through `systemctl` (found in PATH); where
systemd is not running (a container, a test), or for a root other than /,
nothing is touched and the result says so. `SYSTEMD_RUNNING` is the marker
systemd's own tools check.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import List, Sequence

from shipper.core import process
from shipper.core.errors import ShipperError

SYSTEMD_RUNNING = Path("/run/systemd/system")


class ServiceFailed(ShipperError):
    """A listed unit could not be stopped or started."""


def why_untouched(units: Sequence[str], root: str) -> str:
    """Why the units are left alone ('' when they are handled here)."""
    if not units:
        return "no services listed (promote.services is empty)"
    if root != "/":
        return f"the set is applied under {root}, not /: services left alone"
    if not SYSTEMD_RUNNING.is_dir():
        return "systemd is not running here: services left alone"
    return ""


def hold(units: Sequence[str], root: str) -> str:
    """Stop and disable each unit this server has; raises ServiceFailed naming the units."""
    return _each(
        units, root, ("disable", "--now"), "stopped and disabled",
        "cannot stop and disable {} (`systemctl status` tells why): "
        "they would act on the standby's data",
    )  # fmt: skip


def release(units: Sequence[str], root: str) -> str:
    """Enable and start each unit this server has (the set may have brought unit files)."""
    return _each(
        units, root, ("enable", "--now"), "enabled and started",
        "{} did not start (journalctl -u UNIT tells why); fix it and run promote again",
        reload_first=True,
    )  # fmt: skip


def _each(
    units: Sequence[str],
    root: str,
    verb: Sequence[str],
    done: str,
    failure: str,
    reload_first: bool = False,
) -> str:
    skip = why_untouched(units, root)
    if skip:
        return skip
    if reload_first:
        _systemctl("daemon-reload")
    present = _present(units)
    failed = [unit for unit in present if _systemctl(*verb, "--", unit).returncode]
    if failed:
        raise ServiceFailed(failure.format(", ".join(failed)))
    return _said(done, present, units)


def _present(units: Sequence[str]) -> List[str]:
    return [unit for unit in units if _systemctl("cat", "--", unit).returncode == 0]


def _said(done: str, present: List[str], units: Sequence[str]) -> str:
    missing = [unit for unit in units if unit not in present]
    text = f"{done}: {', '.join(present) or 'none'}"
    return text + (f"; not on this server: {', '.join(missing)}" if missing else "")


def _systemctl(*args: str) -> subprocess.CompletedProcess:
    try:
        return process.run(["systemctl", *args], text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceFailed(f"systemctl {args[0]} did not run: {exc}") from None
