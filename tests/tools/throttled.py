"""Run a command on about a sixth of a CPU: SIGSTOP and SIGCONT in turns.

    python3 throttled.py CMD ARGS...

Used by the suite's restic wrapper (tests/tools/restic) for `restic init`.
Signals to this wrapper (SIGTERM, SIGINT) go on to the command.
"""

import os
import signal
import subprocess
import sys
import time

# A sixth rather than less: restic init then calibrates scrypt to N=16384 (about 70 ms
# of CPU per later open, against 45 ms at a tenth) and ends in 2.3 s instead of 3.4 s;
# the suite starts a few hundred inits and about 2,600 other restic processes.
RUN, PAUSE = 0.01, 0.05


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
