"""What every database engine shares: dump jobs, credentials, and safe loads.

An engine (one configured server) knows four things of its own: its system
databases, its dump argv, its client argv and its discovery SQL. Everything
else lives here:

- `dump_jobs()` makes one DumpJob for the globals (users, roles, grants) and
  one per database. A job's command writes the dump to stdout; it carries no
  secret (the password goes by a root-only file named in argv or env).
- A database dump starts with one comment line, `-- shipper-database: {json}`,
  naming what the database needs before anything is loaded into it
  (character set, encoding, locale); manual loads ignore it.
- `load()` never touches the database it replaces until the new one is
  complete: the stream goes into a scratch database, and only a load whose
  client exited 0 and whose stream ended with the dump tool's "complete"
  trailer is swapped in (each engine says how it swaps).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import (
    IO,
    Any,
    Callable,
    ClassVar,
    Dict,
    FrozenSet,
    Iterator,
    List,
    Optional,
    Sequence,
)

from shipper.core import process
from shipper.core.errors import ShipperError

from . import rowcount

log = logging.getLogger("shipper.databases")

HEADER_PREFIX = b"-- shipper-database: "
SCRATCH_KINDS = ("load", "old")
CHUNK = 1 << 20
TAIL = 4096


class DatabaseError(ShipperError):
    """A dump, load or query failed; the message names engine, database, cause and remedy."""


@dataclass(frozen=True)
class DumpJob:
    engine: str  # "mariadb" | "postgresql"
    database: Optional[str]  # None for the globals
    part: str  # "mariadb:app", "postgresql:globals"
    filename: str  # flat stream name: "mariadb-app.sql"
    command: List[str]  # argv whose stdout is the dump; no secret in it
    env: Dict[str, str]  # extra environment for the command: paths only
    server_version: str


def wrap_with_hash(job: DumpJob, result_path: str) -> List[str]:
    """The job's command run under core/streamhash.py (byte count and sha256) with the
    engine's scan (rows per table, content digest: dumpscan.py), all to result_path."""
    scan = [sys.executable, "-m", "shipper.databases.dumpscan", job.engine]
    return [*scan, "--out", result_path, "--", *job.command]


def dump_failure_cause(detail: str) -> str:
    """The dump tool's own words in restic's error text for a failed --stdin-from-command.

    restic passes the command's stderr on as "subprocess ARGV0: LINE"; its
    own lines only say that the command failed. "" when the tool said nothing.
    """
    said = [
        " ".join(match.group(1).split())
        for match in (_SUBPROCESS_LINE.match(line) for line in detail.splitlines())
        if match and match.group(1).strip()
    ]
    return _last_lines("\n".join(said), count=3)


_SUBPROCESS_LINE = re.compile(r"^subprocess \S+: (.*)$")


def stream_filename(label: str, database: Optional[str]) -> str:
    """A flat, reversible stream name (restic's --stdin-filename cannot hold '/')."""
    name = "globals" if database is None else database.replace("%", "%25").replace("/", "%2F")
    return f"{label}-{name}.sql"


def scratch_name(kind: str, target: str) -> str:
    """The scratch database a load of `target` uses: fits every engine's name limit."""
    digest = hashlib.sha1(target.encode()).hexdigest()[:10]
    return f"shipper_{kind}_{digest}"


def is_scratch(name: str) -> bool:
    return any(
        name.startswith(f"shipper_{kind}_") and len(name) == len(kind) + 19
        for kind in SCRATCH_KINDS
    )


def header_line(properties: Dict[str, Any]) -> bytes:
    return HEADER_PREFIX + json.dumps(properties, sort_keys=True).encode() + b"\n"


