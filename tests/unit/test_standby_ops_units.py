"""A standby's services (a fake systemctl in PATH records the calls), its watches, gauges and estimate."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any, List

import pytest

from shipper.core import sets, state
from shipper.notify import metrics, watches
from shipper.notify.destination_status import DestinationView
from shipper.notify.event import Event
from shipper.slave.promote import estimate, services

FAKE_SYSTEMCTL = """#!/bin/sh
echo "$*" >> "{log}"
case "$*" in
  "cat -- missing.service") exit 1 ;;
  "disable --now -- stuck.service"|"enable --now -- stuck.service") exit 1 ;;
esac
exit 0
"""


@pytest.fixture
def systemctl(tmp_path: Path, monkeypatch) -> Path:
    """A systemctl in PATH that records its arguments, with systemd said to be running."""
    log = tmp_path / "systemctl.log"
    folder = tmp_path / "bin"
    folder.mkdir()
    fake = folder / "systemctl"
    fake.write_text(FAKE_SYSTEMCTL.format(log=log))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:/usr/bin:/bin")
    running = tmp_path / "run-systemd-system"
    running.mkdir()
    monkeypatch.setattr(services, "SYSTEMD_RUNNING", running)
    return log


def calls(log: Path) -> List[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_a_standby_stops_and_disables_the_services_it_has(systemctl: Path) -> None:
    said = services.hold(["app.service", "missing.service"], "/")
    assert calls(systemctl) == [
        "cat -- app.service",
        "cat -- missing.service",
        "disable --now -- app.service",
    ]
    assert said == "stopped and disabled: app.service; not on this server: missing.service"


def test_promote_enables_and_starts_them_after_a_daemon_reload(systemctl: Path) -> None:
    assert services.release(["app.service"], "/") == "enabled and started: app.service"
    assert calls(systemctl) == [
        "daemon-reload",
        "cat -- app.service",
        "enable --now -- app.service",
    ]


def test_a_unit_that_will_not_stop_is_named(systemctl: Path) -> None:
    with pytest.raises(services.ServiceFailed, match="stuck.service"):
        services.hold(["app.service", "stuck.service"], "/")
    with pytest.raises(services.ServiceFailed, match="stuck.service did not start"):
        services.release(["stuck.service"], "/")


def test_services_are_left_alone_under_another_root_or_without_systemd(
    systemctl: Path, tmp_path: Path, monkeypatch
) -> None:
    assert "left alone" in services.hold(["app.service"], "/srv/drill")
    monkeypatch.setattr(services, "SYSTEMD_RUNNING", tmp_path / "absent")
    assert "systemd is not running" in services.release(["app.service"], "/")
    assert "empty" in services.hold([], "/")
    assert calls(systemctl) == []


# ---------------------------------------------------------------- watches and gauges


def mails(events: List[Event]) -> List[str]:
    return [f"{e.name}: {e.subject}" for e in events if e.body is not None]


def view(name: str, age: float, error: Any = None) -> DestinationView:
    when = dt.datetime.fromtimestamp(time.time() - age, dt.timezone.utc)
    return DestinationView(name, "s3", newest=sets.new_set_id(when), error=error)


def test_a_stale_destination_is_told_once_and_its_recovery_once(make_config, told) -> None:
    cfg = make_config()
    now = time.time()
    watches.watch_destinations(cfg, [view("offsite", 100)], 3600, now)
    assert mails(told) == []
    watches.watch_destinations(cfg, [view("offsite", 7200)], 3600, now)
    watches.watch_destinations(cfg, [view("offsite", 7300)], 3600, now)
    assert mails(told) == ["failing: destination offsite is stale"]
    assert [e.about for e in told if e.body] == ["destination:offsite"]
    told.clear()
    # Unreachable: judged by the newest set it last showed, still stale, not news.
    down = DestinationView("offsite", "s3", error="connection refused")
    watches.watch_destinations(cfg, [down], 3600, now)
    assert mails(told) == []
    watches.watch_destinations(cfg, [view("offsite", 10)], 3600, now)
    assert mails(told) == ["recovery: destination offsite is up to date again"]


def test_destination_gauges_carry_the_destination_label(make_config, told) -> None:
    cfg = make_config()
    now = time.time()
    gone = DestinationView("cold", "local", error="no such folder")
    watches.watch_destinations(cfg, [view("offsite", 120), gone], 3600, now)
    text = metrics.metrics_text(cfg, told[-1].state or state.NotifyState(), at=now)
    assert 'shipper_destination_newest_set_age_seconds{destination="offsite"} 1' in text
    assert 'shipper_destination_reachable{destination="offsite"} 1' in text
    assert 'shipper_destination_newest_set_timestamp_seconds{destination="offsite"} 1' in text
    assert 'shipper_destination_reachable{destination="cold"} 0' in text
    assert 'shipper_destination_newest_set_age_seconds{destination="cold"}' not in text


def test_standby_failures_follow_the_snapshot_rules(make_config, told) -> None:
    cfg = make_config("notify:\n  repeat_after: 3600\n")
    watches.standby_failed(cfg, "apply of set 20261201T100000Z failed: disk full")
    watches.standby_failed(cfg, "apply of set 20261201T110000Z failed: disk full")
    assert mails(told) == ["failing: standby apply failed"]  # the same cause at the next set
    watches.standby_failed(cfg, "apply of set Y failed: read-only")
    assert len(mails(told)) == 2  # another error is news
    watches.standby_applied(cfg, state.StandbyRecord(set="Y", state=state.APPLIED))
    watches.standby_applied(cfg, state.StandbyRecord(set="Y", state=state.APPLIED))
    assert mails(told)[2:] == ["recovery: standby applies work again"]


# ---------------------------------------------------------------- the estimate


def test_the_estimate_is_unknown_without_a_measure_and_scaled_with_one(make_config) -> None:
    cfg = make_config()
    assert estimate._part("files", 10 << 20, 0, 0.0, "")[0] is None
    estimate.record(cfg.state, "apply of set A", (20 << 20, 2.0), (100, 1.0))
    speeds = state.speeds(cfg.state)
    assert speeds.files_bytes == 20 << 20 and speeds.load_seconds == 0.0  # 100 bytes say nothing
    seconds, text = estimate._part(
        "files", 50 << 20, speeds.files_bytes, speeds.files_seconds, speeds.files_from
    )
    assert seconds == pytest.approx(5.0) and "apply of set A" in text


def test_an_apply_whose_services_will_not_stop_changes_nothing_and_is_told(
    make_config, systemctl: Path, told
) -> None:
    from shipper.slave import standby

    cfg = make_config("standby: {enabled: true}\npromote: {services: [stuck.service]}\n")
    with pytest.raises(standby.ApplyFailed, match="nothing was changed"):
        standby.apply_newest(cfg, restic=None)  # type: ignore[arg-type]  # never reached
    assert calls(systemctl) == ["cat -- stuck.service", "disable --now -- stuck.service"]
    assert "stuck.service" in state.standby_record(cfg.state).error
    assert mails(told) == ["failing: standby apply failed"]
