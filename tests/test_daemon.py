"""`shipper daemon`: sets on the schedule, one at a time, with real restic repositories.

The scheduling tests give the daemon a hidden --schedule with croniter's
seconds field so they take seconds; the end-to-end test runs the config's
own `* * * * *` and therefore costs about a minute and a half.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import List

import pytest
from croniter import croniter

from tests.shipperenv import RestServer, ShipperEnv
from tests.sinks import SmtpSink, WebhookSink, email_text, notify_settings

OK, WARNING, CRITICAL = 0, 1, 2


class Daemon:
    """`shipper daemon` as a subprocess, its log in a file."""

    def __init__(self, env: ShipperEnv, *args: str, name: str = "daemon"):
        self.env = env
        self.log_path = env.base / f"{name}.log"
        self.log_file = open(self.log_path, "w")  # noqa: SIM115 (open while the daemon runs)
        self.process = env.popen("daemon", *args, stdout=self.log_file, stderr=subprocess.STDOUT)

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def wait_log(self, pattern: str, timeout: float = 30, count: int = 1) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.findall(pattern, self.log)
            if len(found) >= count:
                return found[count - 1]
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(
            f"no {pattern!r} (x{count}) in the daemon's log within {timeout}s:\n{self.log}"
        )

    def stop(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self.log_file.close()


@pytest.fixture
def daemons():
    started: List[Daemon] = []
    yield started
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait()
        daemon.log_file.close()


def _set_ids(env: ShipperEnv) -> List[str]:
    return [s["id"] for s in json.loads(env.run("sets", "--json", check=True).stdout)]


def _set_statuses(env: ShipperEnv) -> List[str]:
    return [s["status"] for s in json.loads(env.run("sets", "--json", check=True).stdout)]


def _hook(env: ShipperEnv, script: str) -> None:
    hook = env.hooks / "pre-snapshot.d" / "10-slow"
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text("#!/bin/sh\n" + script + "\n")
    hook.chmod(0o755)


def test_missed_slots_after_downtime_run_once(shipper_env: ShipperEnv, daemons) -> None:
    env = shipper_env
    now = dt.datetime.now().astimezone()
    minute = (now.minute + 30) % 60  # the next regular slot is half an hour away
    env.write_config(schedule=f"{minute} * * * *")
    (env.src / "a").write_text("a\n")
    env.run("init", check=True)
    # The daemon's only memory across downtime is the last run's record.
    down_since = now - dt.timedelta(hours=5)
    env.state.mkdir(parents=True, exist_ok=True)
    (env.state / "last-run.json").write_text(
        json.dumps({"started": down_since.isoformat(), "status": "complete"})
    )
    expected_missed = 0
    it = croniter(f"{minute} * * * *", down_since)
    while it.get_next(dt.datetime) <= now:
        expected_missed += 1

    daemon = Daemon(env, "--check-interval", "0.5")
    daemons.append(daemon)
    daemon.wait_log(r"set done")
    assert f"{expected_missed} slots passed (" in daemon.log and "since the last run" in daemon.log
    assert "while the daemon was not running; taking one set now" in daemon.log
    time.sleep(2)
    assert len(_set_ids(env)) == 1, "missed slots run once, not once each"
    beat = json.loads((env.state / "daemon.json").read_text())
    assert beat["pid"] == daemon.process.pid
    next_run = dt.datetime.fromisoformat(beat["next_run"])
    assert dt.timedelta(minutes=25) < next_run - now <= dt.timedelta(minutes=31)
    assert daemon.stop() == 0
    assert "stopped" in daemon.log
    assert not (env.state / "daemon.json").exists()


def test_overrun_pause_and_graceful_stop(shipper_env: ShipperEnv, daemons) -> None:
    env = shipper_env
    (env.src / "a").write_text("a\n")
    _hook(env, "sleep 1.5")
    env.run("init", check=True)
    daemon = Daemon(env, "--schedule", "* * * * * */2", "--check-interval", "0.3")
    daemons.append(daemon)
    daemon.wait_log(r"outlasted its slot", timeout=40)
    daemon.wait_log(r"set done", count=2, timeout=20)
    assert re.search(
        r"the previous set ran \d+s and outlasted its slot: (the [0-9:]+ slot passed|\d+ slots passed "
        r"\([0-9:]+ to [0-9:]+\)) meanwhile; taking one set now, \d+s after the first of them",
        daemon.log,
    ), daemon.log
    assert "another shipper run holds the lock" not in daemon.log
    times = sorted(dt.datetime.strptime(i, "%Y%m%dT%H%M%SZ") for i in _set_ids(env))
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
    assert gaps and min(gaps) >= 1.5, f"sets overlapped: {gaps}"

    # `enabled: false` pauses the daemon without a restart; true resumes it.
    env.write_config(enabled=False)
    daemon.wait_log(r"disabled \(enabled: false\)", timeout=15)  # logged between sets
    paused = len(_set_ids(env))
    time.sleep(2.5)
    assert len(_set_ids(env)) == paused, "a disabled daemon took a set"
    env.write_config(enabled=True)
    daemon.wait_log(r"enabled: taking sets on the schedule", count=2, timeout=15)

    # SIGTERM during a set: the set finishes, then the daemon exits.
    before = daemon.log.count("taking the set for")
    daemon.wait_log(r"taking the set for", count=before + 1, timeout=15)
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(30) == 0
    log = daemon.log
    assert "letting the running set finish" in log
    assert log.rstrip().endswith("stopped")
    assert log.count("set done") == log.count("taking the set for")
    assert set(_set_statuses(env)) == {"complete"}


def _restic_pids(repo: Path) -> List[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and cmdline[0].endswith(b"restic") and str(repo).encode() in cmdline:
            pids.append(int(entry))
    return pids


def test_stop_interrupts_a_long_set_safely(shipper_env: ShipperEnv, daemons) -> None:
    env = shipper_env
    (env.src / "small").write_text("small\n")
    env.run("init", check=True)
    env.run("snapshot", check=True)
    with open(env.src / "big.bin", "wb") as handle:
        handle.write(os.urandom(150 * 1024 * 1024))
    daemon = Daemon(
        env, "--schedule", "* * * * * */1", "--check-interval", "0.2", "--stop-grace", "0.2"
    )
    daemons.append(daemon)
    daemon.wait_log(r"taking the set for")
    deadline = time.monotonic() + 20
    while not _restic_pids(env.repo):
        assert time.monotonic() < deadline, "restic never started"
        time.sleep(0.05)
    time.sleep(0.3)
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(40) == 0
    log = daemon.log
    assert "interrupting the running set" in log and "set interrupted" in log, log
    time.sleep(0.5)
    assert _restic_pids(env.repo) == [], "restic outlived the daemon"
    assert list((env.repo / "locks").iterdir()) == [], "restic left its lock behind"
    assert len(_set_ids(env)) == 1, "an interrupted set must not be committed"
    env.restic("check")


@pytest.mark.slow
def test_sets_arrive_on_schedule_and_staleness_is_reported(
    tmp_path: Path,
    shipper_env: ShipperEnv,
    rest_server: RestServer,
    smtp_sink: SmtpSink,
    webhook_sink: WebhookSink,
    daemons,
) -> None:
    """The story of the issue: a master's daemon on `* * * * *` feeds the slave; stopped, the
    slave's status goes WARNING then CRITICAL and its daemon emails; a stopped receiver fails
    the master's run with a clear error and an email; the next good run is a recovery."""
    master = shipper_env
    master.write_config(
        schedule="* * * * *",
        repository={"url": rest_server.url + "master/"},
        notify=notify_settings(smtp_sink, webhook_sink, max_age=60),
    )
    (master.src / "a").write_text("a\n")
    master.run("init", check=True)

    slave = ShipperEnv(tmp_path / "slave")
    slave.write_config(
        role="slave",
        schedule="* * * * *",
        repository={
            "url": rest_server.url + "master/",
            "local_path": str(rest_server.data / "master"),
        },
        receiver={"listen": f"127.0.0.1:{rest_server.port}", "repo_dir": str(rest_server.data)},
        notify={"smtp_host": smtp_sink.address, "email_to": ["ops@example.test"], "max_age": 60},
    )
    slave_daemon = Daemon(slave, "--check-interval", "1", name="slave-daemon")
    daemons.append(slave_daemon)
    master_daemon = Daemon(master, name="master-daemon")
    daemons.append(master_daemon)

    # The first set comes at the next minute, on the minute.
    master_daemon.wait_log(r"set done", timeout=75)
    first = _set_ids(master)
    assert len(first) == 1
    assert dt.datetime.strptime(first[0], "%Y%m%dT%H%M%SZ").second < 5, first
    status = master.run("status")
    assert status.returncode == OK, status.stdout
    assert slave.run("status").returncode == OK
    assert smtp_sink.messages == [], smtp_sink.subjects()
    assert master_daemon.stop() == 0

    # The receiver stops: a manual run fails at once, says why, and an email goes out.
    rest_server.stop()
    failed = master.run("snapshot")
    assert failed.returncode == 1 and "cannot reach the receiver" in failed.stderr
    assert "cannot reach the receiver" in email_text(smtp_sink.wait_for("snapshot failed"))
    assert "cannot reach the receiver" in webhook_sink.wait_for("/ping/fail")["body"]["error"]
    rest_server.start()

    # No more sets arrive: the slave's status goes WARNING, then CRITICAL, and its daemon emails.
    set_time = dt.datetime.strptime(first[0] + "+0000", "%Y%m%dT%H%M%SZ%z").timestamp()
    levels = []
    while time.time() - set_time < 64:
        levels.append(slave.run("status").returncode)
        time.sleep(2)
    levels.append(slave.run("status").returncode)
    assert levels[0] == OK and levels[-1] == CRITICAL, levels
    assert WARNING in levels and levels.index(WARNING) < levels.index(CRITICAL), levels
    stale = smtp_sink.wait_for("the spare is stale", timeout=15)
    assert "newest complete set is 1m" in email_text(stale)

    # The next good run is a recovery, and the slave sees its spare fresh again.
    master.run("snapshot", check=True)
    assert "snapshots work again" in str(smtp_sink.wait_for("snapshots work again")["Subject"])
    assert webhook_sink.calls[-1]["path"] == "/ping/success"
    smtp_sink.wait_for("up to date again", timeout=15)
    assert slave.run("status").returncode == OK
    assert slave_daemon.stop() == 0
    assert "taking the set" not in slave_daemon.log, "a slave's daemon takes no sets"
