"""shipper promote, files side: real restic, the real CLI, a master tree and slave roots.

The master's paths are restored under a scratch --root on the "slave", so
every check (what changed, what stayed) is a plain look at the disk. The
databases side is in test_promote_e2e.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
import yaml

from shipper.core.errors import Refused
from shipper.slave.promote.model import Check, Options
from shipper.slave.promote.preflight import major_of
from shipper.slave.promote.scope import Scope, json_name, restic_pattern, summarize_preview
from shipper.slave.promote.steps import Promotion
from shipper.slave.restore import DigestCheckingReader
from tests.shipperenv import VENV_BIN, ShipperEnv, make_dataset, mutate_dataset

# ---------------------------------------------------------------- pure parts


def test_scope_protects_machine_specific_paths_by_whole_components() -> None:
    scope = Scope.make(
        ["/srv/app", "/etc", "/etc/nginx", "/var/lib/shipper/x", "/srv2/"],
        ["/etc/ssh/ssh_host_key", "/etc/ssh", "/etc/hostname", "/var/lib/shipper", "/srv/app2"],
    )
    assert scope.paths == ["/etc", "/srv/app", "/srv2"]  # /etc/nginx is inside /etc
    assert scope.whole == ["/var/lib/shipper/x"]
    assert scope.protected == ["/etc/hostname", "/etc/ssh"]  # /srv/app2 is not inside /srv/app
    assert scope.route == ["/etc"]
    includes = scope.includes({"/etc": ["hostname", "ssh", "passwd", "nginx"]})
    assert includes == ["/etc/nginx", "/etc/passwd", "/srv/app", "/srv2"]
    assert scope.keeps("/etc/ssh/anything") and not scope.keeps("/etc/sshd")


def test_scope_route_goes_down_to_a_deep_protected_path() -> None:
    scope = Scope.make(["/etc"], ["/etc/sysconfig/network-scripts"])
    assert scope.route == ["/etc", "/etc/sysconfig"]
    includes = scope.includes(
        {"/etc": ["sysconfig", "fstab"], "/etc/sysconfig": ["network-scripts", "x"]}
    )
    assert includes == ["/etc/fstab", "/etc/sysconfig/x"]


def test_restic_pattern_escapes_globs() -> None:
    assert restic_pattern("/srv/a[1]/b*?\\c") == "/srv/a\\[1]/b\\*\\?\\\\c"


def test_names_that_are_not_utf8_match_their_exact_bytes() -> None:
    """restic's JSON shows each such byte as U+FFFD; the pattern matches it with `?`."""
    assert json_name(os.fsdecode(b"caf\xe9-\xe2\x82.conf")) == "caf\ufffd-\ufffd\ufffd.conf"
    assert json_name("café") == "café"
    assert restic_pattern("/etc/caf\ufffd[1]") == "/etc/caf?\\[1]"
    scope = Scope.make(["/etc"], ["/etc/cafX"])
    assert scope.includes({"/etc": ["caf\ufffd.conf", "cafX"]}) == ["/etc/caf\ufffd.conf"]
    with pytest.raises(Refused, match="cannot be told from the machine-specific /etc/cafX"):
        scope.includes({"/etc": ["caf\ufffd", "cafX"]})


def test_digest_checking_reader_fails_at_the_end_of_a_wrong_stream() -> None:
    from shipper.databases import DatabaseError

    good = hashlib.sha256(b"dump").hexdigest()
    reader = DigestCheckingReader(io.BytesIO(b"dump"), good, "mariadb:app")
    assert reader.read() == b"dump" and reader.read() == b""
    reader = DigestCheckingReader(io.BytesIO(b"dumq"), good, "mariadb:app")
    reader.read(2)
    with pytest.raises(DatabaseError, match="does not match its manifest"):
        reader.drain()


class FakeEngine:
    name = label = "postgresql"

    def __init__(self, version: str, down: bool = False):
        self._version, self.down = version, down

    def credentials(self) -> Any:
        return contextlib.nullcontext()

    def version(self) -> str:
        from shipper.databases import DatabaseError

        if self.down:
            raise DatabaseError("postgresql at /run/postgresql:5432: connection refused")
        return self._version

    def major_version(self) -> str:
        return self._version.split(".")[0]


