"""Whole sets onto the other destinations with `restic copy`, all destinations at once.

The source is `repository` as this machine sees it: on the master the slave's
receiver (push), on a slave its own local copy (pull, no network read).

Each destination gets its own thread running its own restic processes, so a
destination that is slow, full or hangs delays nobody else: the others finish
while it waits out restic's stuck-request timeout (repository.network_timeout).
The source is listed once, while the destinations list themselves.

A set is whole on a destination or invisible there. All missing sets go in
one `restic copy` call (each call opens two repositories, about 0.7 s of key
derivation each): oldest set first and, within a set, its data parts before
its manifest carriers. restic copy saves each snapshot only after its data,
in the order of the ids it is given, so an interrupted copy leaves the older
sets whole and at most parts without a manifest, which no reader counts as a
set (sets.INCOMPLETE) and the next run completes.

Only sets newer than the newest whole set already there are copied: a set a
destination's own retention forgot (`shipper prune --destination`) is never
copied back. Sets are matched by their `shipper-set:` tag, never by snapshot
id (copies get new ids). Nothing here ever forgets or prunes: a push from the
master can add to a destination, never delete from it.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from shipper.core import destinations, sets
from shipper.core.destinations import Destination
from shipper.core.errors import ShipperError
from shipper.core.restic import RepositoryMissing, Restic, ResticError


@dataclass
class CopyResult:
    destination: str
    copied: List[str] = field(default_factory=list)
    error: Optional[str] = None
    seconds: float = 0.0

    def to_json(self) -> Dict[str, Any]:
        return {
            "destination": self.destination,
            "copied": self.copied,
            "error": self.error,
            "seconds": round(self.seconds, 2),
        }

    def line(self) -> str:
        if self.error:
            return f"destination {self.destination}: not copied: {self.error}; the next run catches it up"
        return (
            f"destination {self.destination}: {len(self.copied)} sets copied in {self.seconds:.1f}s"
        )


def whole_sets(restic: Restic) -> List[sets.SnapshotSet]:
    """Sets with a manifest (complete or partial), newest first."""
    return [s for s in sets.group(restic.snapshots()) if s.status != sets.INCOMPLETE]


def copy_all(cfg: Any, source: Restic) -> List[CopyResult]:
    """Catch every configured destination up with `source`, all at once; one failing,
    slow or hanging never stops or delays the others. Results in config order."""
    targets = destinations.copies(cfg)
    if not targets:
        return []
    with ThreadPoolExecutor(max_workers=len(targets) + 1) as pool:
        available = pool.submit(whole_sets, source)
        running = [pool.submit(copy_to, cfg, source, dest, available) for dest in targets]
        return [future.result() for future in running]


def copy_to(
    cfg: Any, source: Restic, dest: Destination, available: Future[List[sets.SnapshotSet]]
) -> CopyResult:
    result = CopyResult(dest.name)
    started = time.monotonic()
    try:
        why = dest.probe()
        if why:
            raise ShipperError(why)
        target = Restic(dest.repository(), cache_dir=str(cfg.state / "cache"))
        there = _sets_there(target)
        if there is None:
            available.result()  # the source answers before a new repository is made
            target.init_copying(source.repository)
            there = []
        missing = missing_sets(available.result(), there, dest.entry.catch_up)
        if missing:
            target.copy(source.repository, copy_order(missing))
        result.copied = [s.id for s in missing]
    except (ResticError, ShipperError, OSError) as exc:
        result.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    result.seconds = time.monotonic() - started
    return result


def _sets_there(target: Restic) -> Optional[List[sets.SnapshotSet]]:
    """The destination's whole sets; None when it has no repository yet."""
    try:
        return whole_sets(target)
    except RepositoryMissing:
        return None


def copy_order(missing: List[sets.SnapshotSet]) -> List[str]:
    """Snapshot ids, oldest set first; in each set the data parts, then every snapshot
    carrying a manifest (an amended set has several; any one makes the set visible)."""
    manifest_tag = f"{sets.PART_TAG}:{sets.MANIFEST_PART}"
    ordered: List[str] = []
    for chosen in sorted(missing, key=lambda s: s.id):
        snaps = sorted(chosen.snapshots, key=lambda snap: snap.time)
        ordered += [snap.id for snap in snaps if manifest_tag not in snap.tags]
        ordered += [snap.id for snap in snaps if manifest_tag in snap.tags]
    return ordered


def missing_sets(
    available: List[sets.SnapshotSet], there: List[sets.SnapshotSet], newest: Optional[int]
) -> List[sets.SnapshotSet]:
    """The sets newer than the newest one there, oldest first, at most the newest `newest`."""
    after = max((s.id for s in there), default="")
    missing = [s for s in available if s.id > after]  # newest first
    if newest:
        missing = missing[:newest]
    return list(reversed(missing))
