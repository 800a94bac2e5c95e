"""The fast tier: pure logic, no servers, no restic; the whole folder runs in seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, List

import pytest

from shipper.core import config
from shipper.notify import channels
from shipper.notify.event import Event

MINIMAL = "repository:\n  url: /srv/repo\n"


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Any]:
    """A parsed config with its state folder under tmp_path; extra YAML appended."""

    def make(extra: str = "") -> config.Config:
        text = MINIMAL + f"state_dir: {tmp_path / 'state'}\n" + extra
        return config.parse(text, "unit.yml")

    return make


class Recorder:
    """A notification channel that keeps what it was sent."""

    def __init__(self) -> None:
        self.events: List[Event] = []

    def enabled(self, cfg: Any) -> bool:
        return True

    def send(self, cfg: Any, event: Event) -> bool:
        self.events.append(event)
        return True


@pytest.fixture
def told(monkeypatch: pytest.MonkeyPatch) -> List[Event]:
    """The events sent while the test runs, instead of the configured channels."""
    recorder = Recorder()
    monkeypatch.setattr(channels, "CHANNELS", {"recorder": recorder})
    return recorder.events
