"""Retention on the slave: which whole sets to keep, then forget and prune.

shipper chooses the sets itself instead of `restic forget --keep-*`, because
restic judges single snapshots and would keep half a set. The rules, by the
set's time (its id), in this machine's time zone:

- every committed set (complete or partial) younger than keep_within;
- the newest set in each of the last `hourly` hours, `daily` days and
  `weekly` ISO weeks that hold a set (restic's counting: buckets with no set
  do not count), preferring a complete set to a partial one in a bucket;
- always the newest complete set (and, with no complete set at all, the
  newest partial one), however old;
- an incomplete set (no manifest: it never committed) only while younger than
  keep_within or than a run could still be going on (6 hours, or twice the
  lock wait if longer).

Every snapshot of a dropped set is forgotten: first the manifest carriers (a
set cut short there is just incomplete, never promotable), then the rest;
then `restic prune` frees the space. Only on a local repository: the
receiver is append-only.

Per destination (`shipper prune --destination NAME`) with that destination's
own retention, only on a slave that holds its credentials: the master never
deletes anywhere, and a shipper receiver is append-only. On a bucket with
Object Lock (object_lock_days) no set younger than the lock is forgotten:
its objects cannot be deleted yet, so forgetting it would only hide it behind
delete markers and free nothing; and prune never repacks there (a rewritten
locked pack doubles the storage). A set counts as locked for object_lock_days
after it was taken; one copied later by a catch-up stays locked in the bucket
a little longer than that, and forgetting it then only adds delete markers.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from shipper.core import sets
from shipper.core.config import Config
from shipper.core.destinations import Destination
from shipper.core.errors import Refused
from shipper.core.lock import host_lock
from shipper.core.restic import Restic
from shipper.core.sets import COMPLETE, INCOMPLETE, PARTIAL, SnapshotSet

STALE_MINIMUM = dt.timedelta(hours=6)
FORGET_BATCH = 200
LOCKED = "object lock"


@dataclass(frozen=True)
class Policy:
    keep_within: str = "48h"
    hourly: int = 168
    daily: int = 30
    weekly: int = 12
    lock_wait: int = 120
    object_lock_days: Optional[int] = None

    @classmethod
    def from_config(cls, cfg: Config, entry: Any = None) -> Policy:
        """The repository's retention; for a destination entry its own, key by key."""
        r = cfg.retention
        own = entry.retention if entry is not None else None

        def pick(key: str) -> Any:
            value = getattr(own, key) if own is not None else None
            return getattr(r, key) if value is None else value

        keys = ("keep_within", "hourly", "daily", "weekly")
        lock = entry.object_lock_days if entry is not None else None
        return cls(*(pick(key) for key in keys), cfg.repository.lock_wait, lock)

    @property
    def stale_after(self) -> dt.timedelta:
        return max(STALE_MINIMUM, dt.timedelta(seconds=2 * self.lock_wait))

    def describe(self) -> str:
        return (
            f"every set of the last {self.keep_within}, then {self.hourly} hourly, "
            f"{self.daily} daily, {self.weekly} weekly; always the newest complete set"
            + (
                f"; no set younger than the bucket's Object Lock ({self.object_lock_days} days)"
                if self.object_lock_days
                else ""
            )
        )


@dataclass
class Decision:
    set: SnapshotSet
    reasons: List[str] = field(default_factory=list)

    @property
    def keep(self) -> bool:
        return bool(self.reasons)

    @property
    def only_locked(self) -> bool:
        """Kept only because the bucket's Object Lock does not allow deleting it yet."""
        return bool(self.reasons) and all(r.startswith(LOCKED) for r in self.reasons)

    def to_json(self) -> Dict[str, Any]:
        return {
            "id": self.set.id,
            "time": self.set.time.isoformat(),
            "status": self.set.status,
            "keep": self.keep,
            "reasons": self.reasons,
            "snapshots": [s.id for s in self.set.snapshots],
        }


