#!/usr/bin/env python3
"""Write shipper(1) in roff from the argparse parser, so the man page never drifts from --help.

Usage: PYTHONPATH=. python3 packaging/make-manpage.py > shipper.1
(scripts/build-rpm runs it and puts the page into the source tarball.)
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from typing import List

from shipper import __version__
from shipper.cli import parser

FILES = [
    ("/etc/shipper/shipper.yml", "the configuration (`shipper config generate` prints every key)"),
    ("/etc/shipper/secret", "the repository password, mode 0600"),
    ("/usr/share/shipper/hooks, /etc/shipper/hooks", "pre-snapshot.d/ and post-restore.d/ hooks"),
    (
        "/var/lib/shipper",
        "the lock, run records, promote progress, and on the slave the repository",
    ),
]
UNITS = [
    ("shipper.service", "the daemon (master; on a slave it watches the newest set's age)"),
    ("shipper-receiver.service", "the receiver (slave)"),
    ("shipper-prune.timer", "daily retention (slave)"),
    ("shipper-check.timer", "weekly repository check (slave)"),
]
EXIT = [
    ("0", "success; for status: OK"),
    ("1", "failure; for status: WARNING"),
    ("2", "usage error; for status: CRITICAL"),
    ("3", "another shipper run holds the lock; for status: UNKNOWN"),
    ("4", "a set was committed but is partial (a part failed)"),
]


def escape(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(
        ("\\&" + line) if line.startswith((".", "'")) else line for line in text.split("\n")
    )


def options(p: argparse.ArgumentParser) -> List[str]:
    out: List[str] = []
    for action in p._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            continue
        if isinstance(action, argparse._HelpAction) and p.prog != "shipper":
            continue
        if action.option_strings:
            names = ", ".join(action.option_strings)
            if action.nargs != 0:
                names += " " + (action.metavar or action.dest.upper())
        else:
            names = action.metavar or action.dest
        out += [".TP", f"\\fB{escape(names)}\\fR", escape(expand(action, p.prog))]
    return out


def expand(action: argparse.Action, prog: str) -> str:
    """The help text as argparse prints it (%(default)s filled in, %% made %)."""
    try:
        return (action.help or "") % {**vars(action), "prog": prog}
    except (KeyError, TypeError, ValueError):
        return action.help or ""


def page() -> str:
    top = parser()
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    date = (
        dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc)
        if epoch
        else dt.datetime.now(dt.timezone.utc)
    )
    lines = [
        f'.TH SHIPPER 1 "{date:%Y-%m-%d}" "shipper {__version__}" "User Commands"',
        ".SH NAME",
        "shipper \\- " + escape(top.description or ""),
        ".SH SYNOPSIS",
        "\\fBshipper\\fR [\\fB\\-c\\fR \\fIFILE\\fR] [\\fB\\-v\\fR] \\fICOMMAND\\fR [\\fIoptions\\fR]",
        ".SH OPTIONS",
        *options(top),
        ".SH COMMANDS",
    ]
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in sub._choices_actions}
    for name, command in sub.choices.items():
        usage = command.format_usage().replace("usage: ", "").strip()
        lines += [".SS " + escape(name), f"\\fB{escape(usage)}\\fR", ".PP"]
        lines.append(escape(command.description or helps.get(name) or ""))
        lines += options(command)
        nested = [a for a in command._actions if isinstance(a, argparse._SubParsersAction)]
        for group in nested:
            for action in group._choices_actions:
                lines += [
                    ".TP",
                    f"\\fB{escape(name + ' ' + action.dest)}\\fR",
                    escape(action.help or ""),
                ]
    lines += [".SH EXIT STATUS"]
    for code, text in EXIT:
        lines += [".TP", f"\\fB{code}\\fR", escape(text)]
    lines += [".SH FILES"]
    for path, text in FILES:
        lines += [".TP", f"\\fI{escape(path)}\\fR", escape(text)]
    lines += [".SH SYSTEMD UNITS"]
    for unit, text in UNITS:
        lines += [".TP", f"\\fB{escape(unit)}\\fR", escape(text)]
    lines += [
        ".SH SEE ALSO",
        "\\fBrestic\\fR(1), \\fBrest\\-server\\fR(1), \\fBsystemd.timer\\fR(5)",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(page())
