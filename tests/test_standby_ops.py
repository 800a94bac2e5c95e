"""What a running warm standby does and tells: real restic, the real CLI, real SMTP and webhook sinks.

One site (a master's files, no databases: tests/test_standby.py has those)
and one flow: the master's cron jobs are held aside by every apply and put
in place, exactly, by promote; post-apply hooks run after each apply and a
failing one is a warning; a failed apply is emailed once and its recovery
once, with the standby's gauges in the metrics file; promote --dry-run's
expected duration is "unknown" until an apply measured a speed.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml

from tests.shipperenv import VENV_BIN, ShipperEnv, mutate_dataset
from tests.sinks import SmtpSink, WebhookSink, email_text, notify_settings
from tests.test_promote import Master, Slave, file_state


class Site:
    def __init__(self, base: Path):
        self.master = Master(ShipperEnv(base))
        self.master.build()
        self.cron = self.master.etc / "cron.d"
        self.cron.mkdir()
        (self.cron / "app-report").write_text("17 * * * * root /usr/local/bin/app-report\n")
        (self.cron / "app-purge").write_text("*/5 * * * * app /usr/local/bin/purge\n")
        (self.cron / "app-purge").chmod(0o600)
        self.slave = self.new_slave()

    def new_slave(self, **changes: Any) -> Slave:
        slave = self.master.slave()
        settings = yaml.safe_load(slave.config.read_text())
        hooks = slave.base / "hooks"
        (hooks / "post-apply.d").mkdir(parents=True)
        settings["hooks"] = {"dirs": [str(self.master.env.hooks), str(hooks)], "timeout": 30}
        hold = [str(self.cron), str(self.master.etc / "anacrontab")]  # the set has no anacrontab
        settings["standby"] = {"enabled": True, "root": str(slave.root), "hold": hold}
        settings.update(changes)
        slave.config.write_text(yaml.safe_dump(settings, sort_keys=False))
        # The slave's own cron job, where the master keeps its own.
        own = slave.path(self.cron) / "slave-own"
        own.parent.mkdir(parents=True, exist_ok=True)
        own.write_text("0 3 * * * root /usr/local/bin/slave-only\n")
        slave.path(self.master.etc / "anacrontab").write_text("1 5 slave.daily run-parts\n")
        return slave

    def edit(self, **changes: Any) -> None:
        settings = yaml.safe_load(self.slave.config.read_text())
        for key, value in changes.items():
            if isinstance(value, dict):
                settings[key] = {**(settings.get(key) or {}), **value}
            else:
                settings[key] = value
        self.slave.config.write_text(yaml.safe_dump(settings, sort_keys=False))

    def shipper(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(VENV_BIN / "shipper"), *args],
            env=self.slave.env(),
            capture_output=True,
            text=True,
            timeout=300,
        )

    def apply(self) -> subprocess.CompletedProcess:
        return self.shipper("standby", "apply")

    def record(self) -> Dict[str, Any]:
        return json.loads((self.slave.state / "standby.json").read_text())

    def plan(self) -> Dict[str, Any]:
        done = self.shipper("promote", "--root", str(self.slave.root), "--dry-run", "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout[done.stdout.index("{") :])

    def dry_run_text(self) -> str:
        done = self.shipper("promote", "--root", str(self.slave.root), "--dry-run")
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def held_state(self) -> Dict[str, Any]:
        return file_state(self.slave.path(self.cron))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    made = Site(tmp_path_factory.mktemp("standbyops"))
    made.master.take("first")
    return made


def test_held_cron_jobs_never_land_on_the_standby_and_promote_puts_them_exactly(
    site: Site,
) -> None:
    master, slave = site.master, site.slave
    cold = site.plan()
    assert cold["route"] == "cold"
    assert cold["expected"]["seconds"] is None and "unknown" in cold["expected"]["basis"]
    assert "expected duration: unknown" in site.dry_run_text()

    done = site.apply()
    assert done.returncode == 0, done.stdout + done.stderr
    assert site.record()["state"] == "applied"
    # Everything else is in place; the cron folder is the slave's own, untouched.
    assert file_state(slave.path(master.app)) == file_state(master.app)
    assert sorted(p.name for p in slave.path(site.cron).iterdir()) == ["slave-own"]

    mutate_dataset(master.app, percent=10, seed=11)
    (site.cron / "app-report").write_text("42 * * * * root /usr/local/bin/app-report --all\n")
    second = master.take("second")
    plan = site.plan()
    assert plan["route"] == "delta" and plan["held"] == []
    assert plan["expected"]["seconds"] is not None
    assert "measured by the apply of set" in plan["expected"]["basis"]
    assert site.apply().returncode == 0
    assert sorted(p.name for p in slave.path(site.cron).iterdir()) == ["slave-own"]

    plan = site.plan()
    assert plan["route"] == "standby" and plan["set_id"] == second
    anacrontab = master.etc / "anacrontab"
    assert plan["held"] == [str(anacrontab), str(site.cron)] and "held" in plan["steps"]
    assert slave.path(anacrontab).exists()  # the slave's own, kept by every apply
    assert plan["steps"].index("held") == len(plan["steps"]) - 2  # just before the role
    text = site.dry_run_text()
    assert "put in place what the standby held aside (cron jobs)" in text
    assert "expected duration: about" in text

    slave.promote("--yes", check=True)
    assert site.held_state() == file_state(site.cron)  # exactly the master's: slave-own is gone
    slave.assert_promoted_to("second")
    report = json.loads((slave.state / "last-promote.json").read_text())
    held = next(step for step in report["steps"] if step["name"] == "held")
    assert held["status"] == "done" and held["detail"]["paths"] == plan["held"]
    assert held["detail"]["files_deleted"] == 2  # slave-own, and the anacrontab the set lacks
    assert not slave.path(anacrontab).exists()


def test_post_apply_hooks_run_after_each_apply_and_a_failing_one_warns(site: Site) -> None:
    site.slave = site.new_slave()
    hooks = site.slave.base / "hooks" / "post-apply.d"
    mark = hooks / "10-reload"
    mark.write_text(
        '#!/bin/sh\necho "$SHIPPER_PHASE $SHIPPER_SET_ID $SHIPPER_ROLE" >> "$SHIPPER_ROOT/applied"\n'
    )
    mark.chmod(0o755)
    done = site.apply()
    assert done.returncode == 0, done.stdout + done.stderr
    newest = site.record()["set"]
    assert (site.slave.root / "applied").read_text() == f"post-apply {newest} slave\n"
    assert "post-apply hooks: 10-reload" in done.stdout
    assert site.apply().returncode == 0  # already applied: the hook does not run again
    assert (site.slave.root / "applied").read_text().count("\n") == 1

    broken = hooks / "20-broken"
    broken.write_text("#!/bin/sh\necho 'reload failed: bad config' >&2\nexit 4\n")
    broken.chmod(0o755)
    (site.master.app / "new.txt").write_text("a change\n")
    newer = site.master.take("hooked")
    done = site.apply()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING: post-apply hook" in done.stdout and "20-broken" in done.stdout
    record = site.record()
    assert (
        record["state"] == "applied" and record["set"] == newer and "20-broken" in record["warning"]
    )
    report = json.loads(site.shipper("status", "--json").stdout)
    assert any(p["level"] == "WARNING" and "20-broken" in p["text"] for p in report["problems"]), (
        report["problems"]
    )
    assert site.plan()["route"] == "standby"  # the set is in place all the same
    broken.unlink()


def test_a_failed_apply_is_told_once_and_its_recovery_once(
    site: Site, smtp_sink: SmtpSink, webhook_sink: WebhookSink
) -> None:
    metrics = site.slave.base / "metrics.prom"
    site.slave = site.new_slave()
    site.edit(notify={**notify_settings(smtp_sink, webhook_sink), "metrics_file": str(metrics)})
    assert site.apply().returncode == 0
    text = metrics.read_text()
    assert "shipper_standby_last_apply_success 1" in text
    assert "shipper_standby_applied_set_age_seconds " in text
    assert "shipper_standby_apply_duration_seconds " in text
    assert smtp_sink.messages == []  # a first success is no recovery

    (site.master.app / "later.txt").write_text("later\n")
    site.master.take("later")
    blocker = site.slave.base / "not-a-folder"
    blocker.write_text("x\n")
    site.edit(standby={"root": str(blocker)})
    for _ in range(2):
        failed = site.apply()
        assert failed.returncode == 1 and "nothing was changed" in failed.stderr
        assert "Traceback" not in failed.stderr
    message = smtp_sink.wait_for("standby apply failed")
    assert "not-a-folder" in email_text(message)
    assert webhook_sink.wait_for("/ping/fail")["body"]["about"] == "standby"
    assert len(smtp_sink.messages) == 1  # the same error again is not news
    assert "shipper_standby_last_apply_success 0" in metrics.read_text()

    site.edit(standby={"root": str(site.slave.root)})
    assert site.apply().returncode == 0
    smtp_sink.wait_for("standby applies work again", after=1)
    assert webhook_sink.wait_for("/ping/success")["body"]["about"] == "standby"
    assert len(smtp_sink.messages) == 2
    assert "shipper_standby_last_apply_success 1" in metrics.read_text()


# ---------------------------------------------------------------- two hosts


CHURN = """
import os, sys, time
folder = sys.argv[1]
os.makedirs(folder, exist_ok=True)
n = 0
while True:
    with open(os.path.join(folder, f"f{n % 50:02d}.txt"), "w") as out:
        out.write(f"churn {n}\\n" * (n % 200))
    n += 1
    time.sleep(0.01)
