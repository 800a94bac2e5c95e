"""`shipper status` and `shipper check` against real repositories, receivers and daemons."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Dict

from tests.shipperenv import VENV_BIN, RestServer, ShipperEnv, wait_for_port
from tests.sinks import SmtpSink, email_text

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3


def _status(
    env: ShipperEnv, *args: str, extra_env: Dict[str, str] = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "shipper"), "status", *args],
        env={**env.env(), **(extra_env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _json(env: ShipperEnv, *args: str) -> Dict[str, Any]:
    result = _status(env, "--json", *args)
    data = json.loads(result.stdout)
    assert data["exit_code"] == result.returncode
    return data


def _slave(tmp_path: Path, server: RestServer) -> ShipperEnv:
    slave = ShipperEnv(tmp_path / "slave")
    slave.write_config(
        role="slave",
        repository={"url": server.url + "master/", "local_path": str(server.data / "master")},
        receiver={"listen": f"127.0.0.1:{server.port}", "repo_dir": str(server.data)},
    )
    return slave


def test_slave_status_reads_local_disk_and_the_receiver(
    tmp_path: Path, shipper_env: ShipperEnv, rest_server: RestServer
) -> None:
    master = shipper_env
    master.write_config(repository={"url": rest_server.url + "master/"})
    (master.src / "a").write_text("a\n")
    master.run("init", check=True)
    master.run("snapshot", check=True)
    slave = _slave(tmp_path, rest_server)

    result = _status(slave)
    assert result.returncode == OK, result.stdout + result.stderr
    assert result.stdout.startswith("SHIPPER OK: newest complete set ")
    assert "shipper-receiver.service answers" in result.stdout
    data = _json(slave)
    assert data["role"] == "slave" and data["receiver"]["answers"]
    assert data["repository"]["sets"] == 1 and data["repository"]["complete_sets"] == 1
    assert data["repository"]["size"] > 0
    assert data["max_age"] == 3 * 15 * 60, "max_age defaults to three intervals of the schedule"

    # The view is cached until snapshots/ changes: no restic process while nothing arrived.
    broken_restic = {"SHIPPER_RESTIC": str(tmp_path / "no-such-restic")}
    assert _status(slave, extra_env=broken_restic).returncode == OK
    master.run("snapshot", check=True)
    stale_cache = _status(slave, extra_env=broken_restic)
    assert (
        stale_cache.returncode == CRITICAL
        and "cannot read the local repository" in stale_cache.stdout
    )
    assert _json(slave)["repository"]["sets"] == 2

    # WARNING then CRITICAL as the newest set ages (thresholds from now, to be quick).
    age = _json(slave)["newest_complete"]["age"]
    warn, crit = age + 2, age + 4
    assert _status(slave, f"--warning={warn}", f"--critical={crit}").returncode == OK
    time.sleep(2.5)
    aging = _status(slave, f"--warning={warn}", f"--critical={crit}")
    assert aging.returncode == WARNING, aging.stdout
    assert "SHIPPER WARNING: the newest complete set" in aging.stdout
    time.sleep(2)
    stale = _status(slave, f"--warning={warn}", f"--critical={crit}")
    assert stale.returncode == CRITICAL and "the spare is stale" in stale.stdout

    rest_server.stop()
    down = _status(slave)
    assert down.returncode == CRITICAL
    assert (
        "receiver does not answer" in down.stdout
        and "systemctl start shipper-receiver.service" in down.stdout
    )


def test_master_status_names_what_is_wrong(shipper_env: ShipperEnv) -> None:
    env = shipper_env
    env.write_config(schedule="0 0 1 1 *")  # the daemon's next slot is far away
    env.run("init", check=True)
    empty = _json(env)
    assert empty["status"] == "CRITICAL"
    assert any("no complete set" in p["text"] for p in empty["problems"])

    (env.src / "a").write_text("a\n")
    env.run("snapshot", check=True)
    no_daemon = _status(env)
    assert no_daemon.returncode == WARNING
    assert "the daemon is not running" in no_daemon.stdout and "shipper.service" in no_daemon.stdout

    daemon = env.popen("daemon", "--check-interval", "0.2", stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not (env.state / "daemon.json").exists():
            time.sleep(0.1)
        running = _status(env)
        assert running.returncode == OK, running.stdout
        assert f"daemon:      running (pid {daemon.pid})" in running.stdout
        assert "next run 2027-01-01" in running.stdout or "next run" in running.stdout

        env.write_config(enabled=False)
        paused = _status(env)
        assert paused.returncode == WARNING and "disabled" in paused.stdout
        env.write_config(enabled=True)

        os.chmod(env.password_file, 0o644)
        assert env.run("snapshot").returncode == 1
        os.chmod(env.password_file, 0o600)
        failed = _json(env)
        assert failed["status"] == "WARNING"
        assert failed["last_run"]["status"] == "failed"
        assert "readable by others" in failed["last_run"]["error"]
    finally:
        daemon.terminate()
        daemon.wait(30)

    env.config_path.write_text("repository: {url: /x}\nshedule: oops\n")
    broken = _status(env)
    assert broken.returncode == UNKNOWN and broken.stdout.startswith("SHIPPER UNKNOWN:")


def test_check_finds_damage_and_emails_it(shipper_env: ShipperEnv, smtp_sink: SmtpSink) -> None:
    env = shipper_env
    env.write_config(
        notify={"smtp_host": smtp_sink.address, "email_to": ["ops@example.test"]},
        check={"read_data_subset": "100%"},
    )
    env.make_dataset(files=20, mib=1)
    env.run("init", check=True)
    env.run("snapshot", check=True)
    good = env.run("check")
    assert good.returncode == 0 and "no problems found, read back 100% of the data" in good.stdout

    packs = sorted(p for p in (env.repo / "data").rglob("*") if p.is_file())
    victim = max(packs, key=lambda p: p.stat().st_size)
    os.chmod(victim, 0o600)
    with open(victim, "r+b") as handle:
        handle.seek(victim.stat().st_size // 2)
        handle.write(b"bit rot" * 8)
    bad = env.run("check")
    assert bad.returncode == 1
    assert "has problems" in bad.stderr and victim.name[:8] in bad.stderr
    assert "Traceback" not in bad.stderr
    message = smtp_sink.wait_for("the repository check found problems")
    assert victim.name[:8] in email_text(message)


def test_status_on_a_slave_without_receiver_or_repository(tmp_path: Path) -> None:
    from tests.shipperenv import free_port

    port = free_port()
    slave = ShipperEnv(tmp_path / "slave")
    slave.write_config(
        role="slave",
        repository={
            "url": f"rest:http://127.0.0.1:{port}/master/",
            "local_path": str(tmp_path / "none"),
        },
        receiver={"listen": f":{port}"},
    )
    data = _json(slave)
    assert data["status"] == "CRITICAL"
    texts = " | ".join(p["text"] for p in data["problems"])
    assert "receiver does not answer on :" in texts and "cannot read the local repository" in texts
    # Something listening on the port is enough for the receiver line.
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        wait_for_port("127.0.0.1", port)
        assert _json(slave)["receiver"]["answers"]
