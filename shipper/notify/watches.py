"""What fails and recovers besides snapshot runs: the standby's applies, the destinations.

Each is a watch in the notification state (`watches`, by key: "standby",
"destination:NAME") with the same rules as a failing snapshot run: an email
and the failure webhook on the transition to failing (again when the error
changes or after notify.repeat_after), an email and the success webhook on
the recovery, nothing in between. The gauges they feed (notify/metrics.py)
are written with the state.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any, Dict, List, Optional

from shipper.core import cron, sets
from shipper.core import state as state_files
from shipper.core.config import Config
from shipper.core.cron import describe_duration
from shipper.core.state import NotifyState, SeenDestination, Watch
from shipper.notify import destination_status
from shipper.notify.channels import send
from shipper.notify.event import Event
from shipper.notify.store import load_state, save_state

log = logging.getLogger("shipper.notify")

STANDBY = "standby"
DESTINATION_EVERY = 900  # seconds between two looks at the destinations from the slave's daemon


def track(
    cfg: Config,
    state: NotifyState,
    key: str,
    error: str,
    subject: str,
    lines: List[str],
    cause: str = "",
) -> None:
    """One look at a watch: `error` '' is healthy; tells on transitions (see the module doc).

    `cause` says what is wrong without what changes at each look (an age),
    to judge whether the error changed; the error itself by default.
    """
    cause = cause or error
    entry = state.watches.get(key) or Watch()
    was_failing = entry.failing
    now = time.time()
    if error:
        if not was_failing:
            entry = Watch(failing=True, since=now)
        entry.count += 1
        repeat = cfg.notify.repeat_after
        if (
            entry.emailed is None
            or cause != (entry.cause or entry.error)  # a watch saved before `cause` has none
            or (repeat is not None and now - entry.emailed >= repeat)
        ):
            body = [*lines, "", f"Error: {error}"]
            send(cfg, Event("failing", subject=subject, body="\n".join(body), about=key))
            entry.emailed = now
        entry.error, entry.cause = error, cause
    elif was_failing:
        since = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(entry.since))
        body = [
            *lines,
            "",
            f"It had failed {entry.count or 1} time(s) since {since}; "
            f"the last error was: {entry.error or '(none given)'}",
        ]
        send(cfg, Event("recovery", subject=subject, body="\n".join(body), about=key))
        entry = Watch()
    state.watches[key] = entry


# ---------------------------------------------------------------- the standby


def standby_failed(cfg: Config, error: str) -> None:
    """An apply failed (the standby record says what is in place)."""
    state = load_state(cfg)
    lines = [
        f"The warm standby on {cfg.hostname} could not apply the newest set.",
        "The last good set stays in place; promote meanwhile takes the longer path.",
        "",
        "What to do: read the error below and `journalctl -u shipper.service`, fix the cause,",
        "then run `shipper standby apply` and check `shipper status`.",
    ]
    # The same failure at the next set is not news: judge it without the set ids.
    cause = re.sub(r"\b\d{8}T\d{6}Z\b", "SET", error)
    track(cfg, state, STANDBY, error, "standby apply failed", lines, cause)
    save_state(cfg, state)


def standby_applied(cfg: Config, record: state_files.StandbyRecord) -> None:
    state = load_state(cfg)
    lines = [f"The warm standby on {cfg.hostname} applied and verified set {record.set}."]
    track(cfg, state, STANDBY, "", "standby applies work again", lines)
    save_state(cfg, state)


# ---------------------------------------------------------------- destinations


def watch_destinations(cfg: Config, views: List[Any], crit_at: int, at: float) -> None:
    """The destination views of status (notify/destination_status.py): each one's gauges,
    and a stale one told once (same threshold as status: past max_age, or no set)."""
    state = load_state(cfg)
    seen = state.destinations
    for view in views:
        entry = seen.get(view.name) or SeenDestination()
        entry.reachable = view.error is None
        if view.newest:
            entry.newest_set_time = sets.id_time(view.newest).timestamp()
        newest = entry.newest_set_time
        age = None if newest is None else max(0.0, at - newest)
        seen[view.name] = entry
        error, cause = "", "stale"
        if age is None:  # looked at after a snapshot: the primary has a set, this one none
            error = cause = f"destination {view.name} has no complete set" + (
                f"; it does not answer: {view.error}" if view.error else ""
            )
        elif age > crit_at:
            error = (
                f"destination {view.name}: the newest complete set there is "
                f"{describe_duration(age)} old, past max_age ({describe_duration(crit_at)})"
                + (f"; it does not answer: {view.error}" if view.error else "")
            )
        lines = [
            f"Destination {view.name} ({view.kind}) of {cfg.hostname}: "
            + ("stale." if error else "up to date again."),
            "",
            "What to do: `shipper status` names each destination's newest set; a copy that",
            "fails is in the snapshot's log (`journalctl -u shipper.service`).",
        ]
        subject = f"destination {view.name} is " + ("stale" if error else "up to date again")
        track(cfg, state, f"destination:{view.name}", error, subject, lines, cause)
    for gone in set(seen) - {view.name for view in views}:
        seen.pop(gone)
    state.destinations_checked = at
    save_state(cfg, state)


def check_destinations(
    cfg: Config, every: Optional[int] = None, known: Optional[Dict[str, str]] = None
) -> None:
    """Look at every copy destination (a restic listing each, unless `known` names its
    newest whole set) and tell what changed; with `every`, only when the last look is
    that many seconds old."""
    if not cfg.destinations:
        return
    last = load_state(cfg).destinations_checked
    if every is not None and last is not None and time.time() - last < every:
        return
    try:
        crit_at = cron.max_age(cfg)
        at = time.time()
        views = destination_status.views(cfg, at, int(crit_at * 2 / 3), crit_at, known)
        watch_destinations(cfg, views, crit_at, at)
    except Exception as exc:  # telling must never fail the run that asked
        log.warning("cannot look at the destinations: %s: %s", type(exc).__name__, exc)
