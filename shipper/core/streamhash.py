"""Run a command and pass its stdout through, counting and hashing it.

    python -m shipper.core.streamhash --out RESULTFILE -- CMD ARGS...

CMD's stdout is copied to our stdout in large chunks while it is counted and
hashed (sha256); its stderr and stdin are CMD's own (inherited). When CMD
exits 0 and every byte was passed on, {"bytes": N, "sha256": "..."} is written
to RESULTFILE (atomically); otherwise RESULTFILE does not exist afterwards.
A caller's scan (databases/dumpscan.py runs this with an engine's) also reads
every chunk and adds its fields to the result.
The exit code is CMD's, 128+N when CMD was killed by signal N, 128+SIGPIPE
when our reader went away, 2 for a usage error and 127 when CMD cannot start.

This lets a dump stream straight into `restic backup --stdin-from-command`
and still give the manifest its size and checksum, with no temporary file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Protocol, Sequence, Tuple

from shipper.core import process

CHUNK = 1 << 20
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Python < 3.10 lacks the name
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Scan(Protocol):
    def feed(self, chunk: bytes) -> None: ...

    def result(self) -> Dict[str, Any]: ...


def run(command: Sequence[str], result_path: str, scan: Optional[Scan] = None) -> int:
    """Run `command`, stream and hash its stdout; the exit code to leave with."""
    _remove(result_path)
    try:
        # The environment restic gave us, whole; the dump tool's death is judged below.
        child = process.spawn(
            command, env=dict(os.environ), die_with_parent=False, stdout=subprocess.PIPE
        )
    except OSError as exc:
        print(f"streamhash: cannot run {command[0]}: {exc.strerror}", file=sys.stderr)
        return 127
    _forward_signals(child)
    assert child.stdout is not None
    copied = _copy(child.stdout.fileno(), sys.stdout.fileno(), scan)
    if copied is None:  # our reader went away: stop the producer too
        child.terminate()
    child.stdout.close()
    name = _name_at_exit(child)
    code = child.wait()
    if copied is None:
        return 128 + signal.SIGPIPE
    if code < 0:
        # The dump tool dies without a word on SIGKILL: say it, or the cause is lost.
        print(
            f"{name} was killed by {_signal_name(-code)} after {copied[0]} bytes", file=sys.stderr
        )
        return 128 - code
    if code == 0:
        _write_result(result_path, *copied, extra=_scanned(scan))
    return code


def _name_at_exit(child: subprocess.Popen) -> str:
    """The program the child runs when it ends (the dump tool it may have exec'd into)."""
    try:
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # a zombie keeps its name
        return Path(f"/proc/{child.pid}/comm").read_text().strip()
    except OSError:
        return os.path.basename(str(child.args[0]))


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _scanned(scan: Optional[Scan]) -> Dict[str, Any]:
    """The scan's fields; none when it failed (a count is never worth a lost dump)."""
    if scan is None:
        return {}
    try:
        return scan.result()
    except Exception as exc:  # noqa: BLE001 - any fault of the scan
        print(f"streamhash: the dump's scan failed ({exc}): no row counts", file=sys.stderr)
        return {}


def _copy(source: int, target: int, scan: Optional[Scan] = None) -> Optional[Tuple[int, str]]:
    """Copy until EOF; (bytes, sha256) or None when the target is closed."""
    for fd in (source, target):
        _widen_pipe(fd)
    digest = hashlib.sha256()
    total = 0
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    while True:
        count = os.readv(source, [buffer])
        if count == 0:
            return total, digest.hexdigest()
        chunk = view[:count]
        digest.update(chunk)
        total += count
        if not _write_all(target, chunk):
            return None
        if scan is not None:
            scan = _feed(scan, bytes(chunk))


def _feed(scan: Scan, chunk: bytes) -> Optional[Scan]:
    """After the write, so the reader is never kept waiting; a failed scan stops scanning."""
    try:
        scan.feed(chunk)
    except Exception as exc:  # noqa: BLE001 - any fault of the scan
        print(f"streamhash: the dump's scan failed ({exc}): no row counts", file=sys.stderr)
        return None
    return scan


def _write_all(fd: int, data: memoryview) -> bool:
    try:
        while data:
            data = data[os.write(fd, data) :]
    except BrokenPipeError:
        return False
    return True


def _widen_pipe(fd: int) -> None:
    """Bigger pipes mean fewer, larger reads and writes (no-op for files)."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, F_SETPIPE_SZ, CHUNK)


def _forward_signals(child: subprocess.Popen) -> None:
    def forward(signum: int, _frame: object) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    for signum in FORWARDED:
        signal.signal(signum, forward)


def _write_result(path: str, size: int, sha256: str, extra: Dict[str, Any]) -> None:
    temporary = f"{path}.tmp"
    with open(temporary, "w") as handle:
        json.dump({"bytes": size, "sha256": sha256, **extra}, handle)
    os.replace(temporary, path)


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 4 or args[0] != "--out" or args[2] != "--":
        print(
            "usage: python -m shipper.core.streamhash --out RESULTFILE -- CMD ARGS...",
            file=sys.stderr,
        )
        return 2
    return run(args[3:], args[1])


if __name__ == "__main__":
    sys.exit(main())
