"""Who hears about runs: webhooks, email, and a Prometheus textfile.

`lifecycle` wraps one snapshot run, manual or scheduled alike: the start
webhook, then success or failure, an email on a failure (again when the error
changes or after notify.repeat_after) and on the recovery that follows, and
the metrics file. `watch_staleness` emails when the newest complete set grows
older than max_age and when it is fresh again. Nothing here ever fails a run:
an email or webhook that cannot be delivered is logged and dropped. What goes
out holds no secret: errors name files and URLs without credentials, and
webhook URLs (which often are secrets) are logged by host only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional

from shipper.core import sets
from shipper.core.config import Config
from shipper.core.cron import describe_duration, max_age
from shipper.core.errors import LockHeld
from shipper.core.state import LastCheck, NotifyState
from shipper.notify import watches
from shipper.notify.channels import send
from shipper.notify.event import COMPLETE, FAILED, INTERRUPTED, PARTIAL, Event
from shipper.notify.store import load_state, save_state

log = logging.getLogger("shipper.notify")


# ---------------------------------------------------------------- one run


@dataclass
class RunReport:
    """Filled in by the caller: the SetResult when the run returned one."""

    started: float
    result: Any = None


@contextlib.contextmanager
def lifecycle(cfg: Config) -> Iterator[RunReport]:
    """Around one snapshot run; set `report.result` to the SetResult before leaving."""
    report = RunReport(started=time.time())
    send(cfg, Event("start"))
    try:
        yield report
    except LockHeld:
        raise  # another run is going; this one never started
    except KeyboardInterrupt:
        finish(cfg, _outcome(report, INTERRUPTED, "interrupted before the set was committed"))
        raise
    except Exception as exc:
        finish(cfg, _outcome(report, FAILED, str(exc)))
        raise
    else:
        result = report.result
        status = COMPLETE if result is not None and result.status == COMPLETE else PARTIAL
        finish(cfg, _outcome(report, status, getattr(result, "error", "") or ""))


def _outcome(report: RunReport, status: str, error: str) -> Dict[str, Any]:
    result = report.result
    ended = time.time()
    return {
        "status": status,
        "error": error,
        "set": getattr(result, "set_id", None),
        "started": report.started,
        "ended": ended,
        "duration": float(getattr(result, "duration", 0.0) or (ended - report.started)),
        "bytes_added": int(getattr(result, "bytes_added", 0) or 0),
    }


def finish(cfg: Config, outcome: Dict[str, Any]) -> None:
    """Tell everyone configured how a run ended, and remember it."""
    state = load_state(cfg)
    previous_failing = state.failing
    ok = outcome["status"] == COMPLETE
    send(cfg, Event("success" if ok else "failure", outcome=outcome))
    if outcome["status"] == INTERRUPTED:
        state.last_run = outcome
        save_state(cfg, state)
        return
    if ok:
        if previous_failing:
            _email_recovery(cfg, state, outcome)
        state.failing, state.failing_since, state.failures = False, None, 0
        state.failure_emailed, state.last_error = None, ""
        state.last_success = outcome["ended"]
        state.newest_complete = outcome["set"]
        state.newest_set_time = _set_time(outcome["set"] or "")
    else:
        if not previous_failing:
            state.failing, state.failing_since, state.failures = True, outcome["started"], 0
        state.failures += 1
        if _should_repeat(cfg, state, outcome["error"]):
            _email_failure(cfg, state, outcome)
            state.failure_emailed = time.time()
        state.last_error = outcome["error"]
    state.last_run = outcome
    state.max_age = _remembered_max_age(cfg, state)
    save_state(cfg, state)


def _should_repeat(cfg: Config, state: NotifyState, error: str) -> bool:
    emailed = state.failure_emailed
    if emailed is None or error != state.last_error:
        return True
    repeat = cfg.notify.repeat_after
    return repeat is not None and time.time() - emailed >= repeat


def _email_failure(cfg: Config, state: NotifyState, outcome: Dict[str, Any]) -> None:
    partial = outcome["status"] == PARTIAL
    subject = f"set {outcome['set']} is partial" if partial else "snapshot failed"
    lines = [
        f"The snapshot run on {cfg.hostname} started at {_when(outcome['started'])} "
        + (
            "committed a partial set: a part of it failed."
            if partial
            else "failed; no set was committed."
        ),
        "",
        f"Error: {outcome['error'] or '(none given)'}",
        "",
        *_failing_lines(cfg, state),
        "",
        "What to do: read the error above and `journalctl -u shipper.service`, fix the cause, then",
        "run `shipper snapshot` (or wait for the next slot) and check `shipper status`.",
        "You will get an email when a run succeeds again.",
    ]
    send(cfg, Event("failing", subject=subject, body="\n".join(lines)))


def _failing_lines(cfg: Config, state: NotifyState) -> List[str]:
    lines = []
    failures = state.failures or 1
    if failures > 1 and state.failing_since:
        lines.append(
            f"Runs have failed {failures} times in a row since {_when(state.failing_since)}."
        )
    newest = state.newest_complete
    if newest:
        age = _set_age(newest)
        if age is not None:
            lines.append(
                f"The newest complete set this server made is {newest}, {_duration(age)} old."
            )
    else:
        lines.append("This server has not made a complete set yet.")
    return lines


def _email_recovery(cfg: Config, state: NotifyState, outcome: Dict[str, Any]) -> None:
    failures = state.failures or 1
    since = state.failing_since
    lines = [
        f"Snapshots work again on {cfg.hostname}: set {outcome['set']} is complete "
        f"({_duration(outcome['duration'])}, {outcome['bytes_added']} bytes added).",
        "",
        f"Runs had failed {failures} time{'s' if failures != 1 else ''}"
        + (f" since {_when(since)}" if since else "")
        + f"; the last error was: {state.last_error or '(none given)'}",
    ]
    send(cfg, Event("recovery", subject="snapshots work again", body="\n".join(lines)))


# ---------------------------------------------------------------- staleness


def watch_staleness(
    cfg: Config,
    newest: Optional[dt.datetime],
    max_age: int,
    no_set_since: Optional[dt.datetime] = None,
) -> bool:
    """Email when the newest complete set gets older than max_age, and when it is fresh again.

    With no complete set yet, the spare counts as stale once `no_set_since`
    (when the repository was made) is more than max_age ago, so a new pair
    of servers gets time for its first set. Returns whether the spare is stale.
    """
    state = load_state(cfg)
    age = None if newest is None else max(0.0, time.time() - newest.timestamp())
    if age is not None:
        stale = age > max_age
    else:
        stale = no_set_since is None or time.time() - no_set_since.timestamp() > max_age
    was_stale = state.stale
    state.newest_set_time = newest.timestamp() if newest else None
    state.max_age = max_age
    if stale:
        emailed = state.stale_emailed
        repeat = cfg.notify.repeat_after
        if not was_stale:
            state.stale_since = time.time()
        if not was_stale or (emailed and repeat is not None and time.time() - emailed >= repeat):
            _email_stale(cfg, age, max_age)
            state.stale_emailed = time.time()
    elif was_stale:
        body = (
            f"The newest complete set on {cfg.hostname} is {_duration(age or 0)} old again "
            f"(max_age {_duration(max_age)}): the spare is up to date."
        )
        send(cfg, Event("fresh", subject="the spare is up to date again", body=body))
        state.stale_since = state.stale_emailed = None
    state.stale = stale
    save_state(cfg, state)
    if cfg.destinations:  # the slave's daemon: the copies' destinations too, now and then
        watches.check_destinations(cfg, every=watches.DESTINATION_EVERY)
    return stale


def _email_stale(cfg: Config, age: Optional[float], max_age: int) -> None:
    what = (
        "there is no complete set"
        if age is None
        else f"the newest complete set is {_duration(age)} old"
    )
    lines = [
        f"On {cfg.hostname}, {what}; max_age is {_duration(max_age)}.",
        "The spare is getting stale: promoting it now would lose everything since that set.",
        "",
        "What to do: on the master, run `shipper status` and look at its last run and daemon",
        "(`systemctl status shipper.service`); here, check the receiver",
        "(`systemctl status shipper-receiver.service`) and `shipper status`.",
    ]
    subject = "the spare is stale: " + (
        "no complete set" if age is None else f"newest set {_duration(age)} old"
    )
    send(cfg, Event("stale", subject=subject, body="\n".join(lines)))


def record_check(cfg: Config, ok: bool, at: float) -> None:
    """Remember the last `shipper check` for the metrics file."""
    state = load_state(cfg)
    state.last_check = LastCheck(at=at, ok=ok)
    save_state(cfg, state)


# ---------------------------------------------------------------- helpers


def _set_time(set_id: str) -> Optional[float]:
    return sets.id_time(set_id).timestamp() if sets.is_set_id(set_id) else None


def _set_age(set_id: str) -> Optional[float]:
    when = _set_time(set_id)
    return None if when is None else max(0.0, time.time() - when)


def _when(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(float(timestamp)).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def _remembered_max_age(cfg: Config, state: NotifyState) -> Optional[int]:
    """max_age, computed once per schedule: walking eight days of cron slots
    costs about 0.1 s, which an unchanged set cannot afford on every run."""
    key = f"{cfg.schedule}|{cfg.notify.max_age}"
    if state.max_age_for != key or not state.max_age:
        state.max_age_for = key
        return _max_age(cfg)
    return state.max_age


def _max_age(cfg: Config) -> Optional[int]:
    try:
        return max_age(cfg)
    except Exception:  # a schedule croniter cannot follow must not fail the run's report
        return None


def _duration(seconds: float) -> str:
    return describe_duration(seconds)