def parse_header(line: bytes) -> Dict[str, Any]:
    """The properties of a dump's first line; {} for a dump without one."""
    if not line.startswith(HEADER_PREFIX):
        return {}
    try:
        value = json.loads(line[len(HEADER_PREFIX) :])
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def write_private(path: Path, text: str) -> None:
    """Create a file only its owner can read (0600), refusing to follow or reuse one."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def read_password(path: str, label: str) -> str:
    try:
        with open(path) as handle:
            return handle.readline().rstrip("\r\n")
    except OSError as exc:
        raise DatabaseError(
            f"{label}: cannot read the password file {path}: {exc.strerror}; "
            "create it (mode 600) or fix password_file"
        ) from None


def find_tool(names: Sequence[str], label: str, package: str) -> str:
    for name in names:
        found = name if os.path.isabs(name) and os.access(name, os.X_OK) else shutil.which(name)
        if found:
            return found
    raise DatabaseError(f"{label}: none of {', '.join(names)} is installed; install {package}")


class Engine:
    """One configured database server; subclasses hold what differs per engine."""

    name: ClassVar[str] = ""
    system_databases: ClassVar[FrozenSet[str]] = frozenset()
    dump_trailer: ClassVar[bytes] = b""  # the dump tool's last words; missing means truncated
    globals_trailer: ClassVar[bytes] = b""

    def __init__(self, server: Any, label: Optional[str] = None):
        self.server = server
        self.label = label or self.name
        self._secrets: Optional[Path] = None
        self._depth = 0
        self._lock = threading.Lock()
        self._version: Optional[str] = None

    # ------------------------------------------------------------ per engine

    def describe(self) -> str:
        raise NotImplementedError

    def _query(
        self, sql: str, params: Sequence[Any] = (), database: Optional[str] = None
    ) -> List[tuple]:
        raise NotImplementedError

    def _version_query(self) -> str:
        raise NotImplementedError

    def _list_databases_query(self) -> str:
        raise NotImplementedError

    def _size_query(self) -> str:
        raise NotImplementedError

    def _write_credentials(self, folder: Path) -> None:
        raise NotImplementedError

    def _env(self) -> Dict[str, str]:
        return {}

    def _dump_command(self, database: str) -> List[str]:
        raise NotImplementedError

    def _globals_command(self) -> List[str]:
        raise NotImplementedError

    def _client_command(self, database: Optional[str]) -> List[str]:
        raise NotImplementedError

    def _create_database(self, name: str, properties: Dict[str, Any]) -> None:
        raise NotImplementedError

    def _drop_database(self, name: str) -> None:
        raise NotImplementedError

    def _replace(self, scratch: str, target: str) -> None:
        """Swap the loaded scratch database in under `target`; all or nothing."""
        raise NotImplementedError

    def _prepare_globals(self, dump: bytes) -> bytes:
        return dump

    def _remedy(self, errors: str) -> str:
        """What to do about a failed load the client's errors name, if the engine knows."""
        return ""

    def _load_stream(self, stream: IO[bytes], scratch: str) -> IO[bytes]:
        """The dump as it goes into the scratch database (an engine may adapt it)."""
        return stream

    # ------------------------------------------------------------ credentials

    @contextlib.contextmanager
    def credentials(self) -> Iterator[None]:
        """Root-only client credential files (0600 in a 0700 folder) while dumps and loads run.

        Reentrant and thread-safe: the files exist while at least one `with` is open.
        The folder is /run/shipper-LABEL-PID-XXXXXXXX; a killed run cannot remove
        its own, so the next one removes those whose process is gone.
        """
        with self._lock:
            if self._depth == 0:
                remove_stale_secrets()
                prefix = f"shipper-{self.label}-{os.getpid()}-"
                folder = Path(tempfile.mkdtemp(prefix=prefix, dir=_secret_root()))
                try:
                    self._write_credentials(folder)
                except BaseException:
                    shutil.rmtree(folder, ignore_errors=True)
                    raise
                self._secrets = folder
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0 and self._secrets is not None:
                    shutil.rmtree(self._secrets, ignore_errors=True)
                    self._secrets = None

    @property
    def secrets(self) -> Path:
        if self._secrets is None:
            raise RuntimeError(
                f"{self.label}: use `with engine.credentials():` around dumps and loads"
            )
        return self._secrets

    # ------------------------------------------------------------ questions

    def version(self) -> str:
        """The server's version, e.g. "10.11.19-MariaDB" or "15.20"."""
        if self._version is None:
            self._version = self._clean_version(str(self._query(self._version_query())[0][0]))
        return self._version

    def _clean_version(self, raw: str) -> str:
        return raw

    def major_version(self) -> str:
        raise NotImplementedError

    def existing_databases(self) -> FrozenSet[str]:
        """Every database the server holds now, system ones included."""
        return frozenset(str(row[0]) for row in self._query(self._list_databases_query()))

    def discover(self) -> List[str]:
        """The user databases to dump: the `databases` selection minus `exclude`."""
        wanted = list(dict.fromkeys(self.server.databases))
        if "all" in wanted:
            rows = self._query(self._list_databases_query())
            wanted = sorted(r[0] for r in rows if r[0] not in self.system_databases)
            wanted = [name for name in wanted if not is_scratch(name)]
        excluded = set(self.server.exclude)
        return [name for name in wanted if name not in excluded]

    def count_rows(self, database: str, tables: Sequence[str]) -> Dict[str, int]:
        """Rows in each table of `database` now, the tables named as the engine's dumps name them."""
        counts: Dict[str, int] = {}
        with self.credentials():
            count_sql = self._count_sql(database)
            for names, query in rowcount.count_queries(tables, count_sql):
                for index, count in self._query(query, (), database):
                    counts[names[int(index)]] = int(count)
        return counts

    def _count_sql(self, database: str) -> Callable[[str], str]:
        """table -> the `count(*) FROM ...` that counts its rows as the dump holds them."""
        raise NotImplementedError

    def database_size(self, database: str) -> int:
        """Bytes the database takes on the server (an estimate of the dump's size)."""
        return int(self._query(self._size_query(), (database,))[0][0] or 0)

    # ------------------------------------------------------------ dumps

    def dump_jobs(self) -> List[DumpJob]:
        """Globals first, then one job per database; run them inside `credentials()`."""
        self.secrets  # noqa: B018 - fail early outside credentials()
        databases = self.discover()
        if "globals" in databases:
            raise DatabaseError(
                f"{self.describe()}: a database named 'globals' would share its part name with "
                "the users and grants; add it to `exclude` or rename it"
            )
        version = self.version()
        jobs = [self._job(None, self._globals_command(), version)]
        return jobs + [self._job(name, self._dump_command(name), version) for name in databases]

    def _job(self, database: Optional[str], command: List[str], version: str) -> DumpJob:
        return DumpJob(
            engine=self.name,
            database=database,
            part=f"{self.label}:{database or 'globals'}",
            filename=stream_filename(self.label, database),
            command=command,
            env=self._env(),
            server_version=version,
        )

    # ------------------------------------------------------------ loads

    def load(self, stream: IO[bytes], database: str, as_name: Optional[str] = None) -> None:
        """Load one database dump as `as_name` (default: its own name), replacing it whole.

        On any failure the database of that name is left exactly as it was.
        """
        target = as_name or database
        scratch = scratch_name("load", target)
        what = f"database {target}"
        with self.credentials():
            stream = self._load_stream(stream, scratch)
            first = _read_head(stream)
            self._drop_database(scratch)
            try:
                self._create_database(scratch, parse_header(first.split(b"\n", 1)[0]))
            except DatabaseError as exc:
                cause = str(exc).removeprefix(f"{self.describe()}: ")
                raise DatabaseError(
                    f"{self.describe()}: loading {what} failed: {cause}; {UNTOUCHED.format(what)}"
                ) from None
            try:
                code, tail, errors = self._run_client(self._client_command(scratch), first, stream)
                self._judge(what, code, tail, errors, self.dump_trailer, UNTOUCHED.format(what))
                self._replace(scratch, target)
            finally:
                with contextlib.suppress(DatabaseError):  # never hide why the load failed
                    self._drop_database(scratch)

    def load_globals(self, stream: IO[bytes]) -> None:
        """Create or update users, roles and grants; the loading account itself is left alone.

        Idempotent: loading the same globals again changes nothing.
        """
        what = "users and grants"
        with self.credentials():
            dump = stream.read()
            if self.globals_trailer not in dump[-TAIL:]:
                raise DatabaseError(
                    f"{self.describe()}: the dump of {what} is truncated (it does not end with "
                    f"{self.globals_trailer.decode()!r}); nothing was loaded; load a complete dump"
                )
            prepared = _BytesStream(self._prepare_globals(dump))
            code, tail, errors = self._run_client(self._client_command(None), b"", prepared)
            self._judge(what, code, tail, errors, b"", GLOBALS_FAILED)

    def _run_client(self, argv: List[str], first: bytes, stream: IO[bytes]) -> tuple:
        """Stream `first` + `stream` into the client: (exit code, the stream's tail, stderr)."""
        # Dies with shipper (process.spawn): a client must not go on loading after a
        # killed shipper; its re-run loads again.
        client = process.spawn(
            argv,
            env=process.scrubbed_environment(self._env()),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert client.stdin is not None and client.stderr is not None
        errors: List[bytes] = []
        reader = threading.Thread(target=lambda: errors.append(client.stderr.read()))  # type: ignore[union-attr]
        reader.start()
        try:
            tail = _copy(first, stream, client.stdin)
        except BaseException:
            client.kill()
            raise
        finally:
            with contextlib.suppress(BrokenPipeError):
                client.stdin.close()
            code = client.wait()
            reader.join()
        return code, tail, _last_lines(b"".join(errors).decode(errors="replace"))

    def _judge(
        self, what: str, code: int, tail: Optional[bytes], errors: str, trailer: bytes, after: str
    ) -> None:
        """Raise unless the client exited 0 having read a complete dump."""
        if code != 0:
            cause = errors or f"the client exited with {code}"
        elif tail is None:
            cause = f"the client stopped reading early ({errors or 'no error text'})"
        elif trailer and trailer not in tail:
            cause = f"the dump is truncated (it does not end with {trailer.decode()!r})"
        else:
            return
        remedy = self._remedy(errors)
        after = f"{remedy}; {after}" if remedy else after
        raise DatabaseError(f"{self.describe()}: loading {what} failed: {cause}; {after}")


UNTOUCHED = "{0} was left as it was before; fix the cause and load again"
GLOBALS_FAILED = (
    "some accounts may already be updated; fix the cause and load again (it is idempotent)"
)


class _BytesStream:
    """Just enough of IO[bytes] for _copy."""

    def __init__(self, data: bytes):
        self._data = memoryview(data)

    def read(self, size: int = -1) -> bytes:
        size = len(self._data) if size < 0 else size
        chunk, self._data = self._data[:size], self._data[size:]
        return bytes(chunk)


def _read_head(stream: IO[bytes]) -> bytes:
    """The stream's first bytes, through its first line (only read() is needed of it)."""
    head = b""
    while b"\n" not in head and len(head) < CHUNK:
        chunk = stream.read(CHUNK)
        if not chunk:
            break
        head += chunk
    return head


def _copy(first: bytes, stream: IO[bytes], target: IO[bytes]) -> Optional[bytes]:
    """Copy into the client; the stream's last bytes, or None when the client quit early."""
    tail = first[-TAIL:]
    try:
        target.write(first)
        while True:
            chunk = stream.read(CHUNK)
            if not chunk:
                return tail
            tail = (tail + chunk[-TAIL:])[-TAIL:]
            target.write(chunk)
    except BrokenPipeError:
        return None


def _last_lines(text: str, count: int = 5) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "ERROR" in line or "error" in line.lower()]
    return " / ".join((errors or lines)[-count:])


