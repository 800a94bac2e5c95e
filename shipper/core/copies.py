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

The fast path (every restic process pays its key derivation): right after a
snapshot run, a destination whose record (state.CopyRecord) says its last
copy succeeded and it holds the set taken just before this one gets a single
`restic copy` of the new set's snapshot ids, in the order they were written,
and no listing at all. That call also offers the previous set's ids: restic
skips them when they are there, and copies them (whole, before the new set)
when the destination was emptied behind shipper's back; then the listing
path runs at once, counting only what is older than that set as there. Any
other case (no record, a failed or killed copy, a set in between, `shipper
copy`) takes the listing path, which rewrites the record.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from shipper.core import destinations, sets, state
from shipper.core.destinations import Destination
from shipper.core.errors import ShipperError
from shipper.core.restic import RepositoryMissing, Restic, ResticError


@dataclass(frozen=True)
class NewSet:
    """What a snapshot run hands the copies: the set, the one attempted before it
    (state.last_set_id when it began) and its snapshot ids in the order written."""

    id: str
    previous: Optional[str]
    snapshots: List[str]


@dataclass
class CopyResult:
    destination: str
    copied: List[str] = field(default_factory=list)
    error: Optional[str] = None
    seconds: float = 0.0
    listed: bool = True  # False: the fast path, no listing
    done_at: float = 0.0  # wall clock (epoch seconds) when it ended

    def to_json(self) -> Dict[str, Any]:
        return {
            "destination": self.destination,
            "copied": self.copied,
            "error": self.error,
            "seconds": round(self.seconds, 2),
            "listed": self.listed,
            "done_at": round(self.done_at, 3),
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


class _SourceListing:
    """The source's whole sets, listed once when the first destination needs them."""

    def __init__(self, pool: ThreadPoolExecutor, source: Restic):
        self._pool, self._source = pool, source
        self._lock = threading.Lock()
        self._future: Optional[Future[List[sets.SnapshotSet]]] = None

    def start(self) -> None:
        with self._lock:
            if self._future is None:
                self._future = self._pool.submit(whole_sets, self._source)

    def result(self) -> List[sets.SnapshotSet]:
        self.start()
        assert self._future is not None
        return self._future.result()


def copy_all(cfg: Any, source: Restic, new: Optional[NewSet] = None) -> List[CopyResult]:
    """Catch every configured destination up with `source`, all at once; one failing,
    slow or hanging never stops or delays the others. Results in config order.
    `new`: the set a snapshot run just took (the fast path); None lists both sides."""
    targets = destinations.copies(cfg)
    if not targets:
        return []
    with ThreadPoolExecutor(max_workers=len(targets) + 1) as pool:
        listing = _SourceListing(pool, source)
        running = [pool.submit(copy_to, cfg, source, dest, listing, new) for dest in targets]
        return [future.result() for future in running]


def copy_to(
    cfg: Any, source: Restic, dest: Destination, listing: _SourceListing, new: Optional[NewSet]
) -> CopyResult:
    result = CopyResult(dest.name)
    started = time.monotonic()
    try:
        why = dest.probe()
        if why:
            raise ShipperError(why)
        copier = _Copier(cfg, source, dest, listing)
        if new is not None and fast_path_applies(copier.record, copier.url, new):
            result.copied = copier.fast(new)
        else:
            result.copied = copier.listed_copy()
        result.listed = copier.listed
    except (ResticError, ShipperError, OSError) as exc:
        result.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    result.seconds = time.monotonic() - started
    result.done_at = time.time()
    return result


def _vouches(record: state.CopyRecord, url: str) -> bool:
    """The last copy to this url succeeded and was not found wrong since."""
    return bool(record.ok and record.url == url and record.through and not record.below)


def fast_path_applies(record: state.CopyRecord, url: str, new: NewSet) -> bool:
    """The record vouches that the destination holds every set up to the one before `new`."""
    return bool(_vouches(record, url) and record.through == new.previous and new.snapshots)


def holds(cfg: Any, dest: Destination, set_id: str) -> bool:
    """The destination's record vouches that it holds this set (or a newer one) whole:
    the slave's daemon then starts no copy (set ids sort by time)."""
    record = state.copy_record(cfg.state, dest.name)
    return _vouches(record, dest.repository().url) and record.through >= set_id


class _Copier:
    """One destination's copy, and the record it keeps (its only writer)."""

    def __init__(self, cfg: Any, source: Restic, dest: Destination, listing: _SourceListing):
        self.cfg, self.source, self.dest, self.listing = cfg, source, dest, listing
        self.target = Restic(dest.repository(), cache_dir=str(cfg.state / "cache"))
        self.url = dest.repository().url
        self.record = state.copy_record(cfg.state, dest.name)
        if self.record.url != self.url:
            self.record = state.CopyRecord(url=self.url)
        self.listed = False

    def _save(self, **changes: Any) -> None:
        self.record = dataclasses.replace(self.record, **changes)
        state.save_copy_record(self.cfg.state, self.dest.name, self.record)

    def fast(self, new: NewSet) -> List[str]:
        """One `restic copy`: the previous set's ids (skipped when there), then the new set's."""
        previous = list(self.record.snapshots)
        self._save(ok=False)
        try:
            copied = self.target.copy(self.source.repository, [*previous, *new.snapshots])
        except RepositoryMissing:
            return self.listed_copy()  # the destination was emptied: start it over
        if any(_copied(snap, copied) for snap in previous):
            # It lacked the set the record vouched for: emptied behind shipper's back.
            self._save(below=self.record.through)
            return [self.record.through, new.id, *self.listed_copy()]
        self._save(through=new.id, snapshots=list(new.snapshots), ok=True)
        return [new.id] if any(_copied(snap, copied) for snap in new.snapshots) else []

    def listed_copy(self) -> List[str]:
        """List both sides and copy every set the destination lacks, oldest first."""
        self.listed = True
        self.listing.start()  # the source lists while the destination does
        there = self._sets_there()
        if there is None:
            why = self.dest.refuses_new_repository(
                self.record.through, state.copy_record_path(self.cfg.state, self.dest.name)
            )
            if why:
                raise ShipperError(why)
            self.listing.result()  # the source answers before a new repository is made
            self._save(ok=False)
            self.target.init_copying(self.source.repository)
            there = []
        available = self.listing.result()
        below = self.record.below
        before = [s for s in there if s.id < below] if below else there
        have = {s.id for s in there}
        missing = [
            s for s in missing_sets(available, before, self.dest.entry.catch_up) if s.id not in have
        ]
        if missing:
            self._save(ok=False)
            self.target.copy(self.source.repository, copy_order(missing))
        newest = available[0] if available else None
        self._save(
            through=newest.id if newest else "",
            snapshots=copy_order([newest]) if newest else [],
            ok=True,
            below="",
        )
        return [s.id for s in missing]

    def _sets_there(self) -> Optional[List[sets.SnapshotSet]]:
        """The destination's whole sets; None when it has no repository yet."""
        try:
            return whole_sets(self.target)
        except RepositoryMissing:
            return None


def _copied(snapshot_id: str, copied: List[str]) -> bool:
    """restic names the snapshots it copied by their short ids."""
    return any(snapshot_id.startswith(short) for short in copied if short)


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
