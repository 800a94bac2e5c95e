"""Per destination in `status`: the newest complete set there and its age.

One restic process per destination (to list its sets); a destination that
does not answer is reported, not waited for (its probe takes seconds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from shipper.core import cron, destinations, sets
from shipper.core.copies import whole_sets
from shipper.core.restic import Restic, ResticError
from shipper.notify.levels import CRITICAL, OK, WARNING


@dataclass
class DestinationView:
    name: str
    kind: str
    newest: Optional[str] = None
    age: Optional[int] = None
    error: Optional[str] = None
    level: int = OK
    problem: Optional[str] = None

    def to_json(self) -> Dict[str, Any]:
        keys = ("name", "kind", "newest", "age", "error")
        return {key: getattr(self, key) for key in keys}

    def perfdata(self, warn_at: int, crit_at: int) -> Optional[str]:
        if self.age is None:
            return None
        return f"age_{self.name}={self.age}s;{warn_at};{crit_at};0"


def views(
    cfg: Any, current: float, warn_at: int, crit_at: int, known: Optional[Dict[str, str]] = None
) -> List[DestinationView]:
    """known: destination name -> its newest whole set, when a copy just proved it
    (no listing for those: each costs a restic process)."""
    known = known or {}
    return [
        _view(cfg, dest, current, warn_at, crit_at, known.get(dest.name))
        for dest in destinations.copies(cfg)
    ]


def _view(
    cfg: Any, dest: Any, current: float, warn_at: int, crit_at: int, newest: Optional[str]
) -> DestinationView:
    view = DestinationView(dest.name, dest.kind, newest=newest)
    try:
        if newest is None:
            view.error = dest.probe()
        if view.error is None and newest is None:
            found = whole_sets(Restic(dest.repository(), cache_dir=str(cfg.state / "cache")))
            newest = sets.newest(found)
            view.newest = newest.id if newest else None
    except (ResticError, OSError) as exc:
        view.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    _judge(view, current, warn_at, crit_at)
    return view


def _judge(view: DestinationView, current: float, warn_at: int, crit_at: int) -> None:
    if view.error:
        view.level, view.problem = WARNING, f"destination {view.name}: {view.error}"
        return
    if view.newest is None:
        view.level = CRITICAL
        view.problem = f"destination {view.name} has no complete set; the next snapshot copies it"
        return
    view.age = round(max(0.0, current - sets.id_time(view.newest).timestamp()))
    described = f"destination {view.name}: newest complete set {view.newest} is {cron.describe_duration(view.age)} old"
    if view.age > crit_at:
        view.level, view.problem = CRITICAL, f"{described}, past max_age: it is stale"
    elif view.age > warn_at:
        view.level, view.problem = WARNING, described
