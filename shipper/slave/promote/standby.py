"""What promote takes from a warm standby (see slave/standby.py, which applies the sets).

Three paths: `standby` when the standby holds the very set being promoted,
applied and verified under the same root: the files and databases are
already in place, so promote only stops the receiver, runs the hooks and
flips the role. `delta` when a standby ran but holds another set or was
interrupted: the full path, except the dumps the standby loaded and verified
with the same sha256, and the files judged by size and time
(`--overwrite if-changed`, safe since restic wrote them). `cold` otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from shipper.core import state
from shipper.core.config import Config
from shipper.core.manifest import Dump

STANDBY, DELTA, COLD = "standby", "delta", "cold"


@dataclass
class Route:
    kind: str = COLD
    note: str = "no standby: full restore"
    skipped: List[str] = field(default_factory=list)  # the dumps already in place
    overwrite: Optional[str] = None  # restic's --overwrite for the files


def choose(cfg: Config, set_id: str, root: str, loads: List[Dump]) -> Route:
    if not cfg.standby.enabled:  # an old record says nothing of a slave no longer kept warm
        return Route(COLD, "cold: standby is off: full restore")
    record = state.standby_record(cfg.state)
    if not record.set or record.root != root:
        why = "no standby record" if not record.set else f"the standby applies under {record.root}"
        return Route(COLD, f"cold: {why}: full restore")
    if record.applied and record.set == set_id:
        return Route(
            STANDBY,
            f"standby: set {set_id} is in place, verified at {record.verified_at}: "
            "no files or databases to restore",
            [load.part for load in loads],
        )
    same = in_place(record, loads)
    held = (
        f"holds set {record.set}"
        if record.applied
        else f"is {record.state or 'unknown'} at set {record.set}"
        + (f" ({record.error})" if record.error else "")
    )
    return Route(
        DELTA,
        f"delta: the standby {held}: files by size and time, "
        f"{len(same)} of {len(loads)} dumps already in place",
        same,
        "if-changed",
    )


def in_place(record: state.StandbyRecord, loads: List[Dump]) -> List[str]:
    """The parts whose dump, same content (Dump.content_key), the standby loaded and verified.

    An engine's globals count as in place only when none of its databases is
    reloaded: they load again after the databases to put back their grants.
    """
    same = {
        load.part
        for load in loads
        if load.content_key and record.dumps.get(load.part) == load.content_key
    }
    reloaded = {load.engine for load in loads if not load.is_globals and load.part not in same}
    return [
        load.part
        for load in loads
        if load.part in same and not (load.is_globals and load.engine in reloaded)
    ]