@dataclass
class Plan:
    decisions: List[Decision]
    policy: Policy

    @property
    def kept(self) -> List[SnapshotSet]:
        return [d.set for d in self.decisions if d.keep]

    @property
    def dropped(self) -> List[SnapshotSet]:
        return [d.set for d in self.decisions if not d.keep]

    def forget_batches(self) -> Tuple[List[str], List[str]]:
        """Snapshot ids to forget: the manifest carriers first, then the other parts."""
        first: List[str] = []
        rest: List[str] = []
        for chosen in self.dropped:
            carriers = {
                s.id for s in chosen.snapshots if f"{sets.PART_TAG}:{sets.MANIFEST_PART}" in s.tags
            }
            for snap in chosen.snapshots:
                (first if snap.id in carriers else rest).append(snap.id)
        return first, rest

    def to_json(self) -> Dict[str, Any]:
        first, rest = self.forget_batches()
        return {
            "policy": self.policy.describe(),
            "keep": len(self.kept),
            "forget": len(self.dropped),
            "forget_snapshots": len(first) + len(rest),
            "sets": [d.to_json() for d in self.decisions],
        }


# ---------------------------------------------------------------- durations


def parse_duration(text: str) -> Tuple[int, int, int, int]:
    """restic's duration ('48h', '7d', '1y2m') as (years, months, days, hours)."""
    if not re.fullmatch(r"(\d+[ymdh])+", text):
        raise ValueError(f"{text!r} is not a duration like 48h, 7d or 1y2m")
    amounts = {"y": 0, "m": 0, "d": 0, "h": 0}
    for number, unit in re.findall(r"(\d+)([ymdh])", text):
        amounts[unit] += int(number)
    return amounts["y"], amounts["m"], amounts["d"], amounts["h"]


def subtract(now: dt.datetime, text: str) -> dt.datetime:
    """now minus a restic duration, with calendar years and months (as restic does)."""
    years, months, days, hours = parse_duration(text)
    total = now.year * 12 + (now.month - 1) - years * 12 - months
    year, month = divmod(total, 12)
    month += 1
    day = min(now.day, _month_days(year, month))
    moved = now.replace(year=year, month=month, day=day)
    return moved - dt.timedelta(days=days, hours=hours)


