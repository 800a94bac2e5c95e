"""Telling the operator: the notification state machine, its channels, and `status`.

state_machine.py is the state machine (a run's start and end, failing and
recovered, stale and fresh, the last check), watches.py the same rules for the
standby's applies and the copy destinations; both save through store.py and tell channels.py, which hands
each Event to every channel module (email, webhook, metrics). status.py builds
`shipper status` from the same state. The names below are the package's API.
"""

from shipper.notify.email import send_email
from shipper.notify.event import COMPLETE, FAILED, INTERRUPTED, PARTIAL, STATUSES, Event
from shipper.notify.metrics import metrics_text
from shipper.notify.state_machine import (
    finish,
    lifecycle,
    load_state,
    record_check,
    watch_staleness,
)
from shipper.notify.watches import check_destinations, standby_applied, standby_failed

__all__ = [
    "COMPLETE",
    "FAILED",
    "INTERRUPTED",
    "PARTIAL",
    "STATUSES",
    "Event",
    "check_destinations",
    "finish",
    "lifecycle",
    "load_state",
    "metrics_text",
    "record_check",
    "send_email",
    "standby_applied",
    "standby_failed",
    "watch_staleness",
]
