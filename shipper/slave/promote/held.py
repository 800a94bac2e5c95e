"""standby.hold: paths of the set a warm standby keeps aside, put in place at promote.

The master's cron jobs (/etc/cron.d, /var/spool/cron, ...) act on the data by
themselves: on a standby they would run the master's jobs against data the
next apply overwrites. So an apply treats these paths like machine-specific
ones (restic does not touch them; the slave keeps its own files there), and
promote's HELD step restores them from the set's files snapshot with
restic's --delete: afterwards they are exactly the master's. Held nowhere
else, they cannot run before promote, and need no copy to go stale: the
repository holds them.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

from shipper.core.restic import Restic, ResticError
from shipper.slave.promote.model import Plan, PromoteFailed
from shipper.slave.promote.scope import Scope, is_under, norm, restic_pattern


def held_paths(hold: Sequence[str], scope: Scope) -> List[str]:
    """The parts of the restored paths that standby.hold names (each at most once)."""
    found = set()
    for path in scope.paths:
        for held in (norm(h) for h in hold):
            if is_under(held, path) and not scope.keeps(held):
                found.add(held)
            elif is_under(path, held):
                found.add(path)
    return sorted(p for p in found if not any(o != p and is_under(p, o) for o in found))


def put_in_place(restic: Restic, plan: Plan, root: str) -> Dict[str, Any]:
    """The set's held paths, exactly: what the slave kept there and the set lacks goes."""
    assert plan.held_snapshot
    try:
        summary = restic.restore(
            plan.held_snapshot,
            root,
            [restic_pattern(p) for p in plan.held],
            delete=True,
        )
    except ResticError as exc:
        raise PromoteFailed(f"cannot put the held paths in place: {exc}") from None
    return {
        "paths": plan.held,
        "files_restored": summary.get("files_restored", 0),
        "files_deleted": summary.get("files_deleted", 0),
    }
