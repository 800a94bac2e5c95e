"""The metrics channel: a Prometheus textfile (notify.metrics_file), rewritten with the state."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from shipper.core import sets
from shipper.core import state as state_files
from shipper.core.config import Config
from shipper.core.state import NotifyState, SeenDestination
from shipper.notify.event import COMPLETE, STATUSES, Event

log = logging.getLogger("shipper.notify")


def enabled(cfg: Config) -> bool:
    return bool(cfg.notify.metrics_file)


def send(cfg: Config, event: Event) -> bool:
    """Every change of the notification state rewrites the file."""
    if event.state is None or not cfg.notify.metrics_file:
        return False
    try:
        state_files.write_text(
            Path(cfg.notify.metrics_file), metrics_text(cfg, event.state), mode=0o644
        )
    except OSError as exc:
        log.warning("cannot write the metrics file %s: %s", cfg.notify.metrics_file, exc.strerror)
        return False
    return True


def metrics_text(cfg: Config, state: NotifyState, at: Optional[float] = None) -> str:
    """The Prometheus textfile: only what this host knows (a slave makes no runs)."""
    at = time.time() if at is None else at
    out: List[str] = []

    def gauge(name: str, help_text: str, value: Any, labels: str = "") -> None:
        if value is None:
            return
        out.extend(
            [
                f"# HELP {name} {help_text}",
                f"# TYPE {name} gauge",
                f"{name}{labels} {_number(value)}",
            ]
        )

    host = _label(cfg.hostname)
    gauge("shipper_info", "This host's role; always 1.", 1, f'{{role="{cfg.role}",host="{host}"}}')
    run = state.last_run
    if run:
        gauge(
            "shipper_last_run_timestamp_seconds",
            "When the last run ended (Unix time).",
            run["ended"],
        )
        gauge(
            "shipper_last_run_success",
            "1 if the last run committed a complete set.",
            int(run["status"] == COMPLETE),
        )
        gauge("shipper_last_run_duration_seconds", "How long the last run took.", run["duration"])
        gauge(
            "shipper_last_run_bytes_added",
            "Bytes the last run added to the repository.",
            run["bytes_added"],
        )
        out.extend(
            [
                "# HELP shipper_last_run_status The last run's outcome (1 for the one it had).",
                "# TYPE shipper_last_run_status gauge",
            ]
        )
        out.extend(
            f'shipper_last_run_status{{status="{s}"}} {int(run["status"] == s)}' for s in STATUSES
        )
        gauge(
            "shipper_consecutive_failures",
            "Runs that failed in a row.",
            state.failures,
        )
    gauge(
        "shipper_last_success_timestamp_seconds",
        "When the last complete set was made (Unix time).",
        state.last_success,
    )
    newest = state.newest_set_time
    if newest is None and state.newest_complete:
        newest = _set_time(state.newest_complete)
    gauge(
        "shipper_newest_set_timestamp_seconds",
        "Time of the newest complete set (Unix time).",
        newest,
    )
    if newest is not None:
        gauge(
            "shipper_newest_set_age_seconds",
            "Age of the newest complete set when this file was written.",
            max(0.0, at - newest),
        )
    check = state.last_check
    if check:
        gauge(
            "shipper_last_check_timestamp_seconds",
            "When `shipper check` last ran (Unix time).",
            check.at,
        )
        gauge(
            "shipper_last_check_success",
            "1 if the last `shipper check` found no problem.",
            int(check.ok),
        )
    max_age = state.max_age
    if max_age:
        gauge(
            "shipper_max_age_seconds", "Age after which the newest complete set is stale.", max_age
        )
        stale = newest is None or at - newest > max_age
        gauge("shipper_stale", "1 if the newest complete set is older than max_age.", int(stale))
    if cfg.standby.enabled:
        out += standby_lines(cfg, at)
    out += destination_lines(state.destinations, at)
    return "\n".join(out) + "\n"


def _family(name: str, help_text: str, samples: List[str]) -> List[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", *samples] if samples else []


def standby_lines(cfg: Config, at: float) -> List[str]:
    """The warm standby: its applied set's age, the last apply's outcome and duration."""
    record = state_files.standby_record(cfg.state)
    applied = record.set if record.applied else record.last_good
    when = _set_time(applied or "")
    out = _family(
        "shipper_standby_applied_set_age_seconds",
        "Age of the set the standby last applied and verified, when this file was written.",
        [] if when is None else [f"shipper_standby_applied_set_age_seconds {_number(at - when)}"],
    ) + _family(
        "shipper_standby_applied_set_timestamp_seconds",
        "Time of the set the standby last applied and verified (Unix time).",
        [] if when is None else [f"shipper_standby_applied_set_timestamp_seconds {_number(when)}"],
    )
    if record.set:
        ok = int(record.applied and not record.error)
        out += _family(
            "shipper_standby_last_apply_success",
            "1 if the last standby apply put its set in place and verified it.",
            [f"shipper_standby_last_apply_success {ok}"],
        )
    if record.seconds:
        out += _family(
            "shipper_standby_apply_duration_seconds",
            "How long the last successful standby apply took.",
            [f"shipper_standby_apply_duration_seconds {_number(float(record.seconds))}"],
        )
    return out


def destination_lines(seen: Dict[str, SeenDestination], at: float) -> List[str]:
    """Per copy destination (notify/watches.py): its newest complete set's age, reachable."""
    names = sorted(seen)
    dated = [(name, seen[name].newest_set_time) for name in names]
    ages = [
        f'shipper_destination_newest_set_age_seconds{{destination="{_label(name)}"}} '
        + _number(max(0.0, at - float(when)))
        for name, when in dated
        if when is not None
    ]
    times = [
        f'shipper_destination_newest_set_timestamp_seconds{{destination="{_label(name)}"}} '
        + _number(float(when))
        for name, when in dated
        if when is not None
    ]
    reachable = [
        f'shipper_destination_reachable{{destination="{_label(name)}"}} {int(seen[name].reachable)}'
        for name in names
    ]
    return (
        _family(
            "shipper_destination_newest_set_age_seconds",
            "Age of the newest complete set at a copy destination, when this file was written.",
            ages,
        )
        + _family(
            "shipper_destination_newest_set_timestamp_seconds",
            "Time of the newest complete set at a copy destination (Unix time).",
            times,
        )
        + _family(
            "shipper_destination_reachable",
            "1 if the copy destination answered when looked at.",
            reachable,
        )
    )


def _number(value: Any) -> str:
    if isinstance(value, float):
        return repr(round(value, 3))
    return str(value)


def _label(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def _set_time(set_id: str) -> Optional[float]:
    return sets.id_time(set_id).timestamp() if sets.is_set_id(set_id) else None
