"""The entry point: parse the command line, set up logging, run one command, map errors.

Each command lives in its own module under shipper/commands/ and is imported
only when it runs. `main` maps every expected error to a one-line message and
its exit code, never a traceback. Exit codes: 0 ok, 1 failed, 2 usage, 3
another run holds the lock, 4 a set was committed but is partial.
"""

from __future__ import annotations

import argparse
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
    args = parser(argv).parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return int(args.run(Context(args)) or 0)
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
