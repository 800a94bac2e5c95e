"""What the notification state machine tells the channels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

from shipper.core.state import NotifyState

COMPLETE = "complete"
PARTIAL = "partial"
FAILED = "failed"
INTERRUPTED = "interrupted"
STATUSES = (COMPLETE, PARTIAL, FAILED, INTERRUPTED)


@dataclass
class Event:
    """One thing to tell: a run's start or end (outcome), an email (subject and body),
    or a new notification state (for the metrics file). A channel takes what it can use."""

    name: str  # start, success, failure, failing, recovery, stale, fresh, check, state
    outcome: Optional[Dict[str, Any]] = None
    subject: str = ""
    body: Optional[str] = None
    state: Optional[NotifyState] = None
    about: str = (
        ""  # failing and recovery of a watch (notify/watches.py): "standby", "destination:NAME"
    )
