"""SIGKILL at several points of a run: the whole run, restic, a dump tool, shipper in a hook.

Each test injects the kill into real processes (shipper, restic, mariadb-dump,
a hook) on a real repository and a real MariaDB server, then checks the
promise: no manifest (so no set) for the broken run, or a partial set naming
the killed part; the next run is complete; stale restic locks of the dead
run are cleared while a live process's lock is kept; `restic check` passes;
a restore equals the source byte for byte.

A dump is held mid-stream deterministically: another session holds
`LOCK TABLES ... WRITE` on the table being dumped, so mariadb-dump has
written its header and waits for the rows until the test lets it go.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Iterator, List, Set

import pytest

from tests.faults.helpers import (
    EXIT_PARTIAL,
    clean_failure,
    gone,
    is_restic,
    restored_digest,
    session_reaped,
    sets_json,
    snapshot_ok,
    statuses,
    wait_for_descendant,
)
from tests.shipperenv import TOOLS, ShipperEnv, make_dataset, tree_digest

pytestmark = pytest.mark.slow


@pytest.fixture
def db_env(fresh_repo: ShipperEnv, mariadb_server: Any) -> Iterator[ShipperEnv]:
    """A master with files and a MariaDB database on the shared test server."""
    shipper_env = fresh_repo
    shop = f"shop_{uuid.uuid4().hex[:6]}"
    mariadb_server.sql(f"CREATE DATABASE {shop}")
    mariadb_server.sql(f"CREATE TABLE {shop}.items (id INT PRIMARY KEY, name TEXT)")
    mariadb_server.sql("INSERT INTO items SELECT seq, MD5(seq) FROM seq_1_to_2000", shop)
    entry = dataclasses.asdict(mariadb_server.config(databases=[shop]))
    shipper_env.write_config(
        databases={"enabled": True, "mariadb": [entry], "postgresql": [], "parallel": 1}
    )
    make_dataset(shipper_env.src, files=60, mib=1)
    shipper_env.names = {"shop": shop}
    yield shipper_env
    mariadb_server.sql(f"DROP DATABASE IF EXISTS {shop}")


class TableLock:
    """Hold LOCK TABLES ... WRITE from another session: a dump of that table waits."""

    def __init__(self, server: Any, database: str):
        self.conn = server.connect(database)
        with self.conn.cursor() as cur:
            cur.execute("LOCK TABLES items WRITE")

    def release(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def is_dump_of(database: str):
    return lambda argv: bool(argv) and argv[0].endswith("-dump") and database in argv


def lock_files(env: ShipperEnv) -> Set[str]:
    folder = env.repo / "locks"
    names = {p.name for p in folder.iterdir()} if folder.exists() else set()
    return {name for name in names if "-tmp-" not in name}  # not yet renamed into place


def wait_for_new_lock(env: ShipperEnv, before: Set[str], timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = lock_files(env) - before
        if new:
            return new.pop()
        time.sleep(0.01)
    raise TimeoutError("no restic lock appeared")


def live_lock_holder(env: ShipperEnv) -> subprocess.Popen:
    """Another restic process that holds a lock while it runs (an operator's backup)."""
    argv = [str(TOOLS / "restic"), "-r", str(env.repo), "--password-file", str(env.password_file)]
    argv += ["backup", "--stdin-filename", "x", "--stdin-from-command", "--", "sleep", "120"]
    return subprocess.Popen(
        argv, env=env.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def db_checksums(server: Any, database: str) -> List[Any]:
    return server.sql("CHECKSUM TABLE items", database)[0][1:]


def assert_next_run_recovers(
    env: ShipperEnv, server: Any, tmp_path: Path, stale: Set[str], database: bool = False
) -> str:
    """Stale locks go (a live one stays), the next set is complete, check and restore agree."""
    before = lock_files(env)
    holder = live_lock_holder(env)
    try:
        live = wait_for_new_lock(env, before)
        assert stale <= lock_files(env), "the stale lock should still be there before the run"
        set_id = snapshot_ok(env)
        left = lock_files(env)
        assert not (stale & left), "the dead run's stale lock was not cleared"
        assert live in left, "the lock of a live restic process was removed"
    finally:
        holder.terminate()
        holder.wait(30)
    checked = env.restic("check", check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert restored_digest(env, set_id, tmp_path / f"restored-{set_id}") == tree_digest(env.src)
    if database:
        assert_database_restores(env, server, set_id)
    return set_id


def assert_database_restores(env: ShipperEnv, server: Any, set_id: str) -> None:
    shop = env.names["shop"]
    copy = f"copy_{uuid.uuid4().hex[:6]}"
    env.run("restore-db", set_id, f"mariadb:{shop}", "--as", copy, check=True)
    try:
        assert db_checksums(server, copy) == db_checksums(server, shop)
    finally:
        server.sql(f"DROP DATABASE IF EXISTS {copy}")


def test_sigkill_of_the_whole_run_mid_dump_leaves_no_set(
    db_env: ShipperEnv, mariadb_server: Any, tmp_path: Path
):
    """shipper, restic and mariadb-dump die together (the OOM killer, a power cut of the unit)."""
    env = db_env
    good = snapshot_ok(env)
    lock = TableLock(mariadb_server, env.names["shop"])
    try:
        before = lock_files(env)
        run = env.popen("snapshot", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                        start_new_session=True)  # fmt: skip
        dump = wait_for_descendant(run.pid, is_dump_of(env.names["shop"]), what="mariadb-dump")
        stale = {wait_for_new_lock(env, before)}
        time.sleep(0.3)
        assert not gone(dump, 0), "the dump should be waiting for the table lock"
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
        assert session_reaped(run.pid), "the killed run's processes were never reaped"
    finally:
        lock.release()
    assert gone(dump)
    assert statuses(env)[good] == "complete"
    assert all(s == "incomplete" for i, s in statuses(env).items() if i != good)
    assert stale <= lock_files(env), "restic was killed: its lock is left behind"
    assert_next_run_recovers(env, mariadb_server, tmp_path, stale, database=True)


def test_sigkill_of_restic_in_the_files_part_after_the_dumps(
    db_env: ShipperEnv, mariadb_server: Any, tmp_path: Path
):
    """The database parts are in the repository; the files part (which carries the manifest) dies."""
    env = db_env
    before = lock_files(env)
    run = env.popen("snapshot", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    files = wait_for_descendant(run.pid, is_restic("backup", str(env.src)), what="files backup")
    stale = {wait_for_new_lock(env, before)}  # the dump parts' restic runs have ended
    os.kill(files, signal.SIGKILL)
    _, err = run.communicate(timeout=60)
    assert "killed by signal 9" in clean_failure(
        subprocess.CompletedProcess([], run.returncode, "", err)
    )
    [broken] = sets_json(env)
    assert broken["status"] == "incomplete" and broken["manifest_snapshot"] is None
    assert {p["name"] for p in broken["parts"]} >= {
        f"mariadb:{env.names['shop']}",
        "mariadb:globals",
    }
    assert stale <= lock_files(env)
    assert_next_run_recovers(env, mariadb_server, tmp_path, stale)


def test_sigkill_of_a_dump_tool_makes_a_partial_set_naming_its_database(
    db_env: ShipperEnv, mariadb_server: Any, tmp_path: Path
):
    env = db_env
    shop = env.names["shop"]
    lock = TableLock(mariadb_server, shop)
    try:
        run = env.popen(
            "snapshot", "--json", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        dump = wait_for_descendant(run.pid, is_dump_of(shop), what="mariadb-dump")
        time.sleep(0.2)
        os.kill(dump, signal.SIGKILL)
        out, err = run.communicate(timeout=60)
    finally:
        lock.release()
    assert run.returncode == EXIT_PARTIAL, err
    assert "Traceback" not in err, err
    result = json.loads(out)
    failed = {p["name"]: p["error"] for p in result["parts"] if p["outcome"] != "ok"}
    assert list(failed) == [f"mariadb:{shop}"], failed
    [partial] = sets_json(env)
    assert partial["status"] == "partial"
    kept = {p["name"] for p in partial["parts"]}
    assert kept == {"files", "mariadb:globals"}, kept
    assert_next_run_recovers(env, mariadb_server, tmp_path, set())


def test_sigkill_of_shipper_in_a_pre_snapshot_hook_takes_the_hook_along(
    fresh_repo: ShipperEnv, tmp_path: Path
):
    env = fresh_repo
    make_dataset(env.src, files=40, mib=1)
    folder = env.hooks / "pre-snapshot.d"
    folder.mkdir(parents=True)
    flag, pidfile = tmp_path / "hang-once", tmp_path / "hook.pid"
    hook = folder / "10-export"
    hook.write_text(
        "#!/bin/sh\n"
        'echo settings > "$SHIPPER_EXPORT_DIR/app.conf"\n'
        f"if [ -e {flag} ]; then rm {flag}; echo $$ > {pidfile}; exec sleep 120; fi\n"
    )
    hook.chmod(0o755)
    flag.write_text("")
    run = env.popen("snapshot", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert time.monotonic() < deadline, "the hook did not start"
        time.sleep(0.01)
    hook_pid = int(pidfile.read_text())
    assert not gone(hook_pid, 0), "the hook should be running"
    run.kill()
    run.wait()
    assert gone(hook_pid, 10), "the hook outlived the killed shipper"
    assert sets_json(env) == []
    set_id = snapshot_ok(env)
    target = tmp_path / "restored"
    assert restored_digest(env, set_id, target) == tree_digest(env.src)
    export = target / str(env.state / "set" / "export").lstrip("/") / "app.conf"
    assert export.read_text() == "settings\n"
