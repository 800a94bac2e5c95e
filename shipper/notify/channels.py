"""The notification channels, one module each behind `send(cfg, event)`.

To add a channel: a module with `enabled(cfg)` and `send(cfg, event) -> bool`
(which never raises: a channel that is down must not fail a run), its settings
under `notify:` in core/schema.yaml, and one line in CHANNELS.
"""

from __future__ import annotations

from shipper.core.config import Config
from shipper.notify import email, metrics, webhook
from shipper.notify.event import Event

# In the order they are told.
CHANNELS = {
    "webhook": webhook,
    "email": email,
    "metrics": metrics,
}


def send(cfg: Config, event: Event) -> None:
    """Hand the event to every configured channel; each takes what it can use."""
    for channel in CHANNELS.values():
        if channel.enabled(cfg):
            channel.send(cfg, event)