def exec_with_header(properties: Dict[str, Any], prologue: bytes, argv: List[str]) -> None:
    """Write the header line (and any SQL prologue), then become the dump tool (no copying)."""
    out = sys.stdout.buffer
    out.write(header_line(properties) + prologue)
    out.flush()
    try:
        process.become(argv)
    except OSError as exc:
        print(f"shipper: cannot run {argv[0]}: {exc.strerror}", file=sys.stderr)
        sys.exit(127)


def _secret_root() -> Optional[str]:
    """/run (memory, root-only) when we can write there; else the usual temporary folder."""
    return "/run" if os.access("/run", os.W_OK) else None


# credentials()'s folders: shipper-LABEL-PID- and mkdtemp's 8 characters.
SECRET_FOLDER = re.compile(r"^shipper-[a-z][a-z0-9]*-(?P<pid>[1-9][0-9]*)-[a-z0-9_]{8}$")


def remove_stale_secrets(root: Optional[str] = None) -> List[str]:
    """Remove credential folders whose shipper process is gone (SIGKILL skips the cleanup).

    Only our own naming pattern, only real folders (no symlink) owned by us, and
    only when no process with that pid runs (a pid that another process took
    since keeps its folder until that process ends). Returns what was removed.
    """
    root = root or _secret_root() or tempfile.gettempdir()
    removed = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    for entry in entries:
        match = SECRET_FOLDER.match(entry.name)
        if not match or _running(int(match.group("pid"))):
            continue
        try:
            info = os.lstat(entry.path)
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid():
            shutil.rmtree(entry.path, ignore_errors=True)
            log.warning("removed %s: credentials left by a shipper run that was killed", entry.path)
            removed.append(entry.path)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
