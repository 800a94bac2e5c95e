"""`shipper daemon`: sets on the schedule, one at a time, with real restic repositories.

The scheduling tests give the daemon a hidden --schedule with croniter's
seconds field so they take seconds, the end-to-end story too (every 10
seconds, not up to a minute's wait for `* * * * *`). The daemon's own
reading of the config's five-field schedule is
test_missed_slots_after_downtime_run_once (no --schedule, its next slot half
an hour away, checked in the heartbeat).
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

from tests.seaweed import SeaweedFS
from tests.shipperenv import RestServer, ShipperEnv
from tests.sinks import SmtpSink, WebhookSink, email_text, notify_settings
from tests.test_destinations import offsite

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
    # Big enough that restic is still reading it when the stop comes (a few seconds).
    with open(env.src / "big.bin", "wb") as handle:
        for _ in range(8):
            handle.write(os.urandom(64 * 1024 * 1024))
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


def _slave_env(tmp_path: Path, server: RestServer, smtp: SmtpSink) -> ShipperEnv:
    slave = ShipperEnv(tmp_path / "slave")
    slave.write_config(
        role="slave",
        repository={"url": server.url + "master/", "local_path": str(server.data / "master")},
        receiver={"listen": f"127.0.0.1:{server.port}", "repo_dir": str(server.data)},
        notify={"smtp_host": smtp.address, "email_to": ["ops@example.test"], "max_age": 60},
    )
    return slave


def test_the_slave_daemon_emails_a_stale_spare_and_takes_no_sets(
    tmp_path: Path, shipper_env: ShipperEnv, rest_server: RestServer, smtp_sink: SmtpSink, daemons
) -> None:
    master = shipper_env
    master.write_config(repository={"url": rest_server.url + "master/"})
    (master.src / "a").write_text("a\n")
    master.run("init", check=True)
    # A complete set from two hours ago, written with plain restic and shipper's tags.
    old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2)
    set_id = old.strftime("%Y%m%dT%H%M%SZ")
    tags = [f"shipper-set:{set_id}", "shipper-part:files", "shipper-part:manifest"]
    tags.append("shipper-status:complete")
    master.restic(
        "backup",
        *[arg for tag in tags for arg in ("--tag", tag)],
        "--time",
        old.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
        str(master.src),
        repo=str(rest_server.data / "master"),
    )
    slave = _slave_env(tmp_path, rest_server, smtp_sink)
    daemon = Daemon(slave, "--check-interval", "0.5", name="slave-daemon")
    daemons.append(daemon)
    stale = smtp_sink.wait_for("the spare is stale")
    assert "newest set 2h 00m old" in str(stale["Subject"])
    assert "shipper-receiver.service" in email_text(stale)
    time.sleep(1.5)
    assert len(smtp_sink.messages) == 1, smtp_sink.subjects()

    master.run("snapshot", check=True)
    smtp_sink.wait_for("the spare is up to date again")
    assert daemon.stop() == 0
    assert "on a slave: taking no sets" in daemon.log
    assert "taking the set" not in daemon.log
    assert len(_set_ids(master)) == 2


def test_the_slave_daemon_pulls_each_new_set_to_its_bucket_once(
    tmp_path: Path,
    shipper_env: ShipperEnv,
    rest_server: RestServer,
    smtp_sink: SmtpSink,
    seaweedfs: SeaweedFS,
    daemons,
) -> None:
    """Pull: the bucket is in the slave's config only; its daemon copies each set that
    lands from its local copy, once, without a timer and without the master's help."""
    master = shipper_env
    master.write_config(repository={"url": rest_server.url + "master/"})
    (master.src / "a").write_text("a\n")
    master.run("init", check=True)
    master.run("snapshot", check=True)
    slave = _slave_env(tmp_path, rest_server, smtp_sink)
    bucket = seaweedfs.new_bucket()
    slave.write_config(destinations=[offsite(seaweedfs, slave.base / "creds", bucket)])
    assert "destinations" not in master.config_path.read_text()
    daemon = Daemon(slave, "--check-interval", "0.5", name="slave-daemon")
    daemons.append(daemon)
    first = _set_ids(master)[0]
    daemon.wait_log(rf"copy: set {first} copied to every destination", timeout=60)

    (master.src / "b").write_text("b\n")
    master.run("snapshot", check=True)
    second = _set_ids(master)[0]
    daemon.wait_log(rf"copy: set {second} copied to every destination", timeout=60)
    time.sleep(2)  # a few more loops: nothing new, nothing copied again
    assert daemon.stop() == 0
    assert daemon.log.count("copy: copying set") == 2, daemon.log
    in_bucket = slave.run("sets", "--json", "--destination", "offsite", check=True)
    assert [s["id"] for s in json.loads(in_bucket.stdout)] == [second, first]


