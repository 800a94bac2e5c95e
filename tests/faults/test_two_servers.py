"""A slave and a master set up from one shared password, on loopback, followed to a promote.

One story, recorded once (module fixture), judged by several tests:
setup slave, setup master (first set), a set with a database and a settings
hook, a receiver whose certificate changes (refused, then restored), the
promote of the slave with a post-restore hook, and the old master that comes
back and tries to push. A watcher samples every process's command line and
environment all along; every command runs with -v (debug logging).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Set

import pytest
import yaml

from shipper.core import secrets
from shipper.slave import receiver
from tests.faults.helpers import clean_failure
from tests.shipperenv import free_port, make_dataset, tree_digest, write_secret
from tests.test_receiver import Side, printed_fingerprint, slave_digest

pytestmark = pytest.mark.slow

HOOK = '#!/bin/sh\nenv > "{out}"\n'


class Watcher(threading.Thread):
    """Samples /proc: any secret in a command line or an environment is recorded."""

    def __init__(self, needles: List[bytes]):
        super().__init__(daemon=True)
        self.needles = needles
        self.found: Set[str] = set()
        self.samples = 0
        self.running = True

    def run(self) -> None:
        me = str(os.getpid())
        while self.running:
            for pid in os.listdir("/proc"):
                if pid.isdigit() and pid != me:
                    self._look(pid)
            self.samples += 1
            time.sleep(0.002)

    def _look(self, pid: str) -> None:
        for what in ("cmdline", "environ"):
            try:
                data = Path(f"/proc/{pid}/{what}").read_bytes()
            except OSError:
                continue
            for needle in self.needles:
                if needle in data:
                    argv = (
                        data.split(b"\0")[0].decode(errors="replace") if what == "cmdline" else ""
                    )
                    self.found.add(f"pid {pid} {what} {argv}")

    def stop(self) -> None:
        self.running = False
        self.join(10)


@dataclasses.dataclass
class Story:
    base: Path
    slave: Side
    master: Side
    secrets: Dict[str, str]
    outputs: List[str] = dataclasses.field(default_factory=list)
    results: Dict[str, subprocess.CompletedProcess] = dataclasses.field(default_factory=dict)
    watcher: Any = None
    src: Path = Path("/")

    def run(self, side: Side, label: str, *args: str) -> subprocess.CompletedProcess:
        done = side.run("-v", *args, timeout=300)
        self.outputs += [done.stdout, done.stderr]
        self.results[label] = done
        return done


def write_master(story: Story, mariadb_entry: Dict[str, Any]) -> None:
    master = story.master
    hooks = story.base / "master-hooks"
    (hooks / "pre-snapshot.d").mkdir(parents=True)
    hook = hooks / "pre-snapshot.d" / "10-env"
    hook.write_text(HOOK.format(out=story.base / "hook-env-pre"))
    hook.chmod(0o755)
    settings = {
        "paths": [str(story.src)],
        "repository": {"url": "/not/yet", "lock_wait": 5, "network_timeout": 5},
        "databases": {"mariadb": [mariadb_entry], "postgresql": []},
        "hooks": {"dirs": [str(hooks)]},
    }
    master.config.write_text("# the master\n" + yaml.safe_dump(settings))


def edit_slave(story: Story, mariadb_entry: Dict[str, Any]) -> None:
    hooks = story.base / "slave-hooks"
    (hooks / "post-restore.d").mkdir(parents=True)
    hook = hooks / "post-restore.d" / "10-env"
    hook.write_text(HOOK.format(out=story.base / "hook-env-post"))
    hook.chmod(0o755)
    settings = yaml.safe_load(story.slave.config.read_text())
    settings["databases"] = {"mariadb": [mariadb_entry], "postgresql": []}
    settings["hooks"] = {"dirs": [str(hooks)]}
    story.slave.config.write_text(yaml.safe_dump(settings))


def swap_certificate(story: Story, port: int) -> None:
    """The slave's receiver comes back with another certificate (a reinstall, or an impostor)."""
    cfg = yaml.safe_load(story.slave.config.read_text())["receiver"]
    kept = story.base / "kept-tls"
    kept.mkdir()
    for name in ("tls_cert", "tls_key"):
        shutil.copy2(cfg[name], kept / name)
    story.slave.run("receiver", "stop", check=True)
    receiver.make_certificate(cfg["tls_key"], cfg["tls_cert"], ["127.0.0.1"])
    story.slave.run("receiver", "start", check=True)
    story.run(story.master, "wrong certificate", "snapshot")
    story.slave.run("receiver", "stop", check=True)
    for name in ("tls_cert", "tls_key"):
        shutil.copy2(kept / name, cfg[name])
    story.slave.run("receiver", "start", check=True)


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory, mariadb_server: Any) -> Iterator[Story]:
    base = tmp_path_factory.mktemp("two-servers")
    shared = "shared " + uuid.uuid4().hex  # unique: no other process on the machine has it
    derived = secrets.derive(shared)
    user, db_password = f"sec_{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    database = f"sec_{uuid.uuid4().hex[:6]}"
    mariadb_server.sql(f"CREATE USER {user}@localhost IDENTIFIED BY '{db_password}'")
    mariadb_server.sql(f"GRANT ALL ON *.* TO {user}@localhost WITH GRANT OPTION")
    mariadb_server.sql(f"CREATE DATABASE {database}")
    mariadb_server.sql(f"CREATE TABLE {database}.t (id INT PRIMARY KEY)")
    mariadb_server.sql(f"INSERT INTO {database}.t VALUES (1), (2), (3)")
    db_secret = write_secret(base / "db-password", db_password)
    entry = dataclasses.asdict(
        mariadb_server.config(databases=[database], user=user, password_file=str(db_secret))
    )
    story = Story(
        base,
        Side(base / "slave"),
        Side(base / "master"),
        {"shared": shared, "restic": derived.restic_password,
         "receiver": derived.receiver_password, "database": db_password},
    )  # fmt: skip
    story.src = base / "src"
    make_dataset(story.src, files=40, mib=1)
    password_file = write_secret(base / "shared-password", shared)
    port = free_port()
    canary = "canary " + uuid.uuid4().hex
    story.watcher = Watcher([s.encode() for s in [*story.secrets.values(), canary]])
    story.watcher.start()
    try:
        # The watcher sees what it looks for: a process with the canary in its environment.
        subprocess.run(["sleep", "0.3"], env={"CANARY": canary}, check=True)
        assert any("environ" in f for f in story.watcher.found), "the watcher saw nothing"
        story.watcher.found.clear()
        done = story.run(
            story.slave, "setup slave", "setup", "slave", "--password-file", str(password_file),
            "--etc-dir", str(story.slave.etc), "--state-dir", str(story.slave.state),
            "--repo-dir", str(story.slave.repo_dir), "--service-manager", "none",
            "--listen", f"127.0.0.1:{port}",
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        write_master(story, entry)
        done = story.run(
            story.master, "setup master", "setup", "master", "--slave", f"127.0.0.1:{port}",
            "--password-file", str(password_file), "--fingerprint", printed_fingerprint(done.stdout),
            "--etc-dir", str(story.master.etc), "--state-dir", str(story.master.state),
            "--service-manager", "none",
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        (story.src / "late.txt").write_text("the last good state\n")
        story.run(story.master, "snapshot", "snapshot", "--json")
        story.last_good = tree_digest(story.src)
        swap_certificate(story, port)
        story.run(story.master, "after certificate", "snapshot", "--json")
        # The slave's own administrator account loads the set (the master's user is in its globals).
        edit_slave(story, dataclasses.asdict(mariadb_server.config(databases=[database])))
        story.root = base / "root"
        story.run(story.slave, "promote", "promote", "--yes", "--root", str(story.root))
    finally:
        story.watcher.stop()
    # The old master comes back.
    story.promoted = (slave_digest(story.slave), tree_digest(story.root))
    story.run(story.master, "old master", "snapshot")
    story.run(story.slave, "receiver again", "receiver", "start")
    story.run(story.master, "old master again", "snapshot")
    yield story
    story.slave.run("receiver", "stop")
    mariadb_server.sql(f"DROP DATABASE IF EXISTS {database}")
    mariadb_server.sql(f"DROP USER IF EXISTS {user}@localhost")


def test_the_story_ran(story: Story):
    for label in ("snapshot", "after certificate"):
        done = story.results[label]
        assert json.loads(done.stdout)["status"] == "complete", done.stderr
    assert story.results["promote"].returncode == 0, story.results["promote"].stdout
    assert tree_digest(story.root / str(story.src).lstrip("/")) == story.last_good
    assert story.watcher.samples > 100, "the watcher hardly looked"


def test_no_secret_on_a_command_line_or_in_an_environment(story: Story):
    assert not story.watcher.found, story.watcher.found


def test_no_secret_in_output_logs_or_state(story: Story):
    texts = list(story.outputs)
    for folder in (story.slave.state, story.master.state, story.base / "root"):
        for path in folder.rglob("*"):
            if path.is_file() and "cache" not in path.parts and path.suffix != ".pack":
                texts.append(path.read_bytes().decode(errors="replace"))
    for name, secret in story.secrets.items():
        leaks = [t[:200] for t in texts if secret in t]
        assert not leaks, f"the {name} secret leaked: {leaks}"


def test_files_holding_a_secret_are_root_only(story: Story):
    holders = []
    for path in story.base.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        data = path.read_bytes()
        if any(s.encode() in data for s in story.secrets.values()):
            info = path.stat()
            holders.append(path)
            assert info.st_uid == 0 and not info.st_mode & 0o077, (
                f"{path} holds a secret with mode {stat.S_IMODE(info.st_mode):o}"
            )
    assert story.slave.etc / "secret" in holders or any("secret" in p.name for p in holders)


def test_hooks_get_no_secret_in_their_environment(story: Story):
    for name in ("hook-env-pre", "hook-env-post"):
        env = (story.base / name).read_text()
        assert "SHIPPER_SET_ID=" in env, env
        for secret in story.secrets.values():
            assert secret not in env
        keys = {line.split("=", 1)[0] for line in env.splitlines() if "=" in line}
        assert not {k for k in keys if k.startswith(("RESTIC_", "MYSQL", "PG"))}, keys


def test_a_wrong_certificate_is_refused(story: Story):
    err = clean_failure(story.results["wrong certificate"])
    assert "certificate shipper does not trust" in err, err
    assert (
        "after certificate" in story.results and story.results["after certificate"].returncode == 0
    )


def test_the_old_master_is_refused_and_the_promoted_server_untouched(story: Story):
    err = clean_failure(story.results["old master"])
    assert "cannot reach the receiver" in err, err
    restart = clean_failure(story.results["receiver again"])
    assert "only a slave runs the receiver" in restart, restart
    clean_failure(story.results["old master again"])
    assert (slave_digest(story.slave), tree_digest(story.root)) == story.promoted
