"""What a set is when a dump fails midway, against real servers and the real CLI.

A dump killed while it streams, a server stopped while the set runs, and an
account that may not read one database each give a `partial` set (exit 4)
whose message names the database and the cause; the other parts are kept,
and the previous complete set stays as it was (same manifest digests, and it
still loads: restore-db checks every byte against them). Also: the credential
folders a killed run leaves behind, and their removal by the next run.

Left to the fault suite, which has them: a SIGKILLed mariadb-dump
(tests/faults/test_kills.py), a PostgreSQL server killed mid-dump and a MariaDB
user without rights on one database (tests/faults/test_database_faults.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest

from shipper.core import config, sets, state
from shipper.core import manifest as manifests
from shipper.core.restic import Restic
from shipper.databases import base
from tests.faults.helpers import argv_of, descendants
from tests.shipperenv import ShipperEnv, write_secret

pytestmark = pytest.mark.slow

EXIT_PARTIAL = 4
BIG_ROWS = 100_000  # about 11 MB of dump: most of a second through restic
STREAMED = 1 << 20  # act once this much of the dump went out


def server_entry(server, **overrides) -> dict:
    return dataclasses.asdict(server.config(**overrides))


def configure(env: ShipperEnv, mariadb: List[dict], postgresql: List[dict]) -> None:
    env.write_config(
        databases={"enabled": True, "mariadb": mariadb, "postgresql": postgresql},
        notify={"email_to": []},
    )


# ---------------------------------------------------------------- data


def fill(server, database: str, rows: int) -> None:
    """A database with one table of `rows` rows of 96 hex characters."""
    server.sql(f"CREATE DATABASE {database}")
    if server.engine == "mariadb":
        server.sql("CREATE TABLE filler (id INT PRIMARY KEY, pad VARCHAR(200))", database)
        server.sql(
            "INSERT INTO filler SELECT seq, CONCAT(MD5(seq), MD5(seq + 1), MD5(seq + 2)) "
            f"FROM seq_1_to_{rows}",
            database,
        )
    else:
        server.sql(
            "CREATE TABLE filler AS SELECT g AS id, md5(g::text) || md5((g + 1)::text) "
            f"|| md5((g + 2)::text) AS pad FROM generate_series(1, {rows}) g; "
            "ALTER TABLE filler ADD PRIMARY KEY (id)",
            database,
        )


def checksum(server, database: str) -> Tuple[int, str]:
    """(rows, digest of every row) of the filler table, the same on both engines."""
    if server.engine == "mariadb":
        server.sql("SET SESSION group_concat_max_len = 1 << 30")
        query = "SELECT COUNT(*), MD5(GROUP_CONCAT(pad ORDER BY id SEPARATOR ',')) FROM filler"
    else:
        query = "SELECT COUNT(*), MD5(STRING_AGG(pad, ',' ORDER BY id)) FROM filler"
    [(count, digest)] = server.sql(query, database)
    return int(count), digest


@pytest.fixture
def databases() -> Iterator[Callable[..., str]]:
    """make(server, name, rows): a fresh database; all are dropped afterwards."""
    made: List[Tuple[object, str]] = []

    def make(server, name: str, rows: int = 10) -> str:
        database = f"{name}_{uuid.uuid4().hex[:6]}"
        fill(server, database, rows)
        made.append((server, database))
        return database

    yield make
    for server, database in made:
        if getattr(server, "running", True):
            for name in (database, f"{database}_copy"):
                server.sql(f"DROP DATABASE IF EXISTS {name}")


# ---------------------------------------------------------------- processes


def written(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("wchar:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclasses.dataclass
class Fault:
    """Once a `tool` process dumping `database` has written STREAMED bytes, action(pid)."""

    tool: str
    database: str
    action: Callable[[int], None]
    done: Optional[threading.Thread] = None

    def matches(self, pid: int) -> bool:
        argv = argv_of(pid)
        named = any(self.database in arg for arg in argv)
        return bool(argv) and os.path.basename(argv[0]) == self.tool and named

    def fire(self, pid: int) -> None:
        # In a thread: stopping a server takes a moment, and other dumps stream meanwhile.
        self.done = threading.Thread(target=self.action, args=(pid,))
        self.done.start()


def watch(process: subprocess.Popen, faults: List[Fault]) -> None:
    """Poll shipper's process tree until it exits, firing each fault once."""
    while process.poll() is None:
        pending = [fault for fault in faults if fault.done is None]
        if pending:
            for pid in descendants(process.pid):
                fault = next((f for f in pending if f.matches(pid)), None)
                if fault and written(pid) >= STREAMED:
                    fault.fire(pid)
                    pending.remove(fault)
        time.sleep(0.02)
    for fault in faults:
        assert fault.done is not None, f"never saw {fault.tool} stream {fault.database}"
        fault.done.join(60)


# ---------------------------------------------------------------- sets


