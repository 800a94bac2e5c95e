"""The database engines against real, throwaway MariaDB and PostgreSQL servers.

Each engine is dumped on one server (A) and loaded into another (B), both
started by tests/dbservers.py; the machine's own servers are never touched.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import psycopg2
import pymysql
import pytest

from shipper.core import config
from shipper.databases import (
    DatabaseError,
    DumpJob,
    Engine,
    MariaDB,
    PostgreSQL,
    base,
    detect_local,
    engines_from_config,
    mariadb,
    wrap_with_hash,
)

PASSWORD_A = "pw-from-A: 'quoted' \"double\" \\ #hash"
PASSWORD_B = "pw:B \\ \"x\" 'y' #z"


# ---------------------------------------------------------------- per-engine kits


class MariaKit:
    engine = MariaDB
    schema = [
        "CREATE TABLE customers (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(100)"
        " CHARACTER SET utf8mb4, photo BLOB, balance DECIMAL(10,2)) ENGINE=InnoDB",
        "CREATE TABLE orders (id INT PRIMARY KEY, customer_id INT, total DECIMAL(10,2),"
        " FOREIGN KEY (customer_id) REFERENCES customers (id)) ENGINE=InnoDB",
        "CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, note TEXT)",
        "CREATE VIEW big_customers AS SELECT id, name FROM customers WHERE balance > 400",
        "CREATE VIEW a_big_names AS SELECT name FROM big_customers",  # a view on a later view
        "CREATE TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW"
        " INSERT INTO audit (note) VALUES (CONCAT('order ', NEW.id))",
        "CREATE FUNCTION double_it(x INT) RETURNS INT DETERMINISTIC RETURN x * 2",
        "CREATE PROCEDURE add_customer(IN n VARCHAR(100))"
        " BEGIN INSERT INTO customers (name, balance) VALUES (n, 0); END",
        "CREATE EVENT nightly ON SCHEDULE EVERY 1 DAY DISABLE DO DELETE FROM audit WHERE id < 0",
        "INSERT INTO customers (name, photo, balance) SELECT CONCAT('name ', seq, ' \U0001f680'),"
        " UNHEX(REPEAT(MD5(seq), 8)), seq % 500 FROM seq_1_to_4000",
        "INSERT INTO customers (name, photo, balance) VALUES ('all bytes', UNHEX('"
        + bytes(range(256)).hex()
        + "'), 1)",
        "INSERT INTO orders (id, customer_id, total) SELECT seq, seq, seq / 7 FROM seq_1_to_300",
    ]

    @staticmethod
    def create_db(server: Any, db: str) -> None:
        server.sql(f"DROP DATABASE IF EXISTS `{db}`")
        server.sql(f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        for statement in MariaKit.schema:
            server.sql(statement, db)

    @staticmethod
    def checksum(server: Any, db: str) -> List[Any]:
        tables = server.sql("CHECKSUM TABLE customers, orders, audit", db)
        rows = server.sql("SELECT COUNT(*) FROM a_big_names", db)
        return [row[1] for row in tables] + [rows[0][0]]

    @staticmethod
    def objects(server: Any, db: str) -> List[tuple]:
        return server.sql(
            "SELECT 'routine', ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s"
            " UNION SELECT 'trigger', TRIGGER_NAME FROM information_schema.TRIGGERS"
            " WHERE TRIGGER_SCHEMA = %s"
            " UNION SELECT 'view', TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s"
            " UNION SELECT 'event', EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s"
            " ORDER BY 1, 2".replace("%s", f"'{db}'")
        )

    @staticmethod
    def use_code(server: Any, db: str) -> List[Any]:
        """The trigger fires, the routines run."""
        server.sql("INSERT INTO orders (id, customer_id, total) VALUES (9001, 1, 1)", db)
        server.sql("CALL add_customer('via procedure')", db)
        return [
            server.sql("SELECT note FROM audit ORDER BY id DESC LIMIT 1", db)[0][0],
            server.sql("SELECT double_it(21)", db)[0][0],
            server.sql("SELECT COUNT(*) FROM customers WHERE name = 'via procedure'", db)[0][0],
        ]

    @staticmethod
    def create_accounts(server: Any, db: str, password: str) -> None:
        server.sql(f"CREATE OR REPLACE USER app@'%' IDENTIFIED BY {_my_literal(password)}")
        server.sql("CREATE ROLE IF NOT EXISTS reader")
        server.sql(f"GRANT SELECT ON `{db}`.* TO reader")
        server.sql("GRANT reader TO app@'%'")
        server.sql("SET DEFAULT ROLE reader FOR app@'%'")

    @staticmethod
    def grant_on_objects(server: Any, db: str) -> None:
        """Grants that need the table and the procedure to exist."""
        server.sql(f"GRANT INSERT ON `{db}`.orders TO app@'%'")
        server.sql(f"GRANT EXECUTE ON PROCEDURE `{db}`.add_customer TO app@'%'")

    @staticmethod
    def create_loader(server: Any, password: str) -> None:
        """An administrator other than root, as an operator might configure."""
        server.sql(f"CREATE OR REPLACE USER loader@'%' IDENTIFIED BY {_my_literal(password)}")
        server.sql("GRANT ALL PRIVILEGES ON *.* TO loader@'%' WITH GRANT OPTION")
        server.sql("GRANT PROXY ON ''@'%' TO loader@'%' WITH GRANT OPTION")

    @staticmethod
    def grants(server: Any) -> List[tuple]:
        return sorted(server.sql("SHOW GRANTS FOR app@'%'") + server.sql("SHOW GRANTS FOR reader"))

    @staticmethod
    def login(server: Any, password: str, db: str) -> Any:
        conn = server.connect(db=db, user="app", password=password, tcp=True)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT COUNT(*) FROM customers")
                return cur.fetchone()[0]
        finally:
            conn.close()

    @staticmethod
    def databases(server: Any) -> List[str]:
        return [row[0] for row in server.sql("SHOW DATABASES")]

    login_errors = (pymysql.MySQLError,)


class PgKit:
    engine = PostgreSQL
    schema = [
        "CREATE TABLE customers (id serial PRIMARY KEY, name text, photo bytea, balance numeric(10,2))",
        "CREATE TABLE orders (id int PRIMARY KEY, customer_id int REFERENCES customers (id),"
        " total numeric(10,2))",
        "CREATE TABLE audit (id serial PRIMARY KEY, note text)",
        "CREATE VIEW big_customers AS SELECT id, name FROM customers WHERE balance > 400",
        "CREATE VIEW a_big_names AS SELECT name FROM big_customers",
        "CREATE FUNCTION double_it(x int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT x * 2'",
        "CREATE FUNCTION orders_audit() RETURNS trigger LANGUAGE plpgsql AS"
        " $$BEGIN INSERT INTO audit (note) VALUES ('order ' || NEW.id); RETURN NEW; END$$",
        "CREATE TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION orders_audit()",
        "CREATE PROCEDURE add_customer(n text) LANGUAGE sql"
        " AS $$INSERT INTO customers (name, balance) VALUES (n, 0)$$",
        "INSERT INTO customers (name, photo, balance) SELECT 'name ' || i || ' \U0001f680',"
        " decode(repeat(md5(i::text), 8), 'hex'), i % 500 FROM generate_series(1, 4000) i",
        "INSERT INTO customers (name, photo, balance) VALUES ('all bytes', '\\x"
        + bytes(range(256)).hex()
        + "', 1)",
        "INSERT INTO orders SELECT i, i, i / 7.0 FROM generate_series(1, 300) i",
        "ALTER TABLE customers OWNER TO app",
        'GRANT SELECT ON customers TO "Weird Reader"',
        "ALTER DATABASE current_db_placeholder OWNER TO app",
    ]

    @staticmethod
    def create_db(server: Any, db: str) -> None:
        PgKit.create_roles(server)
        server.sql(f'CREATE DATABASE "{db}"')
        for statement in PgKit.schema:
            server.sql(statement.replace("current_db_placeholder", f'"{db}"'), db)

    @staticmethod
    def checksum(server: Any, db: str) -> List[Any]:
        return [
            server.sql(f"SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {table} t", db)[
                0
            ][0]
            for table in ("customers", "orders", "audit", "a_big_names")
        ]

    @staticmethod
    def objects(server: Any, db: str) -> List[tuple]:
        return server.sql(
            "SELECT 'routine', proname::text FROM pg_proc WHERE pronamespace = 'public'::regnamespace"
            " UNION SELECT 'trigger', tgname::text FROM pg_trigger WHERE NOT tgisinternal"
            " UNION SELECT 'view', viewname::text FROM pg_views WHERE schemaname = 'public'"
            " UNION SELECT 'owner', pg_get_userbyid(datdba)::text FROM pg_database"
            " WHERE datname = current_database()"
            " UNION SELECT 'acl', relname || ' ' || relacl::text FROM pg_class WHERE relacl IS NOT NULL"
            " AND relnamespace = 'public'::regnamespace ORDER BY 1, 2",
            db,
        )

    @staticmethod
    def use_code(server: Any, db: str) -> List[Any]:
        server.sql("INSERT INTO orders VALUES (9001, 1, 1)", db)
        server.sql("CALL add_customer('via procedure')", db)
        return [
            server.sql("SELECT note FROM audit ORDER BY id DESC LIMIT 1", db)[0][0],
            server.sql("SELECT double_it(21)", db)[0][0],
            server.sql("SELECT count(*) FROM customers WHERE name = 'via procedure'", db)[0][0],
        ]

    @staticmethod
    def create_roles(server: Any) -> None:
        for role in ("app", '"Weird Reader"'):
            server.sql(f"DO $$BEGIN CREATE ROLE {role}; EXCEPTION WHEN duplicate_object THEN END$$")

    @staticmethod
    def create_accounts(server: Any, db: str, password: str) -> None:
        PgKit.create_roles(server)
        server.sql(f"ALTER ROLE app LOGIN PASSWORD {_pg_literal(password)}")
        server.sql('GRANT "Weird Reader" TO app')

    @staticmethod
    def grant_on_objects(server: Any, db: str) -> None:
        pass  # object privileges are part of pg_dump's output

    @staticmethod
    def create_loader(server: Any, password: str) -> None:
        server.sql("DO $$BEGIN CREATE ROLE loader; EXCEPTION WHEN duplicate_object THEN END$$")
        server.sql(f"ALTER ROLE loader SUPERUSER LOGIN PASSWORD {_pg_literal(password)}")

    @staticmethod
    def grants(server: Any) -> List[tuple]:
        return server.sql(
            "SELECT r.rolname, r.rolcanlogin, m.roleid::regrole::text FROM pg_roles r"
            " LEFT JOIN pg_auth_members m ON m.member = r.oid"
            " WHERE r.rolname IN ('app', 'Weird Reader') ORDER BY 1"
        )

    @staticmethod
    def login(server: Any, password: str, db: str) -> Any:
        conn = server.connect(db=db, user="app", password=password, tcp=True)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM customers")
                return cur.fetchone()[0]
        finally:
            conn.close()

    @staticmethod
    def databases(server: Any) -> List[str]:
        return [row[0] for row in server.sql("SELECT datname FROM pg_database")]

    login_errors = (psycopg2.Error,)


KITS = {"mariadb": MariaKit, "postgresql": PgKit}


def _my_literal(text: str) -> str:
    return "'" + pymysql.converters.escape_string(text) + "'"


def _pg_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def private_file(path: Path, text: str) -> str:
    path.write_text(text + "\n")
    path.chmod(0o600)
    return str(path)


@pytest.fixture(scope="module", params=sorted(KITS))
def pair(request: Any) -> Dict[str, Any]:
    """Two servers of one engine (A: the master, B: the spare) and its kit."""
    engine = request.param
    factory = request.getfixturevalue(f"make_{engine}_server")
    first = request.getfixturevalue(f"{engine}_server")
    return {"kit": KITS[engine], "a": first, "b": factory(), "name": engine}


class OnlyRead:
    """A stream with nothing but read(), like restic's dump pipe behind a digest check."""

    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._data.read(size)