def test_database_server_checks_name_versions_and_what_to_do(tmp_path: Path) -> None:
    from shipper.core import config

    cfg = config.parse(f"repository: {{url: /r}}\nstate_dir: {tmp_path}\n")

    def checks(engine: FakeEngine, force: bool = False) -> List[Check]:
        job = Promotion(cfg, None, Options(force=force), engines=[engine])  # type: ignore[arg-type]
        job._check_version(lambda *a, **k: job.checks.append(Check(*a, **k)), engine, "15.20")
        return job.checks

    same = checks(FakeEngine("15.4"))[0]
    assert same.ok and "15.4" in same.message
    other = checks(FakeEngine("16.1"))[0]
    assert (
        not other.ok and "15.20 (major 15)" in other.message and "16.1 (major 16)" in other.message
    )
    assert "--force" in other.message and checks(FakeEngine("16.1"), force=True)[0].ok
    down = checks(FakeEngine("15.4", down=True))[0]
    assert (
        not down.ok and "connection refused" in down.message and "start the local" in down.message
    )
    assert (
        major_of("mariadb", "10.11.19-MariaDB") == "10.11"
        and major_of("postgresql", "9.6.3") == "9.6"
    )


def test_summarize_preview_counts_files_not_folders() -> None:
    items = [
        {"action": "restored", "item": "/srv", "size": 0},
        {"action": "restored", "item": "/srv/app", "size": 0},
        {"action": "restored", "item": "/srv/app/new", "size": 10},
        {"action": "updated", "item": "/srv/app/changed", "size": 5},
        {"action": "unchanged", "item": "/srv/app/same", "size": 7},
        {"action": "deleted", "item": "/root/srv/app/gone", "size": 0},
    ]
    changes = summarize_preview("/root", items, ["/srv/app"])
    assert (changes.new, changes.changed, changes.unchanged, changes.removed) == (1, 1, 1, 1)
    assert changes.bytes_to_write == 15 and changes.removed_sample == ["/srv/app/gone"]


def test_shipped_services_hook_is_harmless_without_services_or_systemd(tmp_path: Path) -> None:
    hook = Path(__file__).resolve().parent.parent / "hooks" / "post-restore.d" / "50-services"
    for env, expected in (
        ({}, "no services"),
        ({"SHIPPER_SERVICES": "nginx", "SHIPPER_ROOT": str(tmp_path)}, "left alone"),
    ):
        done = subprocess.run(
            [str(hook)], env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True
        )
        assert done.returncode == 0 and expected in done.stdout


# ---------------------------------------------------------------- a master with sets


