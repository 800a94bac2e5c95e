"""How long the chosen path should take (promote --dry-run), from what was measured here.

Each apply and each promote records the speed of what it wrote (restic's
bytes restored per second, dump bytes loaded per second; state.Speeds);
the plan's bytes (restic's preview of the files, the dumps' sizes) divided
by those speeds give the files' and the loads' times, which run side by side.
A part with bytes to write and no measured speed makes the whole "unknown":
a guess is worse than saying so.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from shipper.core import state
from shipper.core.config import Config
from shipper.core.cron import describe_duration
from shipper.core.progress import human_bytes
from shipper.slave.promote.model import FILES, Plan, now

MIN_BYTES = 1 << 20  # a measure of less says more about start-up than about speed


def record(folder: Any, what: str, files: Tuple[int, float], loads: Tuple[int, float]) -> None:
    """Keep the speeds an apply or a promote measured: (bytes, seconds) of the files and the loads."""
    speeds = state.speeds(folder)
    where = f"{what} at {now()}"
    if files[0] >= MIN_BYTES and files[1] > 0:
        speeds.files_bytes, speeds.files_seconds, speeds.files_from = int(files[0]), files[1], where
    if loads[0] >= MIN_BYTES and loads[1] > 0:
        speeds.load_bytes, speeds.load_seconds, speeds.load_from = int(loads[0]), loads[1], where
    state.save_speeds(folder, speeds)


def expected(cfg: Config, plan: Plan, checks: float = 0.0) -> Dict[str, Any]:
    """{"seconds": float or None (unknown), "basis": what it rests on}; `checks` is
    what this run's preflight and plan took, which the promote does again."""
    speeds = state.speeds(cfg.state)
    to_write = 0
    if plan.files_snapshot and plan.changes is not None and FILES not in plan.done:
        to_write = plan.changes.bytes_to_write
    to_load = sum(load.bytes for load in plan.databases if load.step not in plan.done)
    basis: List[str] = []
    files = _part("files", to_write, speeds.files_bytes, speeds.files_seconds, speeds.files_from)
    loads = _part("databases", to_load, speeds.load_bytes, speeds.load_seconds, speeds.load_from)
    for _, text in (files, loads):
        if text:
            basis.append(text)
    hooks = _hooks_seconds(cfg) if plan.hooks else 0.0
    if plan.hooks:
        basis.append(
            f"hooks {describe_duration(hooks)} (the last promote's)"
            if hooks is not None
            else "the post-restore hooks (not timed yet: no promote here before)"
        )
    if not to_write and not to_load:
        basis.insert(0, "no files or databases to restore")
    if checks:
        basis.append(f"preflight and plan {checks:.1f}s (as now)")
    record = state.standby_record(cfg.state)
    if record.seconds and plan.route != "cold":
        basis.append(f"the last apply (set {record.last_good}) took {record.seconds:.1f}s")
    seconds: Optional[float] = None
    if files[0] is not None and loads[0] is not None:
        seconds = round(checks + max(files[0], loads[0]) + (hooks or 0.0), 1)
    return {"seconds": seconds, "basis": "; ".join(basis), "plus_hooks": hooks is None}


def _part(
    name: str, size: int, measured: int, took: float, source: str
) -> Tuple[Optional[float], str]:
    """(seconds or None, text) for one part."""
    if not size:
        return 0.0, ""
    if not measured or took <= 0:
        return None, f"{name} {human_bytes(size)}, speed unknown (nothing measured yet)"
    rate = measured / took
    return (
        size / rate,
        f"{name} {human_bytes(size)} at {human_bytes(int(rate))}/s (measured by the {source})",
    )


def _hooks_seconds(cfg: Config) -> Optional[float]:
    report = state.read_json(cfg.state / state.LAST_PROMOTE)
    if not isinstance(report, dict):
        return None
    value = (report.get("split") or {}).get("hooks")
    return float(value) if isinstance(value, (int, float)) else None


def line(expected_: Dict[str, Any]) -> str:
    seconds = expected_.get("seconds")
    took = "unknown" if seconds is None else f"about {describe_duration(seconds)}"
    if seconds is not None and expected_.get("plus_hooks"):
        took += " plus the hooks"
    return f"  expected duration: {took} ({expected_.get('basis') or 'nothing measured'})"