class FailingAtEnd(OnlyRead):
    """Like promote's digest check: every byte read, then an error instead of EOF."""

    def read(self, size: int = -1) -> bytes:
        data = super().read(size)
        if not data:
            raise ValueError("digest mismatch")
        return data


def engine_for(server: Any, kit: Any, **selection: Any) -> Engine:
    return kit.engine(server.config(**selection))


def dump_all(engine: Engine) -> Dict[str, bytes]:
    """Run every dump job's command as the snapshot would: {part: dump bytes}."""
    out = {}
    with engine.credentials():
        for job in engine.dump_jobs():
            done = subprocess.run(job.command, env={**os.environ, **job.env}, capture_output=True)
            assert done.returncode == 0, done.stderr.decode()
            out[job.part] = done.stdout
    return out


def load_all(engine: Engine, dumps: Dict[str, bytes], **as_names: str) -> None:
    """Globals, every database, and the globals again (table and routine grants)."""
    label = engine.label
    engine.load_globals(OnlyRead(dumps[f"{label}:globals"]))
    for part, data in dumps.items():
        database = part.split(":", 1)[1]
        if database != "globals":
            engine.load(OnlyRead(data), database, as_names.get(database))
    engine.load_globals(OnlyRead(dumps[f"{label}:globals"]))


