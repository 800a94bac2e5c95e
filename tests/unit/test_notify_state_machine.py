"""The notification state machine: which events go out, and what it remembers."""

from __future__ import annotations

from typing import List

import pytest

from shipper.core.state import NotifyState
from shipper.notify import channels, state_machine
from shipper.notify.event import Event


def outcome(status: str, error: str = "", set_id: str = "20261125T163000Z") -> dict:
    return {
        "status": status,
        "error": error,
        "set": set_id,
        "started": 1000.0,
        "ended": 1010.0,
        "duration": 10.0,
        "bytes_added": 5,
    }


def names(events: List[Event]) -> List[str]:
    return [e.name for e in events]


def test_failure_repeat_then_recovery(make_config, told) -> None:
    cfg = make_config()
    state_machine.finish(cfg, outcome("failed", "disk full"))
    assert names(told) == ["failure", "failing", "state"]
    assert told[1].subject == "snapshot failed" and "disk full" in (told[1].body or "")

    told.clear()
    state_machine.finish(cfg, outcome("failed", "disk full"))
    assert names(told) == ["failure", "state"]  # the same error is not emailed again
    assert told[-1].state is not None and told[-1].state.failures == 2

    told.clear()
    state_machine.finish(cfg, outcome("complete"))
    assert names(told) == ["success", "recovery", "state"]
    saved = state_machine.load_state(cfg)
    assert saved.failing is False and saved.newest_complete == "20261125T163000Z"


def test_an_interrupted_run_is_remembered_but_not_a_failure(make_config, told) -> None:
    cfg = make_config()
    state_machine.finish(cfg, outcome("interrupted", "interrupted"))
    assert names(told) == ["failure", "state"]
    assert not state_machine.load_state(cfg).failing


def test_a_lifecycle_tells_start_and_end(make_config, told) -> None:
    cfg = make_config()
    with pytest.raises(RuntimeError), state_machine.lifecycle(cfg):
        raise RuntimeError("restic exploded")
    assert names(told)[:2] == ["start", "failure"]
    assert told[1].outcome["error"] == "restic exploded"


def test_stale_and_fresh_again(make_config, told) -> None:
    import datetime as dt

    cfg = make_config()
    now = dt.datetime.now(dt.timezone.utc)
    assert state_machine.watch_staleness(cfg, now - dt.timedelta(seconds=300), 120)
    assert names(told) == ["stale", "state"]
    told.clear()
    assert not state_machine.watch_staleness(cfg, now, 120)
    assert names(told) == ["fresh", "state"]


def test_every_channel_takes_only_what_it_can_use(make_config, monkeypatch) -> None:
    from shipper.notify import email, metrics, webhook

    cfg = make_config()
    assert not email.send(cfg, Event("state", state=NotifyState()))
    assert not webhook.send(cfg, Event("recovery", subject="s", body="b"))
    assert not metrics.send(cfg, Event("state", state=NotifyState()))  # no metrics_file configured
    assert list(channels.CHANNELS) == ["webhook", "email", "metrics"]
