"""Run a command on about a tenth of a CPU: SIGSTOP and SIGCONT in turns.

    python3 throttled.py CMD ARGS...

Used by the suite's restic wrapper (tests/tools/restic) for `restic init`.
Signals to this wrapper (SIGTERM, SIGINT) go on to the command.
"""

import os
import signal
import subprocess
import sys
import time

RUN, PAUSE = 0.005, 0.05


def main() -> int:
    # Inherited descriptors stay open: shipper hands restic its secrets as /proc/self/fd/N.
    child = subprocess.Popen(sys.argv[1:], close_fds=False)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: _forward(child, signum))
    while child.poll() is None:
        time.sleep(RUN)
        if not _signal(child, signal.SIGSTOP):
            break
        time.sleep(PAUSE)
        _signal(child, signal.SIGCONT)
    return child.wait()


def _forward(child: subprocess.Popen, signum: int) -> None:
    _signal(child, signal.SIGCONT)
    _signal(child, signum)


def _signal(child: subprocess.Popen, sig: int) -> bool:
    try:
        os.kill(child.pid, sig)
        return True
    except ProcessLookupError:
        return False


if __name__ == "__main__":
    code = main()
    sys.exit(code if code >= 0 else 128 - code)