"""


@pytest.mark.slow
@pytest.mark.netns
def test_a_standby_follows_sets_under_load_and_promotes_exactly(
    two_hosts: Any, make_postgresql_server: Any, tmp_path: Path
) -> None:
    """Master and slave in two network namespaces; the slave's daemon follows the sets
    taken under pgbench and a file churner, then promote uses the current standby."""
    from tests.test_promote_e2e import (
        Side,
        pg_state,
        server_settings,
        take_set,
    )

    master = Side(two_hosts.master, tmp_path / "master")
    slave = Side(two_hosts.slave, tmp_path / "slave")
    pg_m = make_postgresql_server(netns=master.host.name)
    pg_s = make_postgresql_server(netns=slave.host.name)
    daemon = None
    try:
        top, root = master.base / "tree", slave.base / "root"
        pair(master, slave, tmp_path)
        fill(top, pg_m)
        cron = top / "etc" / "cron.d"
        master.edit(
            lambda s: s.update(
                paths=[str(top / "srv"), str(top / "etc")],
                databases={"postgresql": [server_settings(pg_m, ["pgbench"])]},
            )
        )
        own = root / str(cron).lstrip("/") / "slave-own"
        own.parent.mkdir(parents=True)
        own.write_text("0 3 * * * root /usr/local/bin/slave-only\n")
        slave.edit(
            lambda s: s.update(
                databases={"postgresql": [server_settings(pg_s, ["all"])]},
                standby={"enabled": True, "root": str(root), "hold": [str(cron)]},
            )
        )
        log = slave.base / "daemon.log"
        with open(log, "w") as out:
            daemon = slave.host.popen(
                [str(VENV_BIN / "shipper"), "daemon", "--check-interval", "0.5"],
                env=slave.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        record = slave.base / "state" / "standby.json"

        def applied(set_id: str) -> None:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                data = json.loads(record.read_text()) if record.exists() else {}
                if data.get("set") == set_id and data.get("state") == "applied":
                    print(f"applied {set_id} in {data['seconds']:.1f}s")
                    return
                time.sleep(0.5)
            raise AssertionError(f"set {set_id} not applied; the daemon's log:\n{log.read_text()}")

        load = start_churn(master, top, pg_m)
        followed = []
        try:
            for _ in range(3):
                followed.append(take_set(master))
                applied(followed[-1])
                assert sorted(p.name for p in own.parent.iterdir()) == ["slave-own"]
        finally:
            for process in load:
                process.kill()
                process.wait()
        final = take_set(master)
        final_files, final_rows = file_state(top), pg_state(pg_m)
        assert final_rows[4] > 0, "pgbench wrote no history: the load did not run"
        applied(final)
        assert len(set(followed)) == 3
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
        daemon = None

        assert sorted(p.name for p in own.parent.iterdir()) == ["slave-own"]  # never in place
        dry_run = slave.shipper("promote", "--dry-run", "--json", "--root", str(root)).stdout
        dry = json.loads(dry_run[dry_run.index("{") :])
        assert dry["route"] == "standby" and dry["set_id"] == final and dry["held"] == [str(cron)]
        clock = time.monotonic()
        done = slave.shipper("promote", "--yes", "--root", str(root))
        took = time.monotonic() - clock
        assert f"promote of set {final}: PROMOTED" in done.stdout, done.stdout
        print(f"promote: expected {dry['expected']}, took {took:.1f}s")
        got = file_state(root / str(top).lstrip("/"))
        got.pop("."), final_files.pop(".")
        assert got == final_files  # the held cron jobs included: exactly the master's
        assert file_state(own.parent) == file_state(cron)
        assert pg_state(pg_s) == final_rows
    finally:
        if daemon is not None:
            daemon.kill()
            daemon.wait()
        pg_m.stop()
        pg_s.stop()


def pair(master: Any, slave: Any, tmp_path: Path) -> None:
    """`shipper setup slave` and `setup master`, as an operator would (no service manager)."""
    from tests.shipperenv import write_secret

    password = write_secret(tmp_path / "shared-password", "the one shared secret")
    setup = slave.shipper(
        "setup", "slave", "--password-file", str(password), "--etc-dir", str(slave.etc),
        "--state-dir", str(slave.base / "state"), "--repo-dir", str(slave.base / "repo"),
        "--listen", f"{slave.host.address}:8000", "--name", slave.host.address,
        "--service-manager", "none", "--json",
    )  # fmt: skip
    master.shipper(
        "setup", "master", "--password-file", str(password), "--etc-dir", str(master.etc),
        "--state-dir", str(master.base / "state"), "--slave", f"{slave.host.address}:8000",
        "--fingerprint", json.loads(setup.stdout)["fingerprint"], "--service-manager", "none",
        "--no-first-set",
    )  # fmt: skip


def fill(top: Path, pg: Any) -> None:
    from tests.shipperenv import make_dataset

    make_dataset(top / "srv" / "app", files=200, mib=2)
    (top / "etc" / "cron.d").mkdir(parents=True)
    (top / "etc" / "cron.d" / "app-report").write_text("17 * * * * root /usr/local/bin/report\n")
    (top / "etc" / "app.conf").write_text("db = pgbench\n")
    pg.sql("CREATE ROLE pgapp LOGIN PASSWORD 'pgapp secret'")
    pg.sql("CREATE DATABASE pgbench OWNER pgapp")
    subprocess.run(
        ["pgbench", "-i", "-q", "-s", "1", "-h", pg.socket, "-p", str(pg.port), "-U", "pgapp",
         "pgbench"],
        check=True, capture_output=True,
    )  # fmt: skip


def start_churn(master: Any, top: Path, pg: Any) -> List[subprocess.Popen]:
    pgbench = ["pgbench", "-n", "-c", "2", "-j", "1", "-T", "900", "-h", pg.socket, "-p",
               str(pg.port), "-U", "pgapp", "pgbench"]  # fmt: skip
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    return [
        master.host.popen(pgbench, **quiet),
        master.host.popen(
            [sys.executable, "-c", CHURN, str(top / "srv" / "app" / "churn")], **quiet
        ),
    ]
