"""The notification state (core/state.py's notify.json): read, seeded, saved with the metrics.

Its one writer is this package: the run lifecycle and staleness
(state_machine.py) and the other watches (watches.py) load it, change their
keys and save it here, which also rewrites the metrics file.
"""

from __future__ import annotations

import logging
from typing import Any, Dict

from shipper.core import state as state_files
from shipper.core.config import Config
from shipper.notify.channels import send
from shipper.notify.event import COMPLETE, Event

log = logging.getLogger("shipper.notify")

STATE_FILE = state_files.NOTIFY


def load_state(cfg: Config) -> Dict[str, Any]:
    saved = state_files.notify_state(cfg.state)
    return saved if saved is not None else _seed_state(cfg)


def _seed_state(cfg: Config) -> Dict[str, Any]:
    """With no state yet, judge recovery by the last run's record (snapshot.record_run)."""
    record = state_files.last_run(cfg.state)
    if not record:
        return {}
    failed = record.status != COMPLETE
    return {
        "failing": failed,
        "failures": 1 if failed else 0,
        "last_error": record.error,
        "newest_complete": None if failed else record.set_id,
    }


def save_state(cfg: Config, state: Dict[str, Any]) -> None:
    path = cfg.state / STATE_FILE
    try:
        state_files.save_notify_state(cfg.state, state)
    except OSError as exc:
        log.warning("cannot save the notification state %s: %s", path, exc.strerror)
    send(cfg, Event("state", state=state))