# ---------------------------------------------------------------- tests


def test_discover_selects_user_databases(pair: Dict[str, Any]) -> None:
    kit, server = pair["kit"], pair["b"]
    for name in ("disc_a", "disc_b", "disc_c"):
        server.sql(f"CREATE DATABASE {name}")
    found = engine_for(server, kit, exclude=["disc_b"]).discover()
    assert {"disc_a", "disc_c"} <= set(found)
    assert "disc_b" not in found
    assert not set(found) & kit.engine.system_databases
    assert engine_for(server, kit, databases=["disc_a"]).discover() == ["disc_a"]
    assert engine_for(server, kit).database_size("disc_a") >= 0


def test_dump_and_load_between_two_servers(pair: Dict[str, Any], tmp_path: Path) -> None:
    kit, a, b, name = pair["kit"], pair["a"], pair["b"], pair["name"]
    kit.create_accounts(a, "shop", PASSWORD_A)
    kit.create_db(a, "shop")
    kit.grant_on_objects(a, "shop")
    kit.create_loader(a, "loader password on A")
    kit.create_accounts(b, "shop", "another password")  # exists on B: gets A's password
    kit.create_loader(b, PASSWORD_B)
    dumps = dump_all(engine_for(a, kit, databases=["shop"]))
    assert list(dumps) == [f"{name}:globals", f"{name}:shop"]
    expected = kit.checksum(a, "shop")
    assert engine_for(a, kit).database_size("shop") > 0
    # B loads over TCP as `loader`, with a password full of quoting traps.
    password_file = private_file(tmp_path / "loader-password", PASSWORD_B)
    target = engine_for(b, kit, tcp=True, user="loader", password_file=password_file)

    load_all(target, dumps)

    assert kit.checksum(b, "shop") == expected
    assert kit.objects(b, "shop") == kit.objects(a, "shop")
    assert kit.grants(b) == kit.grants(a)
    assert kit.login(b, PASSWORD_A, "shop") == 4001
    with pytest.raises(kit.login_errors):
        kit.login(b, "another password", "shop")
    b.connect(user="loader", password=PASSWORD_B, tcp=True).close()  # the loader kept its own
    assert kit.use_code(b, "shop") == kit.use_code(a, "shop") == ["order 9001", 42, 1]
    assert not [db for db in kit.databases(b) if base.is_scratch(db)]

    # Loading again replaces the database whole (the swap with an old one in place) ...
    target.load(OnlyRead(dumps[f"{name}:shop"]), "shop")
    assert kit.checksum(b, "shop") == expected
    assert kit.objects(b, "shop") == kit.objects(a, "shop")
    # ... and loads under another name, next to it.
    target.load(OnlyRead(dumps[f"{name}:shop"]), "shop", as_name="shop_copy")
    assert kit.checksum(b, "shop_copy") == expected
    assert kit.objects(b, "shop_copy") == kit.objects(a, "shop")
    assert kit.use_code(b, "shop_copy") == ["order 9001", 42, 1]
    assert not [db for db in kit.databases(b) if base.is_scratch(db)]


