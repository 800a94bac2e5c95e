"""Throwaway MariaDB and PostgreSQL servers for tests.

Each server gets its own data directory, socket and TCP port under a private
temporary folder, and is started from the installed server binaries; the
machine's own servers (3306, 5432, /run/mysqld, /run/postgresql) are never
touched. Servers run with durability off (they hold test data only) and die
with the test process (setpriv --pdeathsig), so a killed pytest leaves none
behind.

Fixtures (all session-scoped, so any test or fixture can use them):

    mariadb_server, postgresql_server     one shared running server each;
                                          make your own databases in it
    make_mariadb_server(**kw)             a new, started server per call
    make_postgresql_server(**kw)          (kw: netns=, bind=); stopped at the
                                          end of the session, or by .stop()

A server knows how to run SQL as its superuser (`sql(query, db=None)`), how to
log in as anyone (`connect(user=, password=, tcp=True)`) and how to describe
itself to shipper (`config()` -> shipper.config.MariaDBServer /
PostgreSQLServer, with a root-only password file).
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import psycopg2
import pymysql
import pytest

from shipper.core import config

SUPERUSER_PASSWORD = "shipper-test-superuser"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def free_port(bind: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((bind, 0))
        return sock.getsockname()[1]


class PortTaken(RuntimeError):
    pass


class DBServer:
    """One server process with its own data directory; subclasses say how."""

    engine = ""
    run_as: Optional[str] = None  # system user the server runs as; None: root
    superuser = ""

    def __init__(
        self,
        workdir: Path,
        netns: Optional[str] = None,
        bind: str = "127.0.0.1",
        port: Optional[int] = None,
    ):
        self.workdir = Path(workdir)
        self.datadir = self.workdir / "data"
        self.netns = netns
        self.bind = bind
        self.fixed_port = port is not None
        self.port = port or free_port()
        self.password = SUPERUSER_PASSWORD
        self.password_file = self.workdir / "superuser-password"
        self.log_path = self.workdir / "server.log"
        self.process: Optional[subprocess.Popen] = None
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o755)
        self.password_file.write_text(self.password + "\n")
        os.chmod(self.password_file, 0o600)

    # ------------------------------------------------------------ per engine

    def initialize(self) -> None:
        raise NotImplementedError

    def server_argv(self) -> List[str]:
        raise NotImplementedError

    def connect(
        self,
        db: Optional[str] = None,
        user: Optional[str] = None,
        password: Optional[str] = None,
        tcp: bool = False,
    ) -> Any:
        """A DB-API connection (autocommit); by default the superuser over the socket."""
        raise NotImplementedError

    def config(self, **overrides: Any) -> Any:
        raise NotImplementedError

    # ------------------------------------------------------------ lifecycle

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> DBServer:
        """Start (initializing the data directory the first time) and wait until it answers.

        A port picked for us that someone else took meanwhile is picked again.
        """
        if self.running:
            return self
        if not self.datadir.exists():
            self.initialize()
        for attempt in range(3):
            self._launch()
            try:
                self._wait_ready()
                return self
            except PortTaken:
                if self.fixed_port or attempt == 2:
                    raise
                self.port = free_port()
        return self

    def _launch(self) -> None:
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")  # noqa: SIM115 - the server keeps writing to it
        try:
            self.process = subprocess.Popen(
                self._launcher() + self.server_argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()

    def stop(self) -> None:
        """Clean shutdown (SIGTERM / PostgreSQL's fast shutdown), SIGKILL if it hangs."""
        self._signal(signal.SIGINT if self.engine == "postgresql" else signal.SIGTERM)
        self._reap(STOP_TIMEOUT)

    def kill(self) -> None:
        """Crash the server (SIGKILL): no shutdown, like a power cut."""
        self._signal(signal.SIGKILL)
        self._reap(STOP_TIMEOUT)

    def sql(self, query: str, db: Optional[str] = None) -> List[tuple]:
        """Run SQL as the superuser; the rows of the last statement that returned rows."""
        conn = self.connect(db)
        try:
            return _run_sql(conn, query)
        finally:
            conn.close()

    def _launcher(self) -> List[str]:
        argv = ["ip", "netns", "exec", self.netns] if self.netns else []
        argv += ["setpriv", "--pdeathsig", "KILL"]
        if self.run_as:
            argv += [f"--reuid={self.run_as}", f"--regid={self.run_as}", "--init-groups"]
        return argv

    def _chown(self, path: Path) -> None:
        if self.run_as:
            shutil.chown(path, self.run_as, self.run_as)

    def _signal(self, sig: int) -> None:
        if self.running:
            assert self.process is not None
            self.process.send_signal(sig)

    def _reap(self, timeout: float) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                tail = self._log_tail()
                self.process = None
                if "already in use" in tail:
                    raise PortTaken(f"{self.engine} test server: port {self.port} taken:\n{tail}")
                raise RuntimeError(f"{self.engine} test server exited:\n{tail}")
            try:
                self.connect().close()
                return
            except (pymysql.Error, psycopg2.Error):
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(
                        f"{self.engine} test server not up in {START_TIMEOUT}s:\n{self._log_tail()}"
                    ) from None
                time.sleep(0.05)

    def _log_tail(self) -> str:
        """The last lines the server logged since it was last launched."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(getattr(self, "_log_start", 0))
                text = log.read().decode(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-20:])

    def _run(self, argv: Sequence[str]) -> None:
        done = subprocess.run(list(argv), capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stdout}{done.stderr}")

    def __repr__(self) -> str:
        where = f" netns={self.netns}" if self.netns else ""
        return f"<{type(self).__name__} {self.bind}:{self.port}{where} {self.workdir}>"


def _run_sql(conn: Any, query: str) -> List[tuple]:
    with conn.cursor() as cur:
        cur.execute(query)
        rows: List[tuple] = list(cur.fetchall()) if cur.description else []
        while hasattr(cur, "nextset") and _next_result(cur):
            if cur.description:
                rows = list(cur.fetchall())
        return rows


def _next_result(cur: Any) -> bool:
    try:
        return bool(cur.nextset())
    except psycopg2.NotSupportedError:
        return False


class MariaDBServer(DBServer):
    engine = "mariadb"
    superuser = "root"

    def __init__(self, workdir: Path, default_install: bool = False, **kw: Any):
        """default_install: as a packaged server is, with the test database and its
        grants to the PUBLIC role (the tidy default installs with --skip-test-db)."""
        super().__init__(workdir, **kw)
        self.socket = str(self.workdir / "mysqld.sock")
        self.default_install = default_install

    def initialize(self) -> None:
        self._run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={self.datadir}",
                "--user=root",
                "--auth-root-authentication-method=socket",
                *([] if self.default_install else ["--skip-test-db"]),
                "--skip-name-resolve",
                "--innodb-log-file-size=16M",
            ]
        )

    def server_argv(self) -> List[str]:
        return [
            "/usr/sbin/mariadbd",
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--socket={self.socket}",
            f"--port={self.port}",
            f"--bind-address={self.bind}",
            f"--pid-file={self.workdir / 'mariadbd.pid'}",
            "--user=root",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=64M",
            "--innodb-log-file-size=16M",
            "--innodb-flush-log-at-trx-commit=0",
            "--innodb-doublewrite=0",
            "--max-connections=100",
            "--event-scheduler=OFF",
        ]

    def _wait_ready(self) -> None:
        super()._wait_ready()
        # root over TCP, with the same password the socket accepts too.
        self.sql(
            f"ALTER USER root@localhost IDENTIFIED VIA unix_socket "
            f"OR mysql_native_password USING PASSWORD('{self.password}');"
            f"CREATE USER IF NOT EXISTS root@'%' IDENTIFIED BY '{self.password}';"
            "GRANT ALL PRIVILEGES ON *.* TO root@'%' WITH GRANT OPTION"
        )

    def connect(self, db=None, user=None, password=None, tcp=False):
        where: Dict[str, Any] = {"host": self.bind, "port": self.port} if tcp else {}
        if not tcp:
            where["unix_socket"] = self.socket
        return pymysql.connect(
            user=user or self.superuser,
            password=self.password if password is None else password,
            database=db,
            autocommit=True,
            charset="utf8mb4",
            client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS,
            connect_timeout=5,
            **where,
        )

    def config(self, **overrides: Any) -> config.MariaDBServer:
        """shipper's view of this server: the socket, or TCP with tcp=True."""
        tcp = overrides.pop("tcp", False)
        values: Dict[str, Any] = dict(
            socket=None if tcp else self.socket,
            host=self.bind if tcp else None,
            port=self.port,
            user="root",
            password_file=str(self.password_file),
            databases=["all"],
            exclude=[],
        )
        values.update(overrides)
        return config.MariaDBServer(**values)


def postgresql_bindir() -> Path:
    """The newest installed PostgreSQL's bin folder (Debian layout)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=_version_key)
    if not found:
        pytest.skip("no PostgreSQL server installed (/usr/lib/postgresql/*/bin/postgres)")
    return Path(found[-1]).parent


def _version_key(path: str) -> tuple:
    return tuple(int(p) for p in Path(path).parts[-3].split(".") if p.isdigit())


class PostgreSQLServer(DBServer):
    engine = "postgresql"
    run_as = "postgres"
    superuser = "postgres"

    def __init__(self, workdir: Path, **kw: Any):
        super().__init__(workdir, **kw)
        self.socket = str(self.workdir / "run")  # the socket folder
        self.bindir = postgresql_bindir()

    def initialize(self) -> None:
        for folder in (Path(self.socket), self.datadir):
            folder.mkdir(mode=0o700, exist_ok=True)
            self._chown(folder)
        pwfile = self.workdir / "initdb-password"
        pwfile.write_text(self.password + "\n")
        self._chown(pwfile)
        self._run(
            self._launcher()
            + [
                str(self.bindir / "initdb"),
                f"--pgdata={self.datadir}",
                "--username=postgres",
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ]
        )
        pwfile.unlink()
        with open(self.datadir / "pg_hba.conf", "a") as hba:
            hba.write("host all all all scram-sha-256\n")

    def server_argv(self) -> List[str]:
        settings = {
            "listen_addresses": self.bind,
            "port": str(self.port),
            "unix_socket_directories": self.socket,
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "32MB",
            "max_connections": "50",
            "logging_collector": "off",
        }
        argv = [str(self.bindir / "postgres"), "-D", str(self.datadir)]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        return argv

    def connect(self, db=None, user=None, password=None, tcp=False):
        return _autocommit(
            psycopg2.connect(
                host=self.bind if tcp else self.socket,
                port=self.port,
                user=user or self.superuser,
                password=self.password if password is None else password,
                dbname=db or "postgres",
                connect_timeout=5,
            )
        )

    def config(self, **overrides: Any) -> config.PostgreSQLServer:
        """shipper's view of this server: the socket folder, or TCP with tcp=True."""
        tcp = overrides.pop("tcp", False)
        values: Dict[str, Any] = dict(
            host=self.bind if tcp else self.socket,
            port=self.port,
            user="postgres",
            password_file=str(self.password_file),
            databases=["all"],
            exclude=[],
        )
        values.update(overrides)
        return config.PostgreSQLServer(**values)


def _autocommit(conn: Any) -> Any:
    conn.autocommit = True
    return conn


# ---------------------------------------------------------------- fixtures


class ServerFactory:
    """Makes started servers under one private folder; stops them all at the end."""

    def __init__(self, cls: type, root: Path):
        self.cls = cls
        self.root = root
        self.servers: List[DBServer] = []

    def __call__(self, **kw: Any) -> DBServer:
        workdir = Path(tempfile.mkdtemp(prefix=f"{self.cls.engine}-", dir=self.root))
        server = self.cls(workdir, **kw)
        self.servers.append(server)
        return server.start()

    def close(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture(scope="session")
def dbservers_root() -> Iterator[Path]:
    """A private folder for every test server's files (PostgreSQL's user must reach it)."""
    root = Path(tempfile.mkdtemp(prefix="shipper-dbservers-"))
    os.chmod(root, 0o711)
    atexit.register(shutil.rmtree, root, True)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _factory(cls: type, root: Path) -> Iterator[Callable[..., DBServer]]:
    factory = ServerFactory(cls, root)
    atexit.register(factory.close)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="session")
def make_mariadb_server(dbservers_root: Path) -> Iterator[Callable[..., MariaDBServer]]:
    if not Path("/usr/sbin/mariadbd").exists():
        pytest.skip("MariaDB server not installed (/usr/sbin/mariadbd)")
    yield from _factory(MariaDBServer, dbservers_root)


@pytest.fixture(scope="session")
def make_postgresql_server(dbservers_root: Path) -> Iterator[Callable[..., PostgreSQLServer]]:
    postgresql_bindir()
    yield from _factory(PostgreSQLServer, dbservers_root)


@pytest.fixture(scope="session")
def mariadb_server(make_mariadb_server: Callable[..., MariaDBServer]) -> MariaDBServer:
    return make_mariadb_server()


@pytest.fixture(scope="session")
def postgresql_server(make_postgresql_server: Callable[..., PostgreSQLServer]) -> PostgreSQLServer:
    return make_postgresql_server()