def _month_days(year: int, month: int) -> int:
    following = dt.date(year + month // 12, month % 12 + 1, 1)
    return (following - dt.timedelta(days=1)).day


# ---------------------------------------------------------------- choosing


def _hour(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%d %H:00")


def _day(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%d")


def _week(t: dt.datetime) -> str:
    year, week, _ = t.isocalendar()
    return f"{year}-W{week:02d}"


def plan(
    found: Sequence[SnapshotSet],
    policy: Policy,
    now: Optional[dt.datetime] = None,
    tz: Optional[dt.tzinfo] = None,
) -> Plan:
    """Decide set by set; `found` in any order, the plan lists them newest first."""
    now = now or dt.datetime.now(dt.timezone.utc)
    ordered = sorted(found, key=lambda s: s.id, reverse=True)
    decisions = {s.id: Decision(s) for s in ordered}
    cutoff = subtract(now.astimezone(tz), policy.keep_within)
    committed = [s for s in ordered if s.status in (COMPLETE, PARTIAL)]
    for chosen in committed:
        if chosen.time >= cutoff:
            decisions[chosen.id].reasons.append(f"within {policy.keep_within}")
    for name, count, key in (
        ("hourly", policy.hourly, _hour),
        ("daily", policy.daily, _day),
        ("weekly", policy.weekly, _week),
    ):
        for bucket, chosen in _buckets(committed, count, key, tz):
            decisions[chosen.id].reasons.append(f"{name} {bucket}")
    newest = sets.newest(ordered) or sets.newest(ordered, (PARTIAL,))
    if newest is not None:
        decisions[newest.id].reasons.insert(0, f"newest {newest.status} set")
    for chosen in ordered:
        if chosen.status == INCOMPLETE and _incomplete_kept(chosen, cutoff, now, policy):
            decisions[chosen.id].reasons.append("incomplete, may still be running or recent")
    if policy.object_lock_days:
        _keep_locked(ordered, decisions, now, policy.object_lock_days)
    return Plan([decisions[s.id] for s in ordered], policy)


def _buckets(
    committed: List[SnapshotSet],
    count: int,
    key: Callable[[dt.datetime], str],
    tz: Optional[dt.tzinfo],
) -> List[Tuple[str, SnapshotSet]]:
    """The newest set of each of the newest `count` buckets; complete beats partial."""
    chosen: Dict[str, SnapshotSet] = {}
    order: List[str] = []
    for item in committed:
        bucket = key(item.time.astimezone(tz))
        if bucket not in chosen:
            if len(order) == count:
                break
            order.append(bucket)
            chosen[bucket] = item
        elif chosen[bucket].status != COMPLETE and item.status == COMPLETE:
            chosen[bucket] = item
    return [(bucket, chosen[bucket]) for bucket in order]


def _keep_locked(
    ordered: List[SnapshotSet], decisions: Dict[str, Decision], now: dt.datetime, days: int
) -> None:
    """Sets the policy drops but the bucket cannot delete yet stay, saying until when."""
    lock = dt.timedelta(days=days)
    for chosen in ordered:
        until = chosen.time + lock
        if not decisions[chosen.id].keep and until > now:
            decisions[chosen.id].reasons.append(
                f"{LOCKED} until {until:%Y-%m-%d %H:%M} UTC (object_lock_days {days}): "
                "deleting it now would free nothing"
            )


def _incomplete_kept(
    chosen: SnapshotSet, cutoff: dt.datetime, now: dt.datetime, policy: Policy
) -> bool:
    return chosen.time >= cutoff or chosen.time >= now - policy.stale_after


# ---------------------------------------------------------------- doing it


@dataclass
class PruneResult:
    plan: Plan
    dry_run: bool
    destination: str = "primary"
    forgotten_snapshots: int = 0
    pruned: bool = False
    duration: float = 0.0

    def to_json(self) -> Dict[str, Any]:
        return {
            "destination": self.destination,
            **self.plan.to_json(),
            "dry_run": self.dry_run,
            "forgotten_snapshots": self.forgotten_snapshots,
            "pruned": self.pruned,
            "duration": self.duration,
        }


def require_local(restic: Restic) -> None:
    url = restic.repository.url
    if re.match(r"^[a-z0-9]+:", url) and not url.startswith("local:"):
        raise Refused(
            f"shipper prune needs the repository as a local path, not {url}: the receiver is "
            "append-only, so sets are forgotten on the slave; run `shipper prune` there "
            "(role: slave with repository.local_path)"
        )


def require_deletable(cfg: Config, restic: Restic, dest: Destination) -> None:
    """Only where this machine's credentials may delete: never from the master."""
    if dest.entry is None:
        require_local(restic)
        return
    if cfg.role != "slave":
        raise Refused(
            f"the master never deletes: destination {dest.name} is pruned by the slave that "
            "holds its credentials; put it under `destinations:` in that slave's config and "
            f"run `shipper prune --destination {dest.name}` there"
        )
    if dest.kind == "rest":
        raise Refused(
            f"destination {dest.name} is a shipper receiver (append-only): run "
            "`shipper prune` on that slave, which prunes its own local copy"
        )


def prune(
    cfg: Config,
    restic: Restic,
    dry_run: bool = False,
    now: Optional[dt.datetime] = None,
    announce: Optional[Callable[[str], None]] = None,
    dest: Optional[Destination] = None,
) -> PruneResult:
    """Forget the sets the policy drops and prune, under the host lock.

    `dest` is a destination from `destinations:` (its own retention and Object
    Lock); None is the repository.
    """
    entry = dest.entry if dest is not None else None
    if dest is not None:
        require_deletable(cfg, restic, dest)
    else:
        require_local(restic)
    say = announce or (lambda label: None)
    clock = time.monotonic()
    name = entry.name if entry is not None else "primary"
    with host_lock(cfg.state, "prune" if entry is None else f"prune-{name}"):
        policy = Policy.from_config(cfg, entry)
        chosen = plan(sets.group(restic.snapshots()), policy, now)
        result = PruneResult(chosen, dry_run, name)
        if dry_run:
            return result
        first, rest = chosen.forget_batches()
        for ids in (first, rest):
            for start in range(0, len(ids), FORGET_BATCH):
                say(f"forget {len(chosen.dropped)} sets")
                restic.forget(ids[start : start + FORGET_BATCH])
                result.forgotten_snapshots += len(ids[start : start + FORGET_BATCH])
        say("prune")
        # Under Object Lock a repacked pack is stored twice until the lock ends.
        restic.prune(max_unused="unlimited" if policy.object_lock_days else None)
        result.pruned = True
    result.duration = round(time.monotonic() - clock, 3)
    return result
