"""Whole sets onto the other destinations with `restic copy`, parts first, manifests last.

The source is `repository` as this machine sees it: on the master the slave's
receiver (push), on a slave its own local copy (pull, no network read). A set
is whole on a destination or invisible there: every part of every missing set
is copied in one restic call, then the manifest carriers in a second, so an
interrupted copy leaves parts without a manifest, which no reader counts as a
set (sets.INCOMPLETE) and the next run completes. Sets are matched by their
`shipper-set:` tag, never by snapshot id (copies get new ids).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

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
    """Catch every configured destination up with `source`; one failing never stops the others."""
    if not cfg.destinations:
        return []
    available = whole_sets(source)
    return [copy_to(cfg, source, dest, available) for dest in destinations.copies(cfg)]


def copy_to(
    cfg: Any, source: Restic, dest: Destination, available: List[sets.SnapshotSet]
) -> CopyResult:
    result = CopyResult(dest.name)
    started = time.monotonic()
    try:
        why = dest.probe()
        if why:
            raise ShipperError(why)
        target = Restic(dest.repository(), cache_dir=str(cfg.state / "cache"))
        missing = missing_sets(available, _sets_there(target, source), dest.entry.catch_up)
        if missing:
            parts, carriers = split_carriers(missing)
            if parts:
                target.copy(source.repository, parts)
            target.copy(source.repository, carriers)
        result.copied = [s.id for s in reversed(missing)]
    except (ResticError, ShipperError, OSError) as exc:
        result.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    result.seconds = time.monotonic() - started
    return result


def _sets_there(target: Restic, source: Restic) -> List[sets.SnapshotSet]:
    """The destination's whole sets; a new destination is created with the source's chunker."""
    try:
        return whole_sets(target)
    except RepositoryMissing:
        target.init_copying(source.repository)
        return []


def split_carriers(missing: List[sets.SnapshotSet]) -> Tuple[List[str], List[str]]:
    """Snapshot ids: the data parts, then every snapshot carrying a manifest (an amended
    set has several; any one of them makes the set visible, so all go last)."""
    manifest_tag = f"{sets.PART_TAG}:{sets.MANIFEST_PART}"
    snaps = [snap for s in missing for snap in s.snapshots]
    carriers = [snap.id for snap in snaps if manifest_tag in snap.tags]
    return [snap.id for snap in snaps if snap.id not in carriers], carriers


def missing_sets(
    available: List[sets.SnapshotSet], there: List[sets.SnapshotSet], newest: Optional[int]
) -> List[sets.SnapshotSet]:
    """The sets the destination lacks, newest first, at most `newest` of them."""
    have = {s.id for s in there}
    missing = [s for s in available if s.id not in have]
    return missing[:newest] if newest else missing
