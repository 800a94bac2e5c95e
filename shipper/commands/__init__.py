"""One module per command: its arguments (`register`), its work (`run`), its output.

The table below is all `shipper --help` needs; a command's module is imported
only when that command runs, so start-up pays for one command, not for all.
To add a command: a module here with `register(parser, name)` and
`run(ctx) -> int`, and one line in COMMANDS.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Dict, Optional, Tuple

# name -> (module in shipper.commands, one-line help), in --help order
COMMANDS: Dict[str, Tuple[str, str]] = {
    "init": ("init", "create the repository if it does not exist"),
    "snapshot": ("snapshot", "take one snapshot set now (files, databases, settings)"),
    "sets": ("sets", "list snapshot sets, newest first"),
    "copy": ("copy", "copy whole sets the other destinations lack (on a slave: pull offsite)"),
    "restore": ("restore", "restore a set's files under a folder (full original paths kept)"),
    "unlock": ("unlock", "remove stale restic locks (never the locks of a live process)"),
    "config": ("config", "validate or generate the configuration"),
    "promote": (
        "promote",
        "on the slave: put a set in place (files, databases, hooks) and become the master",
    ),
    "standby": (
        "standby",
        "on a warm standby slave: apply the newest complete set in place now, verified",
    ),
    "restore-db": ("restore_db", "load one database of a set into this server's database server"),
    "diff": ("diff", "what changed between two sets: paths and databases"),
    "daemon": ("daemon", "take sets on the schedule, one at a time (run by shipper.service)"),
    "status": ("status", "is the spare ready? a report, and a Nagios-style check (exit 0/1/2)"),
    "check": (
        "check",
        "verify the repository (restic check, reading back a share of the data)",
    ),
    "setup": (
        "setup",
        "set up the slave or the master, one command each, the same password file on both",
    ),
    "receiver": ("receiver", "on the slave: run, start, stop or show the receiver (rest-server)"),
    "prune": (
        "prune",
        "on the slave: forget whole sets by the retention policy, then restic prune",
    ),
    "enable": ("enable", "turn the schedule on (enabled: true in the config)"),
    "disable": ("enable", "turn the schedule off (enabled: false in the config)"),
}


def load(name: str) -> ModuleType:
    return importlib.import_module(f"shipper.commands.{COMMANDS[name][0]}")


def add_all(sub: Any, chosen: Optional[str] = None) -> None:
    """A subparser per command; arguments only for `chosen` (all when None)."""
    for name, (_, help_text) in COMMANDS.items():
        parser = sub.add_parser(name, help=help_text)
        if chosen is None or name == chosen:
            load(name).register(parser, name)
