"""Which sets a damaged repository can no longer give back, and the newest one it can.

`shipper check` finds damaged packs (restic check reading data back); this
module maps them to the sets whose snapshots hold their blobs (`restic find
--pack`) and keeps that record in <state_dir>/damage.json until a later
check finds the repository sound. A set can also have lost a part's snapshot
file: its manifest names a snapshot the repository no longer has. promote
refuses such a set and names the newest one that can be read instead.
"""

from __future__ import annotations

from typing import List, Optional

from shipper.core import manifest as manifests
from shipper.core import sets, state
from shipper.core.config import Config
from shipper.core.restic import Restic, ResticError

# How many sets, newest first, are read to find one that can be promoted.
SEARCH_LIMIT = 10


Damage = state.Damage


def load(cfg: Config) -> Damage:
    return state.load_damage(cfg.state)


def record(cfg: Config, restic: Restic, broken_packs: List[str], keep: bool = True) -> Damage:
    """Map damaged packs to sets and keep the record (`keep`: the repository's own;
    a destination's damage is reported, never recorded as the repository's).

    A check that reads a subset of the data does not see every pack, so packs
    found damaged earlier stay in the record until they are gone from the
    repository (`restic repair packs` removes them).
    """
    earlier = load(cfg).packs if keep else []
    if earlier:
        existing = set(restic.pack_ids())
        broken_packs = sorted(set(broken_packs) | {p for p in earlier if p in existing})
    damage = Damage(state.now_utc_minute(), broken_packs)
    if broken_packs:
        hit = set(restic.snapshots_using_packs(broken_packs))
        found = sets.group(restic.snapshots())
        damage.sets = [s.id for s in found if any(snap.id in hit for snap in s.snapshots)]
    if keep:
        state.save_damage(cfg.state, damage)
    return damage


def problem(restic: Restic, chosen: sets.SnapshotSet, damage: Damage) -> str:
    """Why this set cannot be read back whole ('' when nothing is known against it)."""
    why = damage.why(chosen)
    if why:
        return why
    try:
        manifest = manifests.read(restic, chosen)
    except (ResticError, ValueError) as exc:
        return f"its manifest cannot be read ({exc})"
    if manifest is None:
        return "it has no manifest"
    missing = manifest.missing_parts(chosen)
    if missing:
        return f"the snapshot of part(s) {', '.join(missing)} is missing from the repository"
    return ""


def newest_readable(
    restic: Restic, found: List[sets.SnapshotSet], damage: Damage, skip: str = ""
) -> Optional[sets.SnapshotSet]:
    """The newest complete set that can be read, looking at a few sets at most."""
    candidates = [s for s in found if s.status == sets.COMPLETE and s.id != skip]
    for candidate in candidates[:SEARCH_LIMIT]:
        if not problem(restic, candidate, damage):
            return candidate
    return None


def offer(restic: Restic, found: List[sets.SnapshotSet], damage: Damage, skip: str) -> str:
    """The sentence that names what to promote instead."""
    other = newest_readable(restic, found, damage, skip)
    if other is None:
        return "no other complete set can be read either: run `shipper check` and see restic's troubleshooting guide"
    return f"the newest set that can be read is {other.id} ({other.time:%Y-%m-%d %H:%M} UTC): promote it with --set {other.id}"
