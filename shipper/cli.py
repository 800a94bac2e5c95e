"""The entry point: parse the command line, set up logging, run one command, map errors.

Each command lives in its own module under shipper/commands/ and is imported
only when it runs. `main` maps every expected error to a one-line message and
its exit code, never a traceback. Exit codes: 0 ok, 1 failed, 2 usage, 3
another run holds the lock, 4 a set was committed but is partial.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from typing import List, Optional

from shipper import commands
from shipper.commands.context import Context
from shipper.core import config
from shipper.core.errors import ShipperError
from shipper.core.restic import ResticError


def parser(argv: Optional[List[str]] = None) -> argparse.ArgumentParser:
    """The whole parser; given argv, only the chosen command's arguments are loaded."""
    p = argparse.ArgumentParser(
        prog="shipper",
        description="Keep a spare server ready to take over: snapshot sets of files and "
        "databases into a restic repository on the slave, and promote it in one command.",
    )
    p.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help=f"config file (default $SHIPPER_CONFIG or {config.DEFAULT_PATH})",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    p.add_argument(
        "--version",
        action="store_true",
        help="shipper's and restic's versions and the config file in use (with --json: JSON)",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_all(sub, None if argv is None else _chosen(argv))
    return p


def _chosen(argv: List[str]) -> str:
    """The command named in argv ('' when none): the first word that is not a global option."""
    words = iter(argv)
    for word in words:
        if word in ("-c", "--config"):
            next(words, None)
        elif not word.startswith("-"):
            return word
    return ""


def _version(argv: List[str]) -> int:
    """`shipper --version` needs no command, so it is answered before the parser asks for one."""
    from shipper.commands import version

    words = iter(argv)
    config_arg = next((next(words, None) for word in words if word in ("-c", "--config")), None)
    return version.run(config_arg, "--json" in argv)


def _setup_logging(verbose: bool) -> None:
    under_systemd = "JOURNAL_STREAM" in os.environ or "INVOCATION_ID" in os.environ
    fmt = (
        "%(levelname)s %(name)s: %(message)s"
        if under_systemd
        else "%(asctime)s %(levelname)s %(message)s"
    )
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO if under_systemd else logging.WARNING,
        format=fmt,
    )


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--version" in argv and not _chosen(argv):
        return _version(argv)
    args = parser(argv).parse_args(argv)
    _setup_logging(args.verbose)
    ctx = Context(args)
    try:
        return int(args.run(ctx) or 0)
    except config.ConfigError as exc:
        for problem in exc.problems:
            print(f"shipper: {problem}", file=sys.stderr)
        return 1
    except (ShipperError, ResticError) as exc:
        print(f"shipper: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 1)
    except KeyboardInterrupt:
        print("shipper: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output went away (`shipper sets | head`): not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        # A disk that is full, read-only or forbidden: one line naming the path, no traceback.
        print(f"shipper: error: {os_error_line(exc, ctx.loaded_config)}", file=sys.stderr)
        return 1


_OS_ERROR_TODO = {
    errno.ENOSPC: ("no space or no inodes left on its disk", "free space or inodes there"),
    errno.EDQUOT: ("the disk quota is exceeded", "raise the quota or free space"),
    errno.EROFS: ("its filesystem is read-only", "remount it read-write"),
    errno.EACCES: ("permission denied", "run shipper as root or fix the permissions"),
    errno.EPERM: ("operation not permitted", "run shipper as root or fix the permissions"),
}


def os_error_line(exc: OSError, cfg: Optional[config.Config]) -> str:
    """An OSError as one line: the path, what is wrong and what to do."""
    path = str(exc.filename or "")
    what, todo = _OS_ERROR_TODO.get(exc.errno or 0, (exc.strerror or str(exc), "fix that"))
    state = str(cfg.state) if cfg is not None else ""
    if state and path and (path == state or path.startswith(state.rstrip("/") + "/")):
        return (
            f"cannot write shipper's state folder {state} ({path}): {what}; {todo}, "
            "or set state_dir in the config to a writable folder, then run again"
        )
    where = path or "a file shipper needs"
    return f"{where}: {what}; {todo}, then run again"
