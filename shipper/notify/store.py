"""The notification state (core/state.py's NotifyState): read, seeded, saved with the metrics.

Its one writer is this package: the run lifecycle and staleness
(state_machine.py) and the other watches (watches.py) load it, change their
fields and save it here, which also rewrites the metrics file.
"""

from __future__ import annotations

import logging

from shipper.core import state as state_files
from shipper.core.config import Config
from shipper.core.state import NotifyState
from shipper.notify.channels import send
from shipper.notify.event import COMPLETE, Event

log = logging.getLogger("shipper.notify")

STATE_FILE = state_files.NOTIFY


def load_state(cfg: Config) -> NotifyState:
    saved = state_files.notify_state(cfg.state)
    return saved if saved is not None else _seed_state(cfg)


def _seed_state(cfg: Config) -> NotifyState:
    """With no state yet, judge recovery by the last run's record (snapshot.record_run)."""
    record = state_files.last_run(cfg.state)
    if not record:
        return NotifyState()
    failed = record.status != COMPLETE
    return NotifyState(
        failing=failed,
        failures=1 if failed else 0,
        last_error=record.error or "",
        newest_complete=None if failed else record.set_id,
    )


def save_state(cfg: Config, state: NotifyState) -> None:
    path = cfg.state / STATE_FILE
    try:
        state_files.save_notify_state(cfg.state, state)
    except OSError as exc:
        log.warning("cannot save the notification state %s: %s", path, exc.strerror)
    send(cfg, Event("state", state=state))
