"""The notification state's file (notify.json): what earlier versions wrote still reads."""

from __future__ import annotations

import json

from shipper.core import state
from shipper.core.state import LastCheck, NotifyState, SeenDestination, Watch
from shipper.notify import store

# Every key the dict-based notification state ever wrote, at the top and in its entries.
OLD_KEYS = {
    "last_run",
    "failing",
    "failures",
    "failing_since",
    "failure_emailed",
    "last_error",
    "last_success",
    "newest_complete",
    "newest_set_time",
    "max_age",
    "max_age_for",
    "stale",
    "stale_since",
    "stale_emailed",
    "last_check",
    "watches",
    "destinations",
    "destinations_checked",
}
OLD_WATCH_KEYS = {"failing", "since", "count", "emailed", "error", "cause"}
OLD_DESTINATION_KEYS = {"reachable", "newest_set_time"}

RUN = {
    "status": "failed",
    "error": "disk full",
    "set": None,
    "started": 1000.0,
    "ended": 1010.0,
    "duration": 10.0,
    "bytes_added": 0,
}


def write(cfg, data) -> None:
    cfg.state.mkdir(parents=True, exist_ok=True)
    (cfg.state / state.NOTIFY).write_text(json.dumps(data))


def test_an_old_file_with_extra_missing_and_wrong_typed_keys_loads(make_config) -> None:
    cfg = make_config()
    write(
        cfg,
        {
            "failing": True,
            "failures": "3",  # wrong type: the default
            "failing_since": 1000,  # an integer is a time all the same
            "last_error": "disk full",
            "last_run": RUN,
            "max_age": True,  # wrong type: JSON's true is no number
            "last_check": {"at": 1005.0, "ok": True},
            "watches": {
                "standby": {"failing": True, "since": 1000.0, "count": 2, "error": "x"},
                "destination:gone": "not an entry",
            },
            "destinations": {"offsite": {"reachable": False, "newest_set_time": 1767225600.0}},
            "a_key_from_another_version": 1,
        },
    )
    assert store.load_state(cfg) == NotifyState(
        failing=True,
        failing_since=1000,
        last_error="disk full",
        last_run=RUN,
        last_check=LastCheck(at=1005.0, ok=True),
        watches={"standby": Watch(failing=True, since=1000.0, count=2, error="x")},
        destinations={"offsite": SeenDestination(reachable=False, newest_set_time=1767225600.0)},
    )


def test_no_file_or_no_object_gives_the_seeded_state(make_config) -> None:
    cfg = make_config()
    assert store.load_state(cfg) == NotifyState()
    state.record_run(cfg.state, {"set_id": None, "status": "failed", "error": None})
    assert store.load_state(cfg) == NotifyState(failing=True, failures=1, last_error="")
    write(cfg, ["not", "an", "object"])
    assert store.load_state(cfg) == NotifyState(failing=True, failures=1, last_error="")


def test_a_saved_state_reads_back_the_same_with_the_old_keys(make_config) -> None:
    cfg = make_config()
    saved = NotifyState(
        failing=True,
        failures=2,
        failing_since=1000.0,
        failure_emailed=1010.0,
        last_error="disk full",
        last_run=RUN,
        newest_complete="20261125T163000Z",
        newest_set_time=1795624200.0,
        max_age=2700,
        max_age_for="*/15 * * * *|None",
        stale=True,
        stale_since=1020.0,
        last_check=LastCheck(at=1005.0, ok=False),
        watches={"standby": Watch(True, 1000.0, 1, 1000.0, "x", "x"), "destination:a": Watch()},
        destinations={"a": SeenDestination(True, 1795624200.0)},
        destinations_checked=1030.0,
    )
    state.save_notify_state(cfg.state, saved)
    assert state.notify_state(cfg.state) == saved
    written = json.loads((cfg.state / state.NOTIFY).read_text())
    assert set(written) == OLD_KEYS
    assert all(set(entry) == OLD_WATCH_KEYS for entry in written["watches"].values())
    assert set(written["destinations"]["a"]) == OLD_DESTINATION_KEYS
    assert written["last_check"] == {"at": 1005.0, "ok": False}
    assert written["last_run"] == RUN
