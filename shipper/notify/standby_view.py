"""The warm standby in `shipper status`: where it is, when it was verified, or its failure.

A failed apply is CRITICAL: the set it could not apply is a set that would
not restore, found on an ordinary day. A standby that stays behind the newest
complete set past LAG is WARNING (promote then takes the longer delta path), and
so is a post-apply hook that failed (the set is in place all the same).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any, Dict, List, Optional, Tuple

from shipper.core import cron, sets, state
from shipper.core.config import Config
from shipper.notify.levels import CRITICAL, WARNING

LAG = 900  # seconds a new complete set may wait for its apply before status warns


def judge(cfg: Config, newest: Optional[str]) -> Tuple[Dict[str, Any], List[Tuple[int, str]]]:
    """The standby's data for the report and its problems (level, text)."""
    record = state.standby_record(cfg.state)
    age = round(time.time() - sets.id_time(record.set).timestamp()) if record.set else None
    data = {
        "set": record.set,
        "state": record.state or None,
        "age": age,
        "verified_at": record.verified_at or None,
        "seconds": record.seconds,
        "dumps_in_place": len(record.dumps),
        "files_checked": record.files_checked,
        "last_good": record.last_good,
        "error": record.error or None,
        "warning": record.warning or None,
    }
    problems: List[Tuple[int, str]] = []
    if record.error:
        problems.append(
            (CRITICAL, f"standby: {record.error}; fix it and run `shipper standby apply`")
        )
    elif record.warning:
        problems.append((WARNING, f"standby: set {record.set} is applied, but {record.warning}"))
    elif not record.set:
        problems.append((WARNING, "standby: no set applied yet; `shipper standby apply`"))
    elif record.state != state.APPLIED and _since(record.started) > LAG:
        problems.append(
            (
                WARNING,
                f"standby: the apply of set {record.set} started {record.started} and did not "
                "finish (killed?): promote takes the delta path; `shipper standby apply`",
            )
        )
    elif newest and newest != record.set and _waited(newest) > LAG:
        problems.append(
            (
                WARNING,
                f"standby: at set {record.set} ({record.state}), the newest complete set "
                f"{newest} has waited {cron.describe_duration(_waited(newest))} for its apply; "
                "is the daemon running?",
            )
        )
    return data, problems


def _since(iso: str) -> float:
    try:
        return max(0.0, time.time() - dt.datetime.fromisoformat(iso).timestamp())
    except ValueError:
        return 0.0


def _waited(set_id: str) -> float:
    return max(0.0, time.time() - sets.id_time(set_id).timestamp())


def line(data: Dict[str, Any]) -> str:
    if data.get("error"):
        return f"standby:     FAILED: {data['error']}"
    if not data.get("set"):
        return "standby:     enabled, nothing applied yet"
    age = cron.describe_duration(data["age"] or 0)
    if data.get("state") != state.APPLIED:
        return f"standby:     {data['state']} set {data['set']} ({age} old), not promotable as is"
    return (
        f"standby:     at set {data['set']} ({age} old), verified at {data['verified_at']} "
        f"({data['seconds']:.1f}s, {data['dumps_in_place']} dumps, "
        f"{data['files_checked']} files read back)"
    )
