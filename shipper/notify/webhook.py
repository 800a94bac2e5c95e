"""The webhook channel: start, success and failure of a run, POSTed as JSON."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, Optional

from shipper import __version__
from shipper.core.config import Config
from shipper.notify.event import Event

log = logging.getLogger("shipper.notify")

WEBHOOK_TIMEOUT = 10


def enabled(cfg: Config) -> bool:
    settings = cfg.notify
    return bool(settings.webhook_start or settings.webhook_success or settings.webhook_failure)


def send(cfg: Config, event: Event) -> bool:
    """Run events (start, success, failure) go to their webhook URL, if one is configured;
    a watch's failing and recovery (the standby, a destination) to the failure and success URLs."""
    if event.about:
        url = cfg.notify.webhook_failure if event.name == "failing" else cfg.notify.webhook_success
        data = {**payload(cfg, event.name), "about": event.about, "subject": event.subject}
        return call_webhook(url, data)
    if event.outcome is None and event.name != "start":
        return False
    urls = {
        "start": cfg.notify.webhook_start,
        "success": cfg.notify.webhook_success,
        "failure": cfg.notify.webhook_failure,
    }
    if event.name not in urls:
        return False
    return call_webhook(urls[event.name], payload(cfg, event.name, event.outcome or None))


def call_webhook(url: Optional[str], payload: Dict[str, Any]) -> bool:
    """POST the event as JSON (healthchecks.io style URLs work as they are); never raises."""
    if not url:
        return False
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "User-Agent": f"shipper/{__version__}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT) as response:
            response.read(4096)
    except (OSError, ValueError, urllib.error.URLError) as exc:
        log.warning(
            "the %s webhook at %s failed: %s", payload.get("event"), _safe_url(url), _reason(exc)
        )
        return False
    return True


def _reason(exc: Exception) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    return str(getattr(exc, "reason", exc))


def _safe_url(url: str) -> str:
    """Scheme and host only: webhook paths and queries often hold tokens."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}" + (f":{parts.port}" if parts.port else "")


def payload(cfg: Config, event: str, outcome: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    data: Dict[str, Any] = {
        "event": event,
        "host": cfg.hostname,
        "role": cfg.role,
        "time": time.time(),
    }
    if outcome:
        data.update(
            status=outcome["status"],
            set=outcome["set"],
            error=outcome["error"],
            duration=round(outcome["duration"], 3),
            bytes_added=outcome["bytes_added"],
        )
    return data