def snapshot(env: ShipperEnv, faults: Sequence[Fault] = ()) -> Tuple[int, dict, str]:
    """Run `shipper snapshot` as an operator would, with faults injected while it runs:
    (exit code, the run's record, stderr)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = env.popen("snapshot", stdout=out, stderr=err, text=True)
        try:
            watch(process, list(faults))
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    assert "Traceback" not in stderr + stdout, stderr
    folder = config.load(str(env.config_path)).state
    record = state.read_json(folder / state.LAST_RUN)
    assert record is not None
    return process.returncode, record, stderr


def complete_set(env: ShipperEnv) -> str:
    code, outcome, stderr = snapshot(env)
    assert code == 0 and outcome["status"] == "complete", (outcome, stderr)
    return outcome["set_id"]


def failed_parts(outcome: dict) -> Dict[str, str]:
    return {p["name"]: p["error"] for p in outcome["parts"] if p["outcome"] != "ok"}


def kept_parts(outcome: dict) -> set:
    return {p["name"] for p in outcome["parts"] if p["outcome"] == "ok"}


def manifest_digests(env: ShipperEnv, set_id: str) -> Dict[str, str]:
    """Part name -> the sha256 its manifest records, for every dump of the set."""
    restic = Restic.for_config(config.load(str(env.config_path)))
    chosen = sets.find(sets.group(restic.snapshots()), set_id)
    manifest = manifests.read_json(restic, chosen)
    assert manifest is not None and manifest["status"] == "complete"
    return {
        p["name"]: p["details"]["sha256"] for p in manifest["parts"] if "sha256" in p["details"]
    }


def statuses(env: ShipperEnv) -> Dict[str, str]:
    return {s["id"]: s["status"] for s in json.loads(env.run("sets", "--json", check=True).stdout)}


def assert_partial(code: int, outcome: dict, stderr: str, expected: Dict[str, Any]) -> None:
    """Exit 4, a partial set, and each expected part failed with a message holding its
    text (or one of its texts: a tuple)."""
    assert code == EXIT_PARTIAL, (code, stderr)
    assert outcome["status"] == "partial"
    failed = failed_parts(outcome)
    for part, cause in expected.items():
        assert part in failed, (part, failed)
        causes = (cause,) if isinstance(cause, str) else cause
        assert part in failed[part] and any(c in failed[part] for c in causes), failed[part]
        assert f"part {part} failed: " in stderr, stderr  # the user sees it, not only --json


def assert_still_loads(env: ShipperEnv, set_id: str, part: str, server) -> None:
    """restore-db of the old set's dump as a copy gives the same rows as the original."""
    database = part.split(":", 1)[1]
    env.run("restore-db", set_id, part, "--as", f"{database}_copy", check=True)
    assert checksum(server, f"{database}_copy") == checksum(server, database)


# ---------------------------------------------------------------- tests


def test_a_killed_dump_or_a_stopped_server_midstream_gives_a_partial_set(
    shipper_env: ShipperEnv,
    mariadb_server,
    postgresql_server,
    make_mariadb_server,
    databases,
):
    """One run, two faults, each while its dump streams: pg_dump SIGKILLed, and a
    dedicated MariaDB server stopped. Each fault fails its own part only.

    tests/faults has the other two: a SIGKILLed mariadb-dump (test_kills.py) and a
    PostgreSQL server killed mid-dump (test_database_faults.py)."""
    env = shipper_env
    doomed = make_mariadb_server()
    small_m, stopped_m = databases(mariadb_server, "sm"), databases(doomed, "stopm", BIG_ROWS)
    killed_p, small_p = (
        databases(postgresql_server, "killp", BIG_ROWS),
        databases(postgresql_server, "sp"),
    )
    # The doomed server comes second: its parts are "mariadb2:...".
    configure(
        env,
        [
            server_entry(mariadb_server, databases=[small_m]),
            server_entry(doomed, databases=[stopped_m]),
        ],
        [server_entry(postgresql_server, databases=[killed_p, small_p])],
    )
    env.run("init", check=True)
    first = complete_set(env)
    before = manifest_digests(env, first)

    code, second, stderr = snapshot(
        env,
        [
            Fault("pg_dump", killed_p, lambda pid: os.kill(pid, signal.SIGKILL)),
            Fault("mariadb-dump", stopped_m, lambda pid: doomed.stop()),
        ],
    )
    assert_partial(
        code,
        second,
        stderr,
        {
            f"postgresql:{killed_p}": "pg_dump was killed by SIGKILL",
            f"mariadb2:{stopped_m}": "Lost connection",
        },
    )
    # Nothing else failed, bar the stopped server's users and grants if they were still
    # being dumped when the server went.
    others = set(failed_parts(second)) - {f"postgresql:{killed_p}", f"mariadb2:{stopped_m}"}
    assert others <= {"mariadb2:globals"}, others
    kept = {"files", "mariadb:globals", "postgresql:globals", f"mariadb:{small_m}"}
    assert kept | {f"postgresql:{small_p}"} <= kept_parts(second)

    assert statuses(env) == {first: "complete", second["set_id"]: "partial"}
    assert manifest_digests(env, first) == before
    doomed.start()
    assert_still_loads(env, first, f"postgresql:{killed_p}", postgresql_server)
    assert_still_loads(env, first, f"mariadb2:{stopped_m}", doomed)


