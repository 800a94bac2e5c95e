"""Notifications of real runs: emails to a real SMTP sink, webhooks to a real HTTP server."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from shipper import notify
from shipper.core import config
from shipper.core.lock import host_lock
from shipper.core.state import NotifyState
from tests.shipperenv import RestServer, ShipperEnv
from tests.sinks import SmtpSink, WebhookSink, email_text, notify_settings


def _metrics(path: Path) -> dict:
    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def test_receiver_down_fails_fast_with_email_then_recovery(
    shipper_env: ShipperEnv, rest_server: RestServer, smtp_sink: SmtpSink, webhook_sink: WebhookSink
) -> None:
    env = shipper_env
    metrics = env.base / "textfile" / "shipper.prom"
    env.write_config(
        repository={"url": rest_server.url + "master/"},
        notify=notify_settings(smtp_sink, webhook_sink, metrics_file=str(metrics)),
    )
    (env.src / "a.txt").write_text("one\n")
    env.run("init", check=True)
    env.run("snapshot", check=True)
    assert webhook_sink.paths() == ["/ping/start", "/ping/success"]
    ok = webhook_sink.calls[1]["body"]
    assert ok["event"] == "success" and ok["status"] == "complete" and ok["set"]
    assert smtp_sink.messages == []  # a first success is news to nobody

    rest_server.stop()
    clock = time.monotonic()
    failed = env.run("snapshot")
    assert time.monotonic() - clock < 20, (
        "a stopped receiver must fail fast, not after restic's retries"
    )
    assert failed.returncode == 1
    assert (
        "cannot reach the receiver" in failed.stderr and "shipper-receiver.service" in failed.stderr
    )
    assert "Traceback" not in failed.stderr
    message = smtp_sink.wait_for("snapshot failed")
    assert message["To"] == "ops@example.test"
    assert "cannot reach the receiver" in email_text(message)
    fail = webhook_sink.wait_for("/ping/fail")
    assert "cannot reach the receiver" in fail["body"]["error"]
    assert _metrics(metrics)["shipper_last_run_success"] == 0

    # The same failure again: webhooks every time, but no second email before repeat_after.
    calls = len(webhook_sink.calls)
    assert env.run("snapshot").returncode == 1
    webhook_sink.wait_for("/ping/fail", after=calls)
    assert len(smtp_sink.messages) == 1
    assert _metrics(metrics)["shipper_consecutive_failures"] == 2

    rest_server.start()
    env.run("snapshot", check=True)
    recovered = smtp_sink.wait_for("snapshots work again")
    text = email_text(recovered)
    assert "failed 2 times" in text and "cannot reach the receiver" in text
    assert webhook_sink.calls[-1]["path"] == "/ping/success"
    values = _metrics(metrics)
    assert values["shipper_last_run_success"] == 1
    assert values["shipper_consecutive_failures"] == 0
    assert values['shipper_last_run_status{status="complete"}'] == 1
    assert 0 <= values["shipper_newest_set_age_seconds"] < 60
    assert values["shipper_last_run_duration_seconds"] > 0
    assert os.stat(metrics).st_mode & 0o777 == 0o644  # node_exporter reads it; it holds no secret


def test_partial_set_emails_and_calls_the_failure_webhook(
    shipper_env: ShipperEnv, smtp_sink: SmtpSink, webhook_sink: WebhookSink
) -> None:
    env = shipper_env
    env.write_config(notify=notify_settings(smtp_sink, webhook_sink))
    hook = env.hooks / "pre-snapshot.d" / "10-export"
    hook.parent.mkdir(parents=True)
    hook.write_text("#!/bin/sh\necho 'export broke' >&2\nexit 3\n")
    hook.chmod(0o755)
    env.run("init", check=True)
    result = env.run("snapshot")
    assert result.returncode == 4, result.stderr
    message = smtp_sink.wait_for("is partial")
    assert "10-export" in email_text(message)
    fail = webhook_sink.wait_for("/ping/fail")
    assert fail["body"]["status"] == "partial" and fail["body"]["set"]


def test_a_run_that_finds_the_lock_held_is_not_a_failure(
    shipper_env: ShipperEnv, smtp_sink: SmtpSink, webhook_sink: WebhookSink
) -> None:
    env = shipper_env
    env.write_config(notify=notify_settings(smtp_sink, webhook_sink))
    with host_lock(env.state, "test"):
        result = env.run("snapshot")
    assert result.returncode == 3
    assert "/ping/fail" not in webhook_sink.paths()
    assert smtp_sink.messages == []


def test_undeliverable_notifications_never_fail_the_run(shipper_env: ShipperEnv) -> None:
    env = shipper_env
    token = "b5f1c0de-secret-token"
    dead = "127.0.0.1:9"  # discard port: nothing listens
    env.write_config(
        notify={
            "smtp_host": dead,
            "email_to": ["ops@example.test"],
            "webhook_start": f"http://{dead}/ping/{token}/start",
            "webhook_failure": f"http://{dead}/ping/{token}/fail",
        }
    )
    env.run("init", check=True)
    result = env.run("snapshot")
    assert result.returncode == 0, result.stderr
    assert "webhook at http://127.0.0.1:9 failed" in result.stderr
    assert token not in result.stderr, "webhook paths are tokens: never logged"


def test_sendmail_is_used_without_smtp_host(tmp_path: Path) -> None:
    capture = tmp_path / "mail.txt"
    sendmail = tmp_path / "sendmail"
    sendmail.write_text(f'#!/bin/sh\necho "ARGS: $*" > {capture}\ncat >> {capture}\n')
    sendmail.chmod(0o755)
    cfg = config.parse(
        f"repository: {{url: /nowhere}}\nstate_dir: {tmp_path / 'state'}\n"
        f"notify: {{sendmail: {sendmail}}}\n"
    )
    assert notify.send_email(cfg, "hello", "the body")
    text = capture.read_text()
    assert "ARGS: -t -oi" in text
    assert re.search(r"^To: root$", text, re.M), "the default recipient is root"
    assert "Subject: [shipper]" in text and "the body" in text


def test_stale_spare_is_emailed_once_and_when_fresh_again(
    tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    import datetime as dt

    cfg = config.parse(
        f"repository: {{url: /nowhere}}\nstate_dir: {tmp_path}\n"
        f"notify: {{smtp_host: '{smtp_sink.address}', email_to: [ops@example.test]}}\n"
    )
    now = dt.datetime.now(dt.timezone.utc)
    assert notify.watch_staleness(cfg, now - dt.timedelta(seconds=300), 120)
    message = smtp_sink.wait_for("the spare is stale")
    assert "5m 00s old" in str(message["Subject"])
    assert notify.watch_staleness(cfg, now - dt.timedelta(seconds=310), 120)
    time.sleep(0.3)
    assert len(smtp_sink.messages) == 1, "a stale spare is emailed once (until repeat_after)"
    assert not notify.watch_staleness(cfg, now, 120)
    smtp_sink.wait_for("up to date again")
    # A new pair with no set yet gets max_age for its first set before it counts as stale.
    fresh = tmp_path / "fresh"
    cfg2 = config.parse(
        f"repository: {{url: /nowhere}}\nstate_dir: {fresh}\nnotify: {{email_to: []}}\n"
    )
    assert not notify.watch_staleness(cfg2, None, 120, no_set_since=now)
    assert notify.watch_staleness(cfg2, None, 120, no_set_since=now - dt.timedelta(hours=1))


def test_metrics_text_is_prometheus_exposition(tmp_path: Path) -> None:
    cfg = config.parse(f'repository: {{url: /nowhere}}\nstate_dir: {tmp_path}\nhost: "we\\"ird"\n')
    state = NotifyState.from_json(
        {
            "last_run": {"status": "partial", "ended": 1000.0, "duration": 2.5, "bytes_added": 10},
            "failures": 1,
            "newest_complete": "20260101T000000Z",
            "max_age": 2700,
        }
    )
    text = notify.metrics_text(cfg, state, at=1767225700.0)
    assert 'shipper_info{role="master",host="we\\"ird"} 1' in text
    assert 'shipper_last_run_status{status="partial"} 1' in text
    assert "shipper_last_run_success 0" in text
    assert "shipper_newest_set_age_seconds 100.0" in text
    assert "shipper_stale 0" in text
    for line in text.splitlines():
        assert line.startswith("#") or re.match(r"^[a-z_]+(\{[^}]*\})? -?[0-9.e+]+$", line), line


def test_a_destination_without_sets_is_told_once_and_when_it_catches_up(
    shipper_env: ShipperEnv,
    rest_server: RestServer,
    seaweedfs: Any,
    smtp_sink: SmtpSink,
    webhook_sink: WebhookSink,
) -> None:
    """A real SeaweedFS bucket, first unreachable then up: its gauges, one email each way."""
    from tests.shipperenv import free_port
    from tests.test_destinations import offsite

    env = shipper_env
    env.make_dataset(files=20, mib=1)
    metrics = env.base / "shipper.prom"
    bucket = seaweedfs.new_bucket()
    creds = env.base / "creds"
    down = offsite(seaweedfs, creds, bucket, endpoint=f"http://127.0.0.1:{free_port()}")
    env.write_config(
        repository={"url": rest_server.url + "master/"},
        destinations=[down],
        notify=notify_settings(smtp_sink, webhook_sink, metrics_file=str(metrics)),
    )
    assert env.run("init").returncode == 0
    for _ in range(2):
        assert env.run("snapshot").returncode == 0
    message = smtp_sink.wait_for("destination offsite is stale")
    assert "has no complete set; it does not answer" in email_text(message)
    failing = webhook_sink.wait_until(
        lambda call: call["body"].get("about") == "destination:offsite", 30
    )
    assert failing["path"] == "/ping/fail" and failing["body"]["event"] == "failing"
    assert [m["Subject"] for m in smtp_sink.messages if "offsite" in str(m["Subject"])] == [
        message["Subject"]
    ]  # the second look, still failing the same way, is not news
    values = _metrics(metrics)
    assert values['shipper_destination_reachable{destination="offsite"}'] == 0
    assert 'shipper_destination_newest_set_age_seconds{destination="offsite"}' not in values

    env.write_config(destinations=[offsite(seaweedfs, creds, bucket)])
    assert env.run("snapshot").returncode == 0
    smtp_sink.wait_for("destination offsite is up to date again")
    calls = len(webhook_sink.calls)
    recovered = [c for c in webhook_sink.calls[:calls] if c["body"].get("event") == "recovery"]
    assert [c["path"] for c in recovered] == ["/ping/success"]
    values = _metrics(metrics)
    assert values['shipper_destination_reachable{destination="offsite"}'] == 1
    assert values['shipper_destination_newest_set_age_seconds{destination="offsite"}'] < 60
