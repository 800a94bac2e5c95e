"""Promote's records: the options, each preflight check, the plan and the report."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional

from shipper.core.errors import ShipperError
from shipper.core.manifest import Dump
from shipper.slave.promote.scope import FileChanges, Scope

RECEIVER = "receiver"
FILES = "files"
HELD = "held"  # standby.hold's paths put in place (a standby kept them aside)
SERVICES = "services"  # promote.services enabled and started (a standby kept them stopped)
ROLE = "role"
DONE = "done"
FAILED = "failed"
SKIPPED = "skipped"


class PromoteFailed(ShipperError):
    """A step failed; the report says which, and a re-run resumes there."""


@dataclass
class Options:
    set_ref: Optional[str] = None
    root: str = "/"
    allow_partial: bool = False
    force: bool = False


@dataclass
class Check:
    name: str
    ok: bool
    message: str
    overridable: bool = False  # --force may override it


Say = Callable[[Check], None]


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class Plan:
    set_id: str
    status: str
    time: str
    host: str
    root: str
    files_snapshot: Optional[str]
    scope: Scope
    includes: List[str]
    children: Dict[str, List[str]]
    # Slave folders where the set has another type: removed before restic runs.
    in_the_way: List[str]
    # Slave files restic will rewrite: unlinked first, so sparse files stay sparse.
    rewrite: List[str]
    changes: Optional[FileChanges]
    databases: List[Dump]
    skipped_parts: Dict[str, str]
    hooks: List[str]
    steps: List[str]
    done: List[str]
    resumed: bool
    route: str = "cold"  # standby, delta or cold: slave/promote/standby.py
    route_note: str = ""
    overwrite: Optional[str] = None  # restic restore --overwrite
    held: List[str] = field(default_factory=list)  # the HELD step's paths
    held_snapshot: Optional[str] = None  # the files snapshot they come from
    services: List[str] = field(default_factory=list)  # the SERVICES step's units
    expected: Dict[str, Any] = field(default_factory=dict)  # slave/promote/estimate.py

    def to_json(self) -> Dict[str, Any]:
        data = asdict(self)
        data.pop("children")
        data.pop("rewrite")  # one per changed file: the counts say it
        return data


@dataclass
class StepResult:
    name: str
    status: str
    seconds: float
    detail: Any = None
    earlier: bool = False  # finished by an earlier, interrupted run


@dataclass
class Report:
    set_id: str
    root: str
    outcome: str
    started: str
    seconds: float
    steps: List[StepResult]
    path: str = ""
    error: str = ""
    finished: str = field(default_factory=now)
    # Wall-clock seconds of this run's phases (databases load side by side, so
    # their steps' seconds add up to more than the phase took).
    split: Dict[str, float] = field(default_factory=dict)

    def to_json(self) -> Dict[str, Any]:
        return asdict(self)