def test_a_role_that_may_not_connect_to_one_database_gives_a_partial_set_naming_it(
    shipper_env: ShipperEnv, postgresql_server, databases, tmp_path: Path
):
    """(A MariaDB user without rights on one database is tests/faults/test_database_faults.py's.)"""
    env, server = shipper_env, postgresql_server
    role = f"limited_{uuid.uuid4().hex[:6]}"
    password = write_secret(tmp_path / "limited-password", "limited-secret")
    allowed, closed = databases(server, "openp"), databases(server, "closedp")
    server.sql(f"CREATE ROLE {role} LOGIN PASSWORD 'limited-secret'")
    server.sql(f"REVOKE CONNECT ON DATABASE {closed} FROM PUBLIC")
    server.sql(f"GRANT SELECT ON filler TO {role}", allowed)
    try:
        entry = server_entry(
            server, user=role, password_file=str(password), databases=[allowed, closed], tcp=True
        )
        configure(env, [], [entry])
        env.run("init", check=True)
        code, outcome, stderr = snapshot(env)
        assert_partial(
            code, outcome, stderr, {f"postgresql:{closed}": "User does not have CONNECT privilege"}
        )
        assert {"files", f"postgresql:{allowed}"} <= kept_parts(outcome)
        # The role may not read password hashes either: the globals fail, and say why.
        assert (
            "permission denied for table pg_authid" in failed_parts(outcome)["postgresql:globals"]
        )
        assert set(failed_parts(outcome)) == {"postgresql:globals", f"postgresql:{closed}"}
    finally:
        for database in (allowed, closed):
            server.sql(f"DROP DATABASE IF EXISTS {database}")
        server.sql(f"DROP ROLE IF EXISTS {role}")


# ---------------------------------------------------------------- credentials of a killed run


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    done = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_stale_credential_folders_go_and_nothing_else_does(tmp_path: Path):
    root = tmp_path
    dead, alive = dead_pid(), os.getpid()
    stale = root / f"shipper-mariadb2-{dead}-ab_cd123"
    stale.mkdir(mode=0o700)
    (stale / "client.cnf").write_text("password=x\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep").write_text("keep")
    kept = [
        root / f"shipper-postgresql-{alive}-abcdefgh",  # its process runs
        root / "shipper-mariadb-6i9ocv4_",  # no pid in the name: not ours to judge
        root / f"shipper-mariadb-{dead}-abcdefgh.bak",  # not our pattern
        root / f"other-mariadb-{dead}-abcdefgh",
    ]
    for folder in kept:
        folder.mkdir()
    a_file = root / f"shipper-mariadb-{dead}-filefile"
    a_file.write_text("not a folder")
    a_link = root / f"shipper-mariadb-{dead}-linklink"
    a_link.symlink_to(elsewhere)

    assert base.remove_stale_secrets(str(root)) == [str(stale)]
    assert not stale.exists()
    assert all(folder.is_dir() for folder in kept)
    assert a_file.read_text() == "not a folder"
    assert a_link.is_symlink() and (elsewhere / "keep").exists()


def test_a_killed_run_leaves_its_credentials_findable_and_the_next_run_removes_them(
    shipper_env: ShipperEnv, mariadb_server, databases
):
    env = shipper_env
    database = databases(mariadb_server, "creds", BIG_ROWS)
    configure(env, [server_entry(mariadb_server, databases=[database])], [])
    env.run("init", check=True)
    root = Path(base._secret_root() or tempfile.gettempdir())

    run = env.popen("snapshot", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dump = Fault("mariadb-dump", database, action=lambda pid: None)
    try:
        deadline = time.monotonic() + 60
        while not any(dump.matches(pid) for pid in descendants(run.pid)):
            assert run.poll() is None and time.monotonic() < deadline, "the dump never started"
            time.sleep(0.02)
    finally:
        below = descendants(run.pid)
        run.kill()
        run.wait()
        for pid in below:  # they would end on their own; do not leave it to chance
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    [left] = root.glob(f"shipper-mariadb-{run.pid}-*")  # findable: the pid is in its name
    assert (left / "client.cnf").stat().st_mode & 0o077 == 0

    # The next run that needs credentials (even a dry run) clears what the killed one left.
    result = env.run("snapshot", "--dry-run", check=True)
    assert not left.exists()
    assert str(left) in result.stderr
