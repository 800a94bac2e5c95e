"""The one place shipper starts a child process: run, capture, spawn, become.

Every child (restic, hooks, sendmail, openssl, systemctl, ip, rest-server, the
daemon's `shipper snapshot`) starts here, so three rules hold for all of them:

- Die with shipper. A child gets PR_SET_PDEATHSIG: if shipper is killed, even
  by SIGKILL, the child gets SIGTERM. Otherwise a killed run leaves its
  children working on: a backup would commit a set its run never saw finish,
  a restore or a database load would race the re-run of promote. SIGTERM (not
  SIGKILL) lets restic remove its lock on the way out. The two children meant
  to outlive the command that starts them (the daemon's set, which the daemon
  stops with a grace period, and a receiver started without systemd) say so
  with `die_with_parent=False`.
- No inherited credential. Unless the caller gives the environment, the child
  gets shipper's minus the variables that carry passwords or repositories
  (RESTIC_*, MYSQL_PWD, PGPASSWORD): every secret goes by file.
- Secret-free error text. ProcessFailed names the program and its last line of
  stderr, never the whole command line.

(The database engines in shipper/databases/ still start their clients
themselves, with die_with_parent; they move here once the engine fixes in
flight have landed.)
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
from typing import Any, Callable, Dict, List, Mapping, NoReturn, Optional, Sequence

from shipper.core.errors import ShipperError

_PR_SET_PDEATHSIG = 1
_CREDENTIAL_PREFIXES = ("RESTIC_",)
_CREDENTIAL_NAMES = ("MYSQL_PWD", "PGPASSWORD")

PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
STDOUT = subprocess.STDOUT
Popen = subprocess.Popen
TimeoutExpired = subprocess.TimeoutExpired


class ProcessFailed(ShipperError):
    """A child exited non-zero; the text names the program, never its arguments."""

    def __init__(self, argv: Sequence[str], code: int, stderr: str):
        self.program = program_name(argv)
        self.code = code
        self.stderr = stderr
        last = (stderr.strip().splitlines() or [f"exit {code}"])[-1]
        super().__init__(f"{self.program} failed: {last}")


# Looked up once, in the parent: dlopen in a forked child can deadlock on the
# loader's lock if another thread held it at fork (copies start restic from
# several threads at once), so the child only calls what is already resolved.
_prctl = ctypes.CDLL(None).prctl


def die_with_parent() -> None:
    """A preexec_fn: runs in the child between fork and exec."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def program_name(argv: Sequence[str]) -> str:
    return os.path.basename(str(argv[0])) if argv else "?"


def scrubbed_environment(extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """shipper's environment without inherited credentials, plus `extra`."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_CREDENTIAL_PREFIXES) and name not in _CREDENTIAL_NAMES
    }
    env.update(extra or {})
    return env


def _preexec(with_parent: bool, umask: Optional[int]) -> Optional[Callable[[], None]]:
    if not with_parent and umask is None:
        return None

    def prepare() -> None:
        if with_parent:
            die_with_parent()
        if umask is not None:
            os.umask(umask)

    return prepare


def spawn(
    argv: Sequence[str],
    *,
    env: Optional[Mapping[str, str]] = None,
    die_with_parent: bool = True,
    umask: Optional[int] = None,
    **popen: Any,
) -> subprocess.Popen:
    """Start a child and return it; `popen` takes subprocess.Popen's other arguments."""
    return subprocess.Popen(
        list(argv),
        env=dict(env) if env is not None else scrubbed_environment(),
        preexec_fn=_preexec(die_with_parent, umask),
        **popen,
    )


def low_io_priority(argv: Sequence[str]) -> List[str]:
    """argv under `ionice -c3` (idle I/O class) where ionice exists, else as is."""
    ionice = shutil.which("ionice")
    return [ionice, "-c3", *argv] if ionice else list(argv)


def run(
    argv: Sequence[str],
    *,
    input: Any = None,
    timeout: Optional[float] = None,
    check: bool = False,
    text: bool = False,
    env: Optional[Mapping[str, str]] = None,
    umask: Optional[int] = None,
    capture: bool = True,
) -> subprocess.CompletedProcess:
    """Run a child to its end; with `check`, a non-zero exit raises ProcessFailed."""
    result = subprocess.run(
        list(argv),
        input=input,
        capture_output=capture,
        timeout=timeout,
        text=text,
        env=dict(env) if env is not None else scrubbed_environment(),
        preexec_fn=_preexec(True, umask),
    )
    if check and result.returncode != 0:
        stderr = result.stderr if isinstance(result.stderr, str) else (result.stderr or b"")
        if isinstance(stderr, bytes):
            stderr = stderr.decode(errors="replace")
        raise ProcessFailed(argv, result.returncode, stderr)
    return result


def succeeds(argv: Sequence[str]) -> bool:
    """Whether the child exits 0 (its output is discarded)."""
    return run(argv).returncode == 0


def capture(argv: Sequence[str], timeout: Optional[float] = None) -> str:
    """The child's stdout as text ('' when it cannot be started or does not end in time)."""
    try:
        return run(argv, text=True, timeout=timeout).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def become(argv: Sequence[str]) -> NoReturn:
    """Replace this process with argv (the receiver under systemd; a dump tool after its
    header); argv[0] is a path or a name looked up in PATH."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp(argv[0], list(argv))