@pytest.mark.slow
def test_sets_arrive_on_schedule_and_the_spare_ages_when_they_stop(
    tmp_path: Path,
    shipper_env: ShipperEnv,
    rest_server: RestServer,
    smtp_sink: SmtpSink,
    webhook_sink: WebhookSink,
    daemons,
) -> None:
    """The story of the issue: a master's daemon on a schedule feeds the slave; stopped, the
    slave's status goes WARNING then CRITICAL as the newest set ages; a stopped receiver fails
    the master's run with a clear error and an email; the next good run is a recovery."""
    master = shipper_env
    master.write_config(
        schedule="* * * * *",
        repository={"url": rest_server.url + "master/"},
        notify=notify_settings(smtp_sink, webhook_sink),
    )
    (master.src / "a").write_text("a\n")
    master.run("init", check=True)
    slave = _slave_env(tmp_path, rest_server, smtp_sink)
    master_daemon = Daemon(master, "--schedule", "* * * * * */10", name="master-daemon")
    daemons.append(master_daemon)

    # The first set comes at the next slot, on the slot.
    master_daemon.wait_log(r"set done", timeout=30)
    first = _set_ids(master)
    assert len(first) == 1
    assert dt.datetime.strptime(first[0], "%Y%m%dT%H%M%SZ").second % 10 < 5, first
    assert webhook_sink.paths() == ["/ping/start", "/ping/success"]
    status = master.run("status")
    assert status.returncode == OK, status.stdout
    assert slave.run("status").returncode == OK
    assert master_daemon.stop() == 0
    assert "stopped" in master_daemon.log

    # No more sets: the slave's status goes WARNING, then CRITICAL (thresholds from now, to be quick).
    age = json.loads(slave.run("status", "--json").stdout)["newest_complete"]["age"]
    limits = (f"--warning={age + 2}", f"--critical={age + 4}")
    assert slave.run("status", *limits).returncode == OK
    time.sleep(2.5)
    warning = slave.run("status", *limits)
    assert warning.returncode == WARNING and warning.stdout.startswith(
        "SHIPPER WARNING: the newest"
    )
    time.sleep(2)
    critical = slave.run("status", *limits)
    assert critical.returncode == CRITICAL and "the spare is stale" in critical.stdout

    # The receiver stops: a run fails at once, says why, and an email and a webhook go out.
    rest_server.stop()
    clock = time.monotonic()
    failed = master.run("snapshot")
    assert failed.returncode == 1 and "cannot reach the receiver" in failed.stderr
    assert time.monotonic() - clock < 20
    assert "cannot reach the receiver" in email_text(smtp_sink.wait_for("snapshot failed"))
    assert "cannot reach the receiver" in webhook_sink.wait_for("/ping/fail")["body"]["error"]
    down = slave.run("status")
    assert down.returncode == CRITICAL and "receiver does not answer" in down.stdout

    # Back up: the next good run is a recovery, and the slave is OK again.
    rest_server.start()
    master.run("snapshot", check=True)
    smtp_sink.wait_for("snapshots work again")
    assert webhook_sink.calls[-1]["path"] == "/ping/success"
    assert slave.run("status").returncode == OK