def test_failed_load_keeps_the_previous_database(pair: Dict[str, Any]) -> None:
    kit, a, b, name = pair["kit"], pair["a"], pair["b"], pair["name"]
    kit.create_db(a, "keep")
    kit.create_db(b, "keep")
    b.sql("INSERT INTO audit (note) VALUES ('only on B')", "keep")
    before, objects = kit.checksum(b, "keep"), kit.objects(b, "keep")
    dump = dump_all(engine_for(a, kit, databases=["keep"]))[f"{name}:keep"]
    target = engine_for(b, kit)
    cut_at_line = dump[: dump.rindex(kit.engine.dump_trailer)]  # every statement complete
    for broken, message in (
        (b"this is not SQL at all;\n", "syntax"),
        (dump[: len(dump) // 2], "ERROR"),
        (cut_at_line, "truncated"),
    ):
        with pytest.raises(DatabaseError) as failure:
            target.load(OnlyRead(broken), "keep")
        assert message in str(failure.value)
        assert name in str(failure.value) and "keep" in str(failure.value)
        assert kit.checksum(b, "keep") == before
        assert kit.objects(b, "keep") == objects
    with pytest.raises(ValueError, match="digest"):  # the stream itself fails at its end
        target.load(FailingAtEnd(dump), "keep")
    assert kit.checksum(b, "keep") == before
    with pytest.raises(DatabaseError):
        target.load(OnlyRead(b"garbage\n"), "keep", as_name="never_made")
    assert "never_made" not in kit.databases(b)
    assert not [db for db in kit.databases(b) if base.is_scratch(db)]


def test_truncated_globals_load_nothing(pair: Dict[str, Any]) -> None:
    kit, a, b = pair["kit"], pair["a"], pair["b"]
    source = engine_for(a, kit)
    with source.credentials():
        job = source.dump_jobs()[0]
        dump = subprocess.run(
            job.command, env={**os.environ, **job.env}, capture_output=True
        ).stdout
    with pytest.raises(DatabaseError, match="truncated"):
        engine_for(b, kit).load_globals(OnlyRead(dump[: len(dump) - 40]))


def test_mariadb_swap_failure_restores_the_old_database(mariadb_server: Any, monkeypatch) -> None:
    server, kit = mariadb_server, MariaKit
    kit.create_db(server, "swapfail")
    engine = engine_for(server, kit)
    dump = dump_all(engine_for(server, kit, databases=["swapfail"]))["mariadb:swapfail"]
    server.sql("INSERT INTO audit (note) VALUES ('not in the dump')", "swapfail")
    before, objects = kit.checksum(server, "swapfail"), kit.objects(server, "swapfail")
    real_create = mariadb._create_one
    failures = []

    def failing(cur: Any, obj: Any, tolerate_missing: bool) -> bool:
        """Fail once: creating the new contents' event under the real name."""
        cur.execute("SELECT DATABASE()")
        if cur.fetchone()[0] == "swapfail" and obj.kind == "EVENT" and not failures:
            failures.append(obj)
            raise pymysql.err.OperationalError(1234, "injected failure")
        return real_create(cur, obj, tolerate_missing)

    monkeypatch.setattr(mariadb, "_create_one", failing)
    with pytest.raises(DatabaseError, match="injected failure"):
        engine.load(OnlyRead(dump), "swapfail")
    monkeypatch.setattr(mariadb, "_create_one", real_create)
    assert failures
    assert kit.checksum(server, "swapfail") == before
    assert kit.objects(server, "swapfail") == objects
    assert not [name for name in kit.databases(server) if base.is_scratch(name)]


def test_dump_of_a_stopped_server_fails(request: Any) -> None:
    for name, kit in KITS.items():
        server = request.getfixturevalue(f"make_{name}_server")()
        server.sql("CREATE DATABASE gone")
        engine = engine_for(server, kit)
        with engine.credentials():
            jobs = engine.dump_jobs()
            server.stop()
            for job in jobs:
                done = subprocess.run(
                    job.command, env={**os.environ, **job.env}, capture_output=True
                )
                assert done.returncode != 0, job.part
                assert done.stderr


def test_jobs_carry_no_secret_and_credentials_are_private(pair: Dict[str, Any]) -> None:
    kit, server = pair["kit"], pair["a"]
    engine = engine_for(server, kit)
    with engine.credentials():
        folder = engine.secrets
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        files = list(folder.iterdir())
        assert files and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
        jobs = engine.dump_jobs()
        for job in jobs:
            assert isinstance(job, DumpJob) and job.engine == pair["name"]
            assert server.password not in " ".join(job.command)
            assert all(server.password not in value for value in job.env.values())
            assert "/" not in job.filename and job.filename.endswith(".sql")
            assert job.server_version == engine.version()
        assert jobs[0].database is None and jobs[0].part == f"{pair['name']}:globals"
    assert not folder.exists()
    with pytest.raises(RuntimeError):
        engine.dump_jobs()


def test_versions(pair: Dict[str, Any]) -> None:
    engine = engine_for(pair["a"], pair["kit"])
    version, major = engine.version(), engine.major_version()
    assert version.startswith(major + ".") or version == major
    if pair["name"] == "mariadb":
        assert version.endswith("-MariaDB") and major.count(".") == 1
    else:
        assert version.replace(".", "").isdigit()


def test_engines_from_config(tmp_path: Path, monkeypatch) -> None:
    maria = config.MariaDBServer("/x.sock", None, 3306, "root", None, ["all"], [])
    pg = config.PostgreSQLServer("/run/pg", 5432, "postgres", None, ["all"], [])
    off = config.Databases(enabled=False, parallel=2, mariadb=[maria], postgresql=None)
    assert engines_from_config(off) == []
    two = config.Databases(enabled=True, parallel=2, mariadb=[maria, maria], postgresql=[pg])
    assert [(e.name, e.label) for e in engines_from_config(two)] == [
        ("mariadb", "mariadb"),
        ("mariadb", "mariadb2"),
        ("postgresql", "postgresql"),
    ]
    import shipper.databases as databases

    monkeypatch.setattr(
        databases, "local_socket", lambda name, server: name == "postgresql" or None
    )
    auto = engines_from_config(
        config.Databases(enabled=True, parallel=2, mariadb=None, postgresql=None)
    )
    assert [(e.name, e.server.host, e.server.port) for e in auto] == [
        ("postgresql", "/run/postgresql", 5432)
    ]
    monkeypatch.undo()
    assert len(detect_local()) == 2 and all(": " in line for line in detect_local())


def test_stream_filenames_are_flat() -> None:
    assert base.stream_filename("mariadb", "app") == "mariadb-app.sql"
    assert base.stream_filename("postgresql", None) == "postgresql-globals.sql"
    assert base.stream_filename("mariadb", "a/b%c") == "mariadb-a%2Fb%25c.sql"


# ---------------------------------------------------------------- streamhash


def streamhash(tmp_path: Path, *command: str) -> subprocess.CompletedProcess:
    result = tmp_path / "result.json"
    return subprocess.run(
        [sys.executable, "-m", "shipper.core.streamhash", "--out", str(result), "--", *command],
        capture_output=True,
    )


def test_streamhash_passes_data_and_hashes_it(tmp_path: Path) -> None:
    data = os.urandom(3 << 20) + b"end"
    source = tmp_path / "data"
    source.write_bytes(data)
    done = streamhash(tmp_path, "cat", str(source))
    assert done.returncode == 0 and done.stdout == data
    result = json.loads((tmp_path / "result.json").read_text())
    assert result == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_streamhash_exit_codes_and_no_result_on_failure(tmp_path: Path) -> None:
    (tmp_path / "result.json").write_text("stale")
    done = streamhash(tmp_path, "sh", "-c", "echo partial; echo oops >&2; exit 7")
    assert done.returncode == 7
    assert done.stdout == b"partial\n" and done.stderr == b"oops\n"
    assert not (tmp_path / "result.json").exists()
    done = streamhash(tmp_path, "sh", "-c", "kill -TERM $$")
    assert done.returncode == 128 + signal.SIGTERM
    assert not (tmp_path / "result.json").exists()
    assert streamhash(tmp_path, "/no/such/command").returncode == 127
    assert streamhash(tmp_path, "true").returncode == 0
    assert json.loads((tmp_path / "result.json").read_text())["bytes"] == 0


def test_wrap_with_hash_runs_the_job(tmp_path: Path) -> None:
    job = DumpJob("mariadb", "x", "mariadb:x", "mariadb-x.sql", ["printf", "abc"], {}, "1")
    result = tmp_path / "r.json"
    done = subprocess.run(wrap_with_hash(job, str(result)), capture_output=True)
    assert done.stdout == b"abc"
    assert json.loads(result.read_text())["sha256"] == hashlib.sha256(b"abc").hexdigest()


def test_unchanged_database_dumps_the_same_bytes(pair: Dict[str, Any]) -> None:
    """What restic deduplicates: no dates, no random order (pg_dump's \\restrict key aside)."""
    kit, a, name = pair["kit"], pair["a"], pair["name"]
    kit.create_db(a, "steady")
    engine = engine_for(a, kit, databases=["steady"])
    first, second = (dump_all(engine)[f"{name}:steady"] for _ in range(2))

    def stable(dump: bytes) -> List[bytes]:
        return [
            line
            for line in dump.split(b"\n")
            if not line.startswith((b"\\restrict", b"\\unrestrict"))
        ]

    assert stable(first) == stable(second)


def test_mariadb_option_file_survives_any_password(mariadb_server: Any, tmp_path: Path) -> None:
    password_file = private_file(tmp_path / "pw", PASSWORD_B)
    engine = MariaDB(mariadb_server.config(password_file=password_file))
    with engine.credentials():
        options = mariadb._read_options(engine.option_file)
    assert options["password"] == PASSWORD_B
    assert options["socket"] == mariadb_server.socket and options["user"] == "root"


def test_dump_options_reach_the_dump_tool(pair: Dict[str, Any]) -> None:
    """A server entry's dump_options are passed to mariadb-dump / pg_dump."""
    kit, server, name = pair["kit"], pair["a"], pair["name"]
    kit.create_db(server, "opts")
    option, marker = {
        "mariadb": ("--skip-add-drop-table", b"DROP TABLE IF EXISTS"),
        "postgresql": ("--no-owner", b"customers OWNER TO"),
    }[name]
    plain = dump_all(engine_for(server, kit, databases=["opts"]))[f"{name}:opts"]
    extra = dump_all(engine_for(server, kit, databases=["opts"], dump_options=[option]))
    assert marker in plain
    assert marker not in extra[f"{name}:opts"] and b"customers" in extra[f"{name}:opts"]
