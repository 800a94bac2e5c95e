"""Run state: one atomic writer, root-only files, readers that never raise."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from shipper.core import sets, state


def test_files_are_written_whole_and_root_only(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    state.record_run(folder, {"set_id": "20261125T163000Z", "status": "complete"})
    written = folder / state.LAST_RUN
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert state.read_json(written) == {"set_id": "20261125T163000Z", "status": "complete"}
    assert [p.name for p in folder.iterdir()] == [state.LAST_RUN]  # no temporary left


def test_readers_of_missing_or_broken_files_get_nothing(tmp_path: Path) -> None:
    assert state.last_run(tmp_path) is None
    assert state.notify_state(tmp_path) is None
    assert state.receiver_state(tmp_path) == state.ReceiverState()
    (tmp_path / state.LAST_RUN).write_text("{half")
    assert state.last_run(tmp_path) is None
    (tmp_path / state.DAMAGE).write_text('{"checked": "x"}')
    assert state.load_damage(tmp_path) == state.Damage()


def test_last_set_id_must_be_a_set_id(tmp_path: Path) -> None:
    state.write_last_set_id(tmp_path, "20261125T163000Z")
    assert state.last_set_id(tmp_path) == "20261125T163000Z"
    (tmp_path / state.LAST_SET_ID).write_text("garbage\n")
    assert state.last_set_id(tmp_path) is None


def test_damage_round_trip_and_why(tmp_path: Path) -> None:
    damage = state.Damage("2026-11-25 16:30 UTC", ["a" * 64, "b" * 64], ["20261125T163000Z"])
    state.save_damage(tmp_path, damage)
    loaded = state.load_damage(tmp_path)
    assert loaded == damage
    hit = sets.SnapshotSet("20261125T163000Z")
    assert "damaged pack(s) aaaaaaaaaaaa, bbbbbbbbbbbb" in loaded.why(hit)
    assert loaded.why(sets.SnapshotSet("20261125T170000Z")) == ""


def test_a_heartbeat_counts_only_while_its_daemon_lives(tmp_path: Path) -> None:
    beat = state.Heartbeat(os.getpid(), "2026-11-25T16:30:00", "master", True, "* * * * *", None)
    state.write_heartbeat(tmp_path, beat)
    # This process is pytest, not a daemon: the heartbeat is a leftover.
    assert state.read_heartbeat(tmp_path) is None
    assert state.read_json(tmp_path / state.HEARTBEAT)["schedule"] == "* * * * *"
    state.clear_heartbeat(tmp_path)
    state.clear_heartbeat(tmp_path)  # twice is fine
    assert not (tmp_path / state.HEARTBEAT).exists()


def test_the_last_run_and_the_status_cache_read_back_typed(tmp_path: Path) -> None:
    state.record_run(tmp_path, {"set_id": "20261125T163000Z", "status": "partial", "error": "x"})
    run = state.last_run(tmp_path)
    assert run is not None and (run.set_id, run.status, run.error) == (
        "20261125T163000Z",
        "partial",
        "x",
    )
    cache = state.StatusCache("/srv/repo", [1, 2], 1000.0, {"location": "/srv/repo"})
    state.save_status_cache(tmp_path, cache)
    assert state.status_cache(tmp_path) == cache
    (tmp_path / state.STATUS_CACHE).write_text("[]")
    assert state.status_cache(tmp_path) is None


def test_the_receiver_state_round_trips_and_keeps_its_keys(tmp_path: Path) -> None:
    written = state.ReceiverState(manager="process", pid=4242, log="/var/lib/shipper/receiver.log")
    state.save_receiver_state(tmp_path, written)
    assert state.receiver_state(tmp_path) == written
    on_disk = state.read_json(tmp_path / state.RECEIVER)
    assert on_disk == {"manager": "process", "pid": 4242, "log": "/var/lib/shipper/receiver.log"}
    (tmp_path / state.RECEIVER).write_text('{"manager": "systemd", "pid": "not a pid"}')
    assert state.receiver_state(tmp_path) == state.ReceiverState(manager="systemd")
