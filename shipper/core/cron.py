"""Schedule arithmetic: cron slots, the longest gap between them, when a set is stale.

Slots are judged by the wall clock in local time, like cron. Used by the
daemon (when to run), notify and status (when the spare is stale) and the
config check (is the expression valid).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Optional, Tuple

from shipper.core.config import Config


def _croniter() -> Any:
    # Imported on use: a set's run needs cron arithmetic only when max_age changes,
    # and croniter with dateutil costs its start-up a measurable share.
    from croniter import croniter

    return croniter


# How far ahead `interval` looks for the longest gap between two slots.
_INTERVAL_HORIZON = dt.timedelta(days=8)
_INTERVAL_MAX_SLOTS = 20000
_MISSED_CAP = 10000


def now() -> dt.datetime:
    from dateutil import tz

    return dt.datetime.now(tz.tzlocal())


def next_slot(expression: str, after: dt.datetime) -> dt.datetime:
    """The first slot strictly after `after`."""
    return _croniter()(expression, after).get_next(dt.datetime)


def slots_between(
    expression: str, after: dt.datetime, until: dt.datetime
) -> Tuple[int, Optional[dt.datetime]]:
    """How many slots fall in (after, until], and the latest of them (counting stops at a cap)."""
    it = _croniter()(expression, after)
    count, latest = 0, None
    while count < _MISSED_CAP:
        slot = it.get_next(dt.datetime)
        if slot > until:
            return count, latest
        count, latest = count + 1, slot
    return count, _croniter()(expression, until + dt.timedelta(microseconds=1)).get_prev(
        dt.datetime
    )


def interval(expression: str, start: Optional[dt.datetime] = None) -> float:
    """The longest gap, in seconds, between two slots over the next eight days.

    The longest rather than the usual gap, so that a schedule with quiet hours
    or weekends does not make the spare look stale when no run was due.
    """
    start = start or now()
    it = _croniter()(expression, start)
    previous = it.get_next(dt.datetime)
    longest = 0.0
    for _ in range(_INTERVAL_MAX_SLOTS):
        slot = it.get_next(dt.datetime)
        longest = max(longest, (slot - previous).total_seconds())
        if slot - start > _INTERVAL_HORIZON:
            break
        previous = slot
    return longest


def max_age(cfg: Config) -> int:
    """Seconds after which the newest complete set is stale (notify.max_age, or 3 intervals)."""
    if cfg.notify.max_age:
        return cfg.notify.max_age
    return int(3 * interval(cfg.schedule))


def valid_expression(expression: str) -> bool:
    """Five cron fields, or six with croniter's trailing seconds field (tests only)."""
    return len(expression.split()) in (5, 6) and _croniter().is_valid(expression)


def describe_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"
