"""Snapshot sets: finding, listing and judging them from restic snapshots.

A set is the group of restic snapshots tagged `shipper-set:<ID>`; each names
its part with `shipper-part:<name>`. The manifest (the set's commit record)
rides inside the last snapshot written, which also carries
`shipper-part:manifest` and `shipper-status:<status>` tags, so one
`restic snapshots` call is enough to list and judge every set. A set whose
manifest snapshot is missing did not finish: it is `incomplete`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional

from shipper.core.errors import NotFound
from shipper.core.restic import Snapshot, parse_time

SET_TAG = "shipper-set"
PART_TAG = "shipper-part"
STATUS_TAG = "shipper-status"
# On an amended manifest: files that vanished while the set was taken (deleted, not
# lost), and unreadable files inside `volatile` folders; neither fails the set.
VANISHED_TAG = "shipper-vanished"
NOTED_TAG = "shipper-noted"
MANIFEST_PART = "manifest"
FILES_PART = "files"
MANIFEST_FILENAME = "shipper-manifest.json"
SET_FOLDER = "set"  # under state_dir on the master: the manifest's folder in the files part

COMPLETE = "complete"
PARTIAL = "partial"
INCOMPLETE = "incomplete"

ID_FORMAT = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class Part:
    name: str
    snapshot: str
    short_id: str
    time: dt.datetime
    bytes_added: int
    paths: tuple

    def to_json(self) -> Dict[str, object]:
        return {"name": self.name, "snapshot": self.snapshot, "bytes_added": self.bytes_added}


@dataclass
class SnapshotSet:
    id: str
    snapshots: List[Snapshot] = field(default_factory=list)

    @property
    def time(self) -> dt.datetime:
        return id_time(self.id)

    @property
    def manifest_snapshot(self) -> Optional[Snapshot]:
        """The newest snapshot carrying a manifest (a later one amends an earlier one)."""
        carriers = [s for s in self.snapshots if _has_part(s, MANIFEST_PART)]
        return max(carriers, key=lambda s: s.time) if carriers else None

    @property
    def status(self) -> str:
        carrier = self.manifest_snapshot
        if carrier is None:
            return INCOMPLETE
        return carrier.tag_value(STATUS_TAG) or PARTIAL

    @property
    def vanished(self) -> int:
        return _count_tag(self.manifest_snapshot, VANISHED_TAG)

    @property
    def noted(self) -> int:
        return _count_tag(self.manifest_snapshot, NOTED_TAG)

    @property
    def parts(self) -> Dict[str, Part]:
        """Data parts by name (the manifest is not one of them)."""
        out: Dict[str, Part] = {}
        for snap in sorted(self.snapshots, key=lambda s: s.time):
            for tag in snap.tags:
                if tag.startswith(PART_TAG + ":") and tag != f"{PART_TAG}:{MANIFEST_PART}":
                    name = tag[len(PART_TAG) + 1 :]
                    out[name] = Part(
                        name=name,
                        snapshot=snap.id,
                        short_id=snap.short_id,
                        time=snap.time,
                        bytes_added=int(snap.summary.get("data_added", 0) or 0),
                        paths=snap.paths,
                    )
        return out

    def part_names(self) -> List[str]:
        """Files first, then each engine's globals and databases, by name."""
        return sorted(
            self.parts, key=lambda name: (name != FILES_PART, not name.endswith(":globals"), name)
        )

    @property
    def bytes_added(self) -> int:
        return sum(int(s.summary.get("data_added", 0) or 0) for s in self.snapshots)

    @property
    def host(self) -> str:
        return self.snapshots[0].hostname if self.snapshots else ""

    @property
    def duration(self) -> Optional[float]:
        """Seconds from the set's start (its id) to the end of its last restic backup, as
        restic's snapshot summaries say; None for snapshots without a summary."""
        ends = [
            parse_time(s.summary["backup_end"])
            for s in self.snapshots
            if s.summary.get("backup_end")
        ]
        if not ends:
            return None
        return round(max((max(ends) - self.time).total_seconds(), 0.0), 1)

    def to_json(self) -> Dict[str, object]:
        carrier = self.manifest_snapshot
        return {
            "id": self.id,
            "time": self.time.isoformat(),
            "status": self.status,
            "duration": self.duration,
            "host": self.host,
            "bytes_added": self.bytes_added,
            "vanished": self.vanished,
            "noted": self.noted,
            "manifest_snapshot": carrier.id if carrier else None,
            "parts": [self.parts[name].to_json() for name in self.part_names()],
        }


def count_tags(vanished: int, noted: int) -> List[str]:
    """The tags that carry a set's vanished and noted counts (none when zero)."""
    counts = ((VANISHED_TAG, vanished), (NOTED_TAG, noted))
    return [f"{tag}:{count}" for tag, count in counts if count]


def _count_tag(snapshot: Optional[Snapshot], tag: str) -> int:
    value = snapshot.tag_value(tag) if snapshot else None
    return int(value) if value and value.isdigit() else 0


def _has_part(snapshot: Snapshot, name: str) -> bool:
    return f"{PART_TAG}:{name}" in snapshot.tags


def new_set_id(now: dt.datetime, after: Optional[str] = None) -> str:
    """A set id that sorts by time, and after `after` even if the clock went back."""
    candidate = now.astimezone(dt.timezone.utc)
    if after and candidate.strftime(ID_FORMAT) <= after:
        candidate = id_time(after) + dt.timedelta(seconds=1)
    return candidate.strftime(ID_FORMAT)


def id_time(set_id: str) -> dt.datetime:
    return dt.datetime.strptime(set_id, ID_FORMAT).replace(tzinfo=dt.timezone.utc)


def is_set_id(text: str) -> bool:
    try:
        id_time(text)
    except ValueError:
        return False
    return True


def group(snapshots: Iterable[Snapshot]) -> List[SnapshotSet]:
    """Sets newest first; snapshots without a set tag (not shipper's) are ignored."""
    by_id: Dict[str, SnapshotSet] = {}
    for snap in snapshots:
        set_id = snap.tag_value(SET_TAG)
        if set_id and is_set_id(set_id):
            by_id.setdefault(set_id, SnapshotSet(set_id)).snapshots.append(snap)
    return sorted(by_id.values(), key=lambda s: s.id, reverse=True)


def newest(sets: List[SnapshotSet], statuses: Iterable[str] = (COMPLETE,)) -> Optional[SnapshotSet]:
    wanted = set(statuses)
    return next((s for s in sets if s.status in wanted), None)


def find(sets: List[SnapshotSet], ref: str) -> SnapshotSet:
    """A set by id (or a unique prefix), or `latest`: the newest complete set."""
    if ref == "latest":
        found = newest(sets)
        if found is None:
            raise NotFound(
                "there is no complete set in the repository yet; take one with `shipper snapshot`"
            )
        return found
    matches = [s for s in sets if s.id == ref] or [s for s in sets if s.id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise NotFound(f"no set {ref!r} in the repository; `shipper sets` lists them")
    raise NotFound(f"{ref!r} matches {len(matches)} sets; give more of the id")