def file_state(root: Path) -> Dict[str, Any]:
    """Relative path -> everything promote must carry over: type, content, mode, owner, xattrs."""
    out: Dict[str, Any] = {}
    if not root.exists():
        return out
    for path in sorted([root, *root.rglob("*")]):
        info = path.lstat()
        rel = str(path.relative_to(root))
        item: Dict[str, Any] = {
            "mode": stat.S_IMODE(info.st_mode),
            "uid": info.st_uid,
            "gid": info.st_gid,
        }
        if path.is_symlink():
            item["link"] = os.readlink(path)
        elif path.is_file():
            item["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
            item["xattrs"] = {n: os.getxattr(path, n) for n in sorted(os.listxattr(path))}
        else:
            item["dir"] = True
        out[rel] = item
    return out


class Master:
    """A master tree with paths srv/app and etc, its sets, and slave roots to promote into."""

    def __init__(self, env: ShipperEnv):
        self.env = env
        self.top = env.base / "m"
        self.app = self.top / "srv" / "app"
        self.etc = self.top / "etc"
        self.states: Dict[str, Dict[str, Any]] = {}
        self.slaves = 0

    def build(self) -> None:
        make_dataset(self.app, files=300, mib=3)
        (self.app / "link").symlink_to("home/user00")
        os.link(self.app / "var/mail/box00/cur/0000000.eml", self.app / "hardlink.eml")
        private = self.app / "private.txt"
        private.write_text("secret-ish\n")
        os.chown(private, 1234, 1235)
        private.chmod(0o640)
        os.setxattr(private, "user.shipper", b"kept")
        (self.app / "empty-dir").mkdir()
        for name, text in {
            "hostname": "master\n",
            "app.conf": "listen 80\n",
            "ssh/ssh_host_key": "master key\n",
            "ssh/sshd_config": "Port 22\n",
            "netconf/eth0": "10.0.0.1\n",
        }.items():
            (self.etc / name).parent.mkdir(parents=True, exist_ok=True)
            (self.etc / name).write_text(text)
        hooks = self.env.hooks / "post-restore.d"
        hooks.mkdir(parents=True)
        mark = hooks / "10-mark"
        mark.write_text(
            "#!/bin/sh\n"
            'echo "$SHIPPER_PHASE $SHIPPER_SET_ID $SHIPPER_ROLE $SHIPPER_ROOT" >> "$SHIPPER_ROOT/hook-ran"\n'
        )
        mark.chmod(0o755)
        self.env.write_config(
            paths=[str(self.app), str(self.etc)],
            machine_specific=[
                str(self.etc / "hostname"),
                str(self.etc / "ssh/ssh_host_key"),
                str(self.etc / "netconf"),
            ],
        )
        self.env.run("init", check=True)

    def take(self, label: str, fail_settings: bool = False) -> str:
        hook = self.env.hooks / "pre-snapshot.d" / "10-fail"
        if fail_settings:
            hook.parent.mkdir(parents=True, exist_ok=True)
            hook.write_text("#!/bin/sh\necho 'export broke' >&2\nexit 3\n")
            hook.chmod(0o755)
        result = self.env.run("snapshot", "--json")
        if hook.exists():
            hook.unlink()
        assert result.returncode in (0, 4), result.stderr
        set_id = json.loads(result.stdout)["set_id"]
        self.states[label] = file_state(self.top)
        self.states[set_id] = self.states[label]
        time.sleep(1.1)  # set ids have a one-second grain
        return set_id

    def slave(self) -> Slave:
        self.slaves += 1
        return Slave(self, self.env.base / f"slave{self.slaves}")


class Slave:
    """A slave's config (role slave, the repository by local path) and a root to promote into."""

    def __init__(self, master: Master, base: Path):
        self.master = master
        self.base = base
        self.root = base / "root"
        self.config = base / "shipper.yml"
        self.state = base / "state"
        settings = json.loads(json.dumps(master.env.settings))
        settings.update(role="slave", state_dir=str(self.state))
        settings["repository"]["local_path"] = settings["repository"]["url"]
        base.mkdir()
        self.config.write_text("# the slave\n" + yaml.safe_dump(settings, sort_keys=False))
        self.seed()

    def path(self, real: Path) -> Path:
        return self.root / str(real).lstrip("/")

    def seed(self) -> None:
        """What the slave has before promote: its own machine files, stale and unrelated ones."""
        files = {
            self.master.etc / "hostname": "slave\n",
            self.master.etc / "ssh/ssh_host_key": "slave key\n",
            self.master.etc / "ssh/stale": "stale\n",
            self.master.etc / "netconf/eth0": "10.0.0.2\n",
            self.master.etc / "netconf/eth1": "slave only\n",
            self.master.etc / "extra.conf": "stale\n",
            self.master.app / "stale/old.txt": "stale\n",
            self.master.top / "srv/app2/keep": "sibling with a common prefix\n",
            self.master.top / "srv/app-extra": "sibling file\n",
            self.master.top / "outside/keep": "outside paths\n",
        }
        for real, text in files.items():
            self.path(real).parent.mkdir(parents=True, exist_ok=True)
            self.path(real).write_text(text)
        self.path(self.master.top / "srv").chmod(0o750)

    def env(self, **extra: str) -> Dict[str, str]:
        return {**self.master.env.env(), "SHIPPER_CONFIG": str(self.config), **extra}

    def promote(
        self, *args: str, fault: Optional[str] = None, check: bool = False
    ) -> subprocess.CompletedProcess:
        extra = {"SHIPPER_FAULT_KILL": fault} if fault else {}
        done = subprocess.run(
            [str(VENV_BIN / "shipper"), "promote", "--root", str(self.root), *args],
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=300,
            start_new_session=True,
        )
        if check:
            assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
        return done

    def popen_promote(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [str(VENV_BIN / "shipper"), "promote", "--root", str(self.root), *args],
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def role(self) -> str:
        return yaml.safe_load(self.config.read_text())["role"]

    def assert_promoted_to(self, label: str) -> None:
        """Every path equals the master at that set, except the slave's own machine files."""
        master = self.master
        expected = master.states[label]
        got = file_state(self.path(master.top))
        mine = ("etc/hostname", "etc/ssh/ssh_host_key", "etc/netconf")
        for rel, item in expected.items():
            if rel.startswith(("srv/app/", "etc/")) and not rel.startswith(mine):
                assert got.get(rel) == item, rel
        for rel in got:
            if rel.startswith(("srv/app/", "etc/")) and not rel.startswith(mine):
                assert rel in expected, f"{rel} should have been removed"
        assert self.path(master.etc / "hostname").read_text() == "slave\n"
        assert self.path(master.etc / "ssh/ssh_host_key").read_text() == "slave key\n"
        assert self.path(master.etc / "netconf/eth1").read_text() == "slave only\n"
        assert self.path(master.etc / "netconf/eth0").read_text() == "10.0.0.2\n"
        assert self.path(master.top / "srv/app2/keep").exists()
        assert self.path(master.top / "srv/app-extra").exists()
        assert self.path(master.top / "outside/keep").exists()
        # A folder above `paths` ends with the set's metadata, not the slave's (0750).
        assert file_state(self.path(master.top))["srv"] == expected["srv"]
        app = self.path(master.app)
        assert (app / "hardlink.eml").stat().st_ino == (
            app / "var/mail/box00/cur/0000000.eml"
        ).stat().st_ino


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory) -> Master:
    site = Master(ShipperEnv(tmp_path_factory.mktemp("promote")))
    site.build()
    site.take("first")
    mutate_dataset(site.app, percent=20, seed=3)
    (site.etc / "app.conf").write_text("listen 8080\n")
    (site.app / "private.txt").chmod(0o600)
    site.take("second")
    (site.app / "after-second.txt").write_text("only in the partial set\n")
    site.take("partial", fail_settings=True)
    return site


# ---------------------------------------------------------------- promote, files side


def test_promote_restores_the_newest_complete_set_in_place(master: Master) -> None:
    slave = master.slave()
    done = slave.promote("--yes", check=True)
    assert "PROMOTED" in done.stdout and "OK   role" in done.stdout
    slave.assert_promoted_to("second")
    assert slave.role() == "master"
    assert "enabled: false" in slave.config.read_text() and slave.config.read_text().startswith(
        "# the slave"
    )
    second = second_set(master)
    assert (slave.root / "hook-ran").read_text().split() == [
        "post-restore",
        second,
        "master",
        str(slave.root),
    ]
    report = json.loads((slave.state / "last-promote.json").read_text())
    assert report["outcome"] == "promoted" and report["set_id"] == second
    assert [s["name"] for s in report["steps"]] == [
        "preflight and plan",
        "receiver",
        "files",
        "hook:10-mark",
        "role",
    ]
    assert report["split"]["files"] > 0 and report["seconds"] >= report["split"]["files"]
    again = slave.promote("--yes")
    assert again.returncode == 1 and "is a master" in again.stdout + again.stderr


def test_dry_run_changes_nothing(master: Master) -> None:
    slave = master.slave()
    before = file_state(slave.root), slave.config.read_text()
    done = slave.promote("--dry-run", check=True)
    assert "dry run: nothing was changed" in done.stdout
    assert "remove " + str(master.etc / "extra.conf") in done.stdout
    assert "kept as they are (machine-specific)" in done.stdout
    assert (file_state(slave.root), slave.config.read_text()) == before
    plan = json.loads(slave.promote("--dry-run", "--json", check=True).stdout)
    assert plan["changes"]["removed"] >= 3 and plan["changes"]["new"] >= 300
    assert (file_state(slave.root), slave.config.read_text()) == before
    assert not (slave.state / "promote").exists()  # no journal: nothing to resume
    unconfirmed = slave.promote()  # no --yes and no terminal
    assert unconfirmed.returncode == 1 and "not on a terminal: give --yes" in unconfirmed.stderr
    assert (file_state(slave.root), slave.config.read_text()) == before


def test_promote_an_older_set(master: Master) -> None:
    slave = master.slave()
    first = next(
        k for k, v in master.states.items() if v is master.states["first"] and k != "first"
    )
    # An interrupted promote of the newest set, then the operator promotes an older one instead.
    assert slave.promote("--yes", fault="receiver:end").returncode == -signal.SIGKILL
    slave.promote("--yes", "--set", first, check=True)
    slave.assert_promoted_to("first")
    refused = slave.promote("--yes")  # the interrupted one is over: nothing to resume on a master
    assert refused.returncode == 1 and "this server is a master" in refused.stdout


def test_partial_set_needs_allow_partial(master: Master) -> None:
    partial = [
        k for k, v in master.states.items() if v is master.states["partial"] and k != "partial"
    ][0]
    slave = master.slave()
    refused = slave.promote("--yes", "--set", partial)
    assert refused.returncode == 1
    assert (
        "partial, failed part(s): settings" in refused.stdout
        and "--allow-partial" in refused.stdout
    )
    assert not slave.state.joinpath("promote").exists() and slave.role() == "slave"
    slave.promote("--yes", "--set", partial, "--allow-partial", check=True)
    slave.assert_promoted_to("partial")


def test_refusals_incomplete_set_and_unreadable_repository(master: Master, tmp_path: Path) -> None:
    env = master.env
    incomplete = "20200101T000000Z"
    env.restic(
        "backup",
        "--tag",
        f"shipper-set:{incomplete}",
        "--tag",
        "shipper-part:files",
        str(master.etc),
    )
    slave = master.slave()
    refused = slave.promote("--yes", "--set", incomplete)
    assert refused.returncode == 1 and f"set {incomplete} is incomplete" in refused.stdout
    # A repository whose data is gone: the manifest cannot be read, restic's error is shown.
    broken = tmp_path / "repo"
    shutil.copytree(env.repo, broken)
    shutil.rmtree(broken / "data")
    (broken / "data").mkdir()
    settings = yaml.safe_load(slave.config.read_text())
    settings["repository"]["local_path"] = str(broken)
    slave.config.write_text(yaml.safe_dump(settings))
    refused = slave.promote("--yes")
    assert refused.returncode == 1
    assert "cannot read the manifest" in refused.stdout and "restic" in refused.stdout
    assert slave.role() == "slave"


def test_killed_at_every_step_then_rerun_ends_promoted(master: Master) -> None:
    slave = master.slave()
    hooks = master.env.hooks / "post-restore.d"
    flag = slave.base / "kill-in-hook"
    killer = hooks / "20-kill-once"
    killer.write_text(
        f'#!/bin/sh\nif [ -e {flag} ]; then rm {flag}; kill -KILL "$PPID"; sleep 5; fi\n'
    )
    killer.chmod(0o755)
    try:
        for fault in ("receiver:end", None, "files:end", "hook", "role:end"):
            if fault is None:
                kill_during_restore(slave)
                continue
            if fault == "hook":
                flag.write_text("")
                fault = None
            done = slave.promote("--yes", fault=fault)
            assert done.returncode == -signal.SIGKILL, f"{fault}: {done.stdout}\n{done.stderr}"
        journal = json.loads((slave.state / "promote" / f"{second_set(master)}.json").read_text())
        assert journal["current"] == "role" and not journal["finished"]
        assert slave.role() == "master"  # the kill came after the config was written
        done = slave.promote("--yes", check=True)
        assert "resuming an interrupted promote" in done.stdout
    finally:
        killer.unlink()
    slave.assert_promoted_to("second")
    report = json.loads((slave.state / "last-promote.json").read_text())
    assert report["outcome"] == "promoted" and journal["attempts"] == 5
    # Only the role change ran again: it was killed after its work, before it was recorded.
    assert [step["name"] for step in report["steps"] if not step["earlier"]] == [
        "preflight and plan",
        "role",
    ]


def second_set(master: Master) -> str:
    return [k for k, v in master.states.items() if v is master.states["second"] and k != "second"][
        0
    ]


def kill_during_restore(slave: Slave) -> None:
    """SIGKILL promote and its restic while files are being written."""
    target = slave.path(slave.master.app / "var")
    process = slave.popen_promote("--yes")
    deadline = time.monotonic() + 60
    while not target.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stdout.read() if process.stdout else ""
    journal = json.loads(next((slave.state / "promote").glob("*[0-9]Z.json")).read_text())
    assert journal["current"] == "files"


def test_restore_into_folders_with_symlinks_on_the_way_stays_inside(
    master: Master, tmp_path: Path
) -> None:
    """A slave whose route folder (etc/ssh) is a symlink elsewhere: nothing is deleted through it."""
    slave = master.slave()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious").write_text("not under paths\n")
    ssh = slave.path(master.etc / "ssh")
    shutil.rmtree(ssh)
    ssh.symlink_to(elsewhere)
    slave.promote("--yes", check=True)
    assert (elsewhere / "precious").read_text() == "not under paths\n"


def test_sets_listing_helpers_are_json(master: Master) -> None:
    listing: List[Dict[str, Any]] = json.loads(master.env.run("sets", "--json", check=True).stdout)
    assert {s["status"] for s in listing} >= {"complete", "partial"}


# ---------------------------------------------------------------- manual restores of one database


def test_restore_db_as_a_new_name_and_in_place(
    shipper_env: ShipperEnv, mariadb_server: Any, postgresql_server: Any
) -> None:
    env = shipper_env
    env.run("init", check=True)
    mariadb_server.sql("DROP DATABASE IF EXISTS rdb; CREATE DATABASE rdb")
    mariadb_server.sql(
        "CREATE TABLE t (id INT PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'then')", "rdb"
    )
    postgresql_server.sql("DROP DATABASE IF EXISTS rdb")
    postgresql_server.sql("DROP ROLE IF EXISTS rdb_owner")
    postgresql_server.sql("CREATE ROLE rdb_owner LOGIN PASSWORD 'owner pw'")
    postgresql_server.sql("CREATE DATABASE rdb OWNER rdb_owner")
    postgresql_server.sql(
        "CREATE TABLE t (id INT PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'then')", "rdb"
    )
    env.write_config(
        databases={
            "enabled": True,
            "mariadb": [{**dataclasses.asdict(mariadb_server.config()), "databases": ["rdb"]}],
            "postgresql": [
                {**dataclasses.asdict(postgresql_server.config()), "databases": ["rdb"]}
            ],
        }
    )
    set_id = json.loads(env.run("snapshot", "--json", check=True).stdout)["set_id"]
    mariadb_server.sql("UPDATE t SET v = 'now'", "rdb")
    postgresql_server.sql("UPDATE t SET v = 'now'", "rdb")

    dry = env.run("restore-db", set_id, "mariadb:rdb", "--as", "rdb_then", "--dry-run", check=True)
    assert "would load mariadb:rdb into rdb_then" in dry.stdout
    assert not mariadb_server.sql("SHOW DATABASES LIKE 'rdb_then'")
    env.run("restore-db", set_id, "mariadb:rdb", "--as", "rdb_then", check=True)
    assert mariadb_server.sql("SELECT v FROM t", "rdb_then") == [("then",)]
    assert mariadb_server.sql("SELECT v FROM t", "rdb") == [("now",)]

    postgresql_server.sql("DROP DATABASE rdb")
    postgresql_server.sql("DROP ROLE rdb_owner")
    done = env.run("restore-db", "latest", "postgresql:rdb", "--globals", check=True)
    assert "loaded postgresql users and grants" in done.stdout
    assert postgresql_server.sql("SELECT v FROM t", "rdb") == [("then",)]
    assert postgresql_server.sql(
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'rdb'"
    ) == [("rdb_owner",)]

    missing = env.run("restore-db", set_id, "mariadb:nope")
    assert (
        missing.returncode == 1
        and "has no database mariadb:nope; its databases: mariadb:rdb, postgresql:rdb"
        in (missing.stderr)
    )
