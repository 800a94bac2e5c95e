"""MariaDB (and MySQL-compatible) servers.

Dump: mariadb-dump (or mysqldump) --single-transaction: one consistent InnoDB
snapshot that blocks no writer, with routines, events and triggers, binary
columns as hex, utf8mb4, and no CREATE DATABASE / USE, so a dump loads under
any name. The stream starts with the database's character set and collation
(a comment line; see base.py).

Globals: generated here (`python -m shipper.databases.mariadb globals`) from
SHOW CREATE USER and SHOW GRANTS, because mariadb-dump --system=users either
fails on existing accounts (plain), leaves their passwords as they were
(--insert-ignore) or drops the account running the load (--replace: its
guard compares CURRENT_USER() with a differently quoted name). Ours creates
missing accounts and roles, sets every account's password and attributes
with ALTER USER, revokes what it holds and applies its grants (only what the
master grants, then), and skips all of that for the account
running the load, so the loader can never lock itself out. Grants on tables
or routines that do not exist yet are skipped: load the globals again after
the databases (it is idempotent) to apply them.

Load: MariaDB cannot rename a database. The dump is loaded into a scratch
database; once it loaded completely the scratch database's contents are
moved under the real name, the old contents first moved aside: base tables
with one atomic RENAME TABLE, views, triggers, routines and events dropped
and recreated from their SHOW CREATE text in the session they were made in
(sql_mode, time zone, client character set and collation; RENAME TABLE
cannot move those). The database takes the loaded one's character set,
collation and COMMENT before its code is recreated (code records the
database's collation). Views are defined by the loader while in a scratch
database (whose name their real DEFINER may have no rights on: a view on such
a view would not load) and get their real DEFINER back under the real name.
Each move is undone if any step of it fails, so the old database stays whole
until the new one is complete.

Users, roles and grants: the built-in PUBLIC role (10.11+) is never created,
only granted to. System-versioned tables are dumped with their history
(--dump-history) where mariadb-dump has it. docs/fidelity.md lists what a
round trip still changes (FLOAT digits, among others) and why.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Dict, List, Optional, Sequence

import pymysql
import pymysql.cursors

from shipper.core import process

from . import rowcount
from .base import (
    DatabaseError,
    Engine,
    exec_with_header,
    find_tool,
    is_scratch,
    read_password,
    scratch_name,
    write_private,
)

SYSTEM_DATABASES = frozenset({"information_schema", "mysql", "performance_schema", "sys"})
DUMP_TOOLS = ("mariadb-dump", "mysqldump")
CLIENT_TOOLS = ("mariadb", "mysql")
DUMP_OPTIONS = [
    "--single-transaction",
    "--routines",
    "--events",
    "--triggers",
    "--hex-blob",
    "--default-character-set=utf8mb4",
    "--skip-dump-date",
    "--max-allowed-packet=1G",
]
CLIENT_OPTIONS = ["--batch", "--default-character-set=utf8mb4", "--max-allowed-packet=1G"]
LOCK_WAIT = 60  # seconds a swap waits for other sessions' table locks
ER_NO_SUCH_TABLE = 1146
ER_NONEXISTING_GRANT = 1133
ER_VIEW_INVALID = 1356
VIEW_NOT_YET = (ER_NO_SUCH_TABLE, ER_VIEW_INVALID)  # a view on a view not re-created yet
# MariaDB's character sets as Python names them (latin1 is cp1252 in MariaDB).
PYTHON_CODECS = {
    "utf8mb4": "utf-8",
    "utf8mb3": "utf-8",
    "utf8": "utf-8",
    "latin1": "cp1252",
    "ascii": "ascii",
    "binary": "latin-1",
}
# A pseudo-role every account holds (10.11+): it exists on every server and cannot be created.
PUBLIC = "PUBLIC"


def quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


class MariaDB(Engine):
    name = "mariadb"
    system_databases = SYSTEM_DATABASES
    dump_trailer = b"-- Dump completed"
    globals_trailer = b"-- Dump completed"

    def __init__(self, server: Any, label: Optional[str] = None):
        super().__init__(server, label)
        self._view_definers: Dict[str, Dict[str, str]] = {}  # per scratch database

    def describe(self) -> str:
        where = f"{self.server.host}:{self.server.port}" if self.server.host else self.server.socket
        return f"mariadb at {where}"

    # ------------------------------------------------------------ connections

    def _where(self) -> Dict[str, Any]:
        if self.server.host:
            return {"host": self.server.host, "port": self.server.port}
        return {"socket": self.server.socket}

    def _write_credentials(self, folder: Path) -> None:
        lines = ["[client]", f"user={_option(self.server.user)}"]
        lines += [f"{key}={_option(str(value))}" for key, value in self._where().items()]
        if self.server.password_file:
            password = read_password(self.server.password_file, self.describe())
            lines.append(f"password={_option(password)}")
        write_private(folder / "client.cnf", "\n".join(lines) + "\n")

    @property
    def option_file(self) -> str:
        return str(self.secrets / "client.cnf")

    def _tool(self, tools: Sequence[str]) -> List[str]:
        """The tool with the option file first, then the connection (options on the command
        line win over every option file, ~/.my.cnf included; the password is only in ours)."""
        tool = _find(tools, self.describe())
        where = [f"--{key}={value}" for key, value in self._where().items()]
        protocol = "--protocol=TCP" if self.server.host else "--protocol=SOCKET"
        return [
            tool,
            f"--defaults-extra-file={self.option_file}",
            protocol,
            *where,
            f"--user={self.server.user}",
        ]

    def _connect(self, database: Optional[str] = None) -> Any:
        password = ""
        if self.server.password_file:
            password = read_password(self.server.password_file, self.describe())
        try:
            return _open(self.server.user, password, self._where(), database)
        except pymysql.MySQLError as exc:
            raise DatabaseError(
                f"{self.describe()}: cannot connect as {self.server.user}: {_text(exc)}; "
                "check that the server runs and the socket/host, user and password_file"
            ) from None

    def _query(
        self, sql: str, params: Sequence[Any] = (), database: Optional[str] = None
    ) -> List[tuple]:
        conn = self._connect(database)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, tuple(params) or None)
                return list(cur.fetchall())
        except pymysql.MySQLError as exc:
            raise DatabaseError(
                f"{self.describe()}: {_text(exc)} (running {sql.split()[0]})"
            ) from None
        finally:
            conn.close()

    # ------------------------------------------------------------ questions

    def _version_query(self) -> str:
        return "SELECT VERSION()"

    def _clean_version(self, raw: str) -> str:
        match = re.match(r"\d+(\.\d+)*(-MariaDB)?", raw)
        return match.group(0) if match else raw

    def major_version(self) -> str:
        return ".".join(self.version().split("-")[0].split(".")[:2])

    def _list_databases_query(self) -> str:
        return "SHOW DATABASES"

    def _size_query(self) -> str:
        return (
            "SELECT COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) "
            "FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s"
        )

    # ------------------------------------------------------------ commands

    def _count_sql(self, database: str) -> Callable[[str], str]:
        """History rows count too: --dump-history dumps them (FOR SYSTEM_TIME ALL)."""
        rows = self._query(rowcount.MARIADB_VERSIONED, (database,))
        return rowcount.mariadb_count({str(row[0]) for row in rows})

    def _dump_command(self, database: str) -> List[str]:
        tool = self._tool(DUMP_TOOLS)
        options = [*DUMP_OPTIONS, *_history_option(tool[0]), *self.server.dump_options]
        dump = [*tool, *options, "--", database]
        return [*_module(), "dump", self.option_file, database, "--", *dump]

    def _globals_command(self) -> List[str]:
        return [*_module(), "globals", self.option_file]

    def _client_command(self, database: Optional[str]) -> List[str]:
        target = [f"--database={database}"] if database else []
        return [*self._tool(CLIENT_TOOLS), *CLIENT_OPTIONS, *target]

    # ------------------------------------------------------------ loads

    def _create_database(self, name: str, properties: Dict[str, Any]) -> None:
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE {quote(name)}{_options(cur, properties)}")
        except pymysql.MySQLError as exc:
            raise DatabaseError(
                f"{self.describe()}: cannot create the scratch database {name}: {_text(exc)}"
            ) from None
        finally:
            conn.close()

    def _drop_database(self, name: str) -> None:
        self._query(f"DROP DATABASE IF EXISTS {quote(name)}")

    def _load_stream(self, stream: IO[bytes], scratch: str) -> IO[bytes]:
        filtered = ViewDefiners(stream)
        self._view_definers[scratch] = filtered.definers  # filled as the load reads
        return filtered  # type: ignore[return-value]

    def _replace(self, scratch: str, target: str) -> None:
        aside = scratch_name("old", target)
        definers = self._view_definers.pop(scratch, {})
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f"SET SESSION lock_wait_timeout = {LOCK_WAIT}")
                _swap(cur, scratch, target, aside, definers)
        except pymysql.MySQLError as exc:
            raise DatabaseError(
                f"{self.describe()}: moving the loaded database into {target} failed: "
                f"{_text(exc)}; {target} was left as it was before; if other sessions hold "
                "its tables, stop them"
            ) from None
        except DatabaseError as exc:
            raise DatabaseError(f"{self.describe()}: {exc}") from None
        finally:
            conn.close()


# ---------------------------------------------------------------- the swap


@dataclass(frozen=True)
class CodeObject:
    kind: str  # PROCEDURE, FUNCTION, VIEW, TRIGGER, EVENT: the order they are created in
    name: str
    create: str
    # The session it was created in; the server records them with the object.
    sql_mode: Optional[str]
    time_zone: Optional[str]
    charset_client: Optional[str]
    collation_connection: Optional[str]
    comment: Optional[str]  # a routine's: SHOW CREATE garbles it unless created over utf8


CODE_KINDS = {
    "PROCEDURE": (
        "SELECT ROUTINE_NAME, ROUTINE_COMMENT FROM information_schema.ROUTINES "
        "WHERE ROUTINE_SCHEMA = %s AND ROUTINE_TYPE = 'PROCEDURE'",
        "Create Procedure",
    ),
    "FUNCTION": (
        "SELECT ROUTINE_NAME, ROUTINE_COMMENT FROM information_schema.ROUTINES "
        "WHERE ROUTINE_SCHEMA = %s AND ROUTINE_TYPE = 'FUNCTION'",
        "Create Function",
    ),
    "VIEW": (
        "SELECT TABLE_NAME, NULL FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s",
        "Create View",
    ),
    "TRIGGER": (
        "SELECT TRIGGER_NAME, NULL FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s "
        "ORDER BY EVENT_OBJECT_TABLE, ACTION_ORDER",
        "SQL Original Statement",
    ),
    "EVENT": (
        "SELECT EVENT_NAME, NULL FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s",
        "Create Event",
    ),
}


def _swap(cur: Any, scratch: str, target: str, aside: str, definers: Dict[str, str]) -> None:
    """Put scratch's contents under target; target's old contents survive any failure.
    `definers`: the real DEFINER of each view in scratch (see ViewDefiners)."""
    if _exists(cur, aside):
        raise DatabaseError(
            f"database {aside} holds what an interrupted load moved aside from {target}; "
            f"check it (and {target}), then drop it: DROP DATABASE {quote(aside)}"
        )
    had_target = _exists(cur, target)
    old_code: List[CodeObject] = []  # as they were under target, for putting them back
    if had_target:
        cur.execute(f"CREATE DATABASE {quote(aside)}{_options_of(cur, target)}")
        try:
            old_code = _move(cur, target, aside)
        except BaseException:
            cur.execute(f"DROP DATABASE {quote(aside)}")  # empty again: the move was undone
            raise
    try:
        # Before the move: code objects record the database's collation when created.
        if had_target:
            cur.execute(f"ALTER DATABASE {quote(target)}{_options_of(cur, scratch)}")
        else:
            cur.execute(f"CREATE DATABASE {quote(target)}{_options_of(cur, scratch)}")
        _move(cur, scratch, target, definers)
    except BaseException:
        _put_back(cur, target, aside, had_target, old_code)
        raise
    if had_target:
        cur.execute(f"DROP DATABASE {quote(aside)}")


def _put_back(
    cur: Any, target: str, aside: str, had_target: bool, old_code: List[CodeObject]
) -> None:
    """Undo a swap whose second move failed (and was itself undone)."""
    if not had_target:
        cur.execute(f"DROP DATABASE {quote(target)}")
        return
    try:
        cur.execute(f"ALTER DATABASE {quote(target)}{_options_of(cur, aside)}")
        _move(cur, aside, target, code=old_code)
    except pymysql.MySQLError as exc:
        raise DatabaseError(
            f"putting the old contents of {target} back failed too: {_text(exc)}; they are "
            f"whole in database {aside}: move them back by hand"
        ) from exc
    cur.execute(f"DROP DATABASE {quote(aside)}")


def _move(
    cur: Any,
    source: str,
    target: str,
    definers: Optional[Dict[str, str]] = None,
    code: Optional[List[CodeObject]] = None,
) -> List[CodeObject]:
    """Move every table and code object from source to the empty target; all or nothing.
    Returns the code objects moved; `code`: them as they were before source held them."""
    code = _code_objects(cur, source, definers or {}) if code is None else code
    tables = [r[0] for r in _rows(cur, _TABLES, source)]
    _drop_code(cur, source, code)
    try:
        _rename(cur, source, target, tables)
        try:
            _create_code(cur, target, code)
        except BaseException:
            _drop_code(cur, target, _code_objects(cur, target))
            _rename(cur, target, source, tables)
            raise
    except BaseException:
        _create_code(cur, source, code)
        raise
    return code


_TABLES = (
    "SELECT TABLE_NAME FROM information_schema.TABLES "
    "WHERE TABLE_SCHEMA = %s AND TABLE_TYPE <> 'VIEW'"
)


def _rename(cur: Any, source: str, target: str, tables: List[str]) -> None:
    if tables:
        pairs = [f"{quote(source)}.{quote(t)} TO {quote(target)}.{quote(t)}" for t in tables]
        cur.execute("RENAME TABLE " + ", ".join(pairs))


def _code_objects(
    cur: Any, database: str, definers: Optional[Dict[str, str]] = None
) -> List[CodeObject]:
    cur.execute(f"USE {quote(database)}")  # SHOW CREATE VIEW then leaves out the database name
    found = []
    for kind, (listing, column) in CODE_KINDS.items():
        for name, comment in _rows(cur, listing, database):
            cur.execute(f"SHOW CREATE {kind} {quote(name)}")
            row = dict(zip([d[0] for d in cur.description], cur.fetchone()))
            create = row[column]
            if kind == "VIEW" and is_scratch(database):
                create = _unqualified(create, database)
            if kind == "VIEW" and name in (definers or {}):
                create = _with_definer(create, (definers or {})[name])
            found.append(
                CodeObject(
                    kind,
                    name,
                    create,
                    row.get("sql_mode"),
                    row.get("time_zone"),
                    row.get("character_set_client"),
                    row.get("collation_connection"),
                    comment,
                )
            )
    return found


def _unqualified(create: str, database: str) -> str:
    """A view's text without its own (scratch) database's name.

    SHOW CREATE VIEW leaves out the current database's name only for a view it can
    open; a view whose DEFINER may not use the scratch database (a reporting user with
    rights on the real one only) comes back naming it everywhere. Scratch names are
    shipper's own (shipper_load_<hex>), so no other text can contain them.
    """
    return create.replace(f"{quote(database)}.", "")


_VIEW_DEFINER = re.compile(r"^(CREATE (?:ALGORITHM=\w+ )?)DEFINER=(`(?:[^`]|``)*`@`(?:[^`]|``)*`) ")


def _with_definer(create: str, definer: str) -> str:
    """A view's SHOW CREATE text with another DEFINER."""
    return _VIEW_DEFINER.sub(lambda m: f"{m.group(1)}DEFINER={definer} ", create, count=1)


def _drop_code(cur: Any, database: str, code: List[CodeObject]) -> None:
    for obj in reversed(code):
        cur.execute(f"DROP {obj.kind} IF EXISTS {quote(database)}.{quote(obj.name)}")


def _create_code(cur: Any, database: str, code: List[CodeObject]) -> None:
    cur.execute(f"USE {quote(database)}")
    if is_scratch(database):  # views there are the loader's (see ViewDefiners)
        code = [_defined_by_loader(obj) for obj in code]
    pending = list(code)
    while pending:  # a view can name a view made after it: retry while that helps
        failed = [obj for obj in pending if not _create_one(cur, obj, tolerate_missing=True)]
        if len(failed) == len(pending):
            _create_one(cur, failed[0], tolerate_missing=False)  # raises the real error
        pending = failed


def _defined_by_loader(obj: CodeObject) -> CodeObject:
    if obj.kind != "VIEW":
        return obj
    return dataclasses.replace(obj, create=_with_definer(obj.create, "CURRENT_USER"))


def _create_one(cur: Any, obj: CodeObject, tolerate_missing: bool) -> bool:
    """Create one object in the session it was made in (sql_mode, time zone, client character
    set and collation); False: a view's table or view is not there yet."""
    cur.execute(
        "SET @shipper_mode = @@SESSION.sql_mode, @shipper_tz = @@SESSION.time_zone, "
        "@shipper_cs = @@SESSION.character_set_client, "
        "@shipper_coll = @@SESSION.collation_connection"
    )
    try:
        if obj.sql_mode is not None:
            cur.execute("SET SESSION sql_mode = %s", (obj.sql_mode,))
        if obj.time_zone is not None:
            cur.execute("SET SESSION time_zone = %s", (obj.time_zone,))
        cur.execute(_in_client_charset(cur, obj))
    except pymysql.MySQLError as exc:
        if tolerate_missing and obj.kind == "VIEW" and exc.args[0] in VIEW_NOT_YET:
            return False
        raise
    finally:
        cur.execute(
            "SET SESSION sql_mode = @shipper_mode, time_zone = @shipper_tz, "
            "character_set_client = @shipper_cs, collation_connection = @shipper_coll"
        )
    if obj.comment and not (obj.charset_client or "").startswith("utf8"):
        # SHOW CREATE shows such a routine's COMMENT as if its UTF-8 were the client's
        # character set; information_schema has it right.
        cur.execute(f"ALTER {obj.kind} {quote(obj.name)} COMMENT %s", (obj.comment,))
    return True


def _in_client_charset(cur: Any, obj: CodeObject) -> Any:
    """The object's statement as its own client sent it: the client character set is
    switched for it (the server keeps it with the object) and the text encoded in it.
    Text that character set cannot hold stays in utf8mb4, as it came from the server."""
    codec = PYTHON_CODECS.get(obj.charset_client or "")
    if codec is None or obj.collation_connection is None:
        return obj.create
    try:
        encoded = obj.create.encode(codec)
    except UnicodeEncodeError:
        return obj.create
    cur.execute(
        "SET SESSION character_set_client = %s, collation_connection = %s",
        (obj.charset_client, obj.collation_connection),
    )
    return encoded


def _exists(cur: Any, database: str) -> bool:
    return bool(
        _rows(cur, "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", database)
    )


def _properties(cur: Any, database: str) -> Dict[str, Any]:
    """Character set, collation and (MariaDB 10.5+) COMMENT of an existing database; {}: none."""
    cur.execute("SELECT * FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (database,))
    found = cur.fetchone()
    if found is None:
        return {}
    row = dict(zip([d[0].upper() for d in cur.description], found))
    properties = {
        "charset": row["DEFAULT_CHARACTER_SET_NAME"],
        "collation": row["DEFAULT_COLLATION_NAME"],
    }
    if "SCHEMA_COMMENT" in row:
        properties["comment"] = row["SCHEMA_COMMENT"] or ""
    return properties


def _options(cur: Any, properties: Dict[str, Any]) -> str:
    """CREATE/ALTER DATABASE options for `properties` (what a dump's header names)."""
    options = ""
    if properties.get("charset") and properties.get("collation"):
        options = f" CHARACTER SET {properties['charset']} COLLATE {properties['collation']}"
    if "comment" in properties:
        options += f" COMMENT {cur.connection.escape(properties['comment'])}"
    return options


def _options_of(cur: Any, database: str) -> str:
    return _options(cur, _properties(cur, database))


def _rows(cur: Any, sql: str, *params: Any) -> List[tuple]:
    cur.execute(sql, params or None)
    return list(cur.fetchall())


class ViewDefiners:
    """A dump stream whose views are defined by the loader, and their real DEFINERs.

    A view's DEFINER must be able to read what the view reads for a view on that view
    to be created; a reporting user with rights on its own database only has none in
    the scratch database, so mariadb-dump's `/*!50013 DEFINER=... SQL SECURITY ... */`
    line is cut to `/*!50013 SQL SECURITY ... */` (the loader defines the view) and
    the definer kept per view name, for the swap to give back under the real name.
    Only complete lines are looked at, and only where that line can be.
    """

    def __init__(self, stream: IO[bytes]):
        self.stream = stream
        self.definers: Dict[str, str] = {}
        self._carry = b""
        self._pending: Optional[str] = None  # a definer whose VIEW line comes next
        self._ended = False

    def read(self, size: int = -1) -> bytes:
        while not self._ended:
            chunk = self.stream.read(size if size > 0 else 1 << 20)
            if not chunk:
                self._ended = True
                break
            data = self._carry + chunk
            cut = data.rfind(b"\n") + 1
            self._carry = data[cut:]
            if cut:
                return self._lines(data[:cut])
        rest, self._carry = self._carry, b""
        return self._lines(rest)

    def _lines(self, data: bytes) -> bytes:
        if self._pending is None and _DUMP_DEFINER_START not in data:
            return data
        lines = data.split(b"\n")
        for index, line in enumerate(lines[:-1] if data.endswith(b"\n") else lines):
            if self._pending is not None:
                view = _DUMP_VIEW.match(line)
                if view:
                    name = view.group(1)[1:-1].replace(b"``", b"`").decode(errors="replace")
                    self.definers[name] = self._pending
                self._pending = None
            found = _DUMP_DEFINER.match(line)
            if found:
                self._pending = found.group(1).decode(errors="replace")
                lines[index] = b"/*!50013 " + found.group(2)
        return b"\n".join(lines)


_DUMP_DEFINER_START = b"/*!50013 DEFINER="
_DUMP_DEFINER = re.compile(
    rb"^/\*!50013 DEFINER=(`(?:[^`]|``)*`@`(?:[^`]|``)*`) (SQL SECURITY \w+ \*/)$"
)
_DUMP_VIEW = re.compile(rb"^/\*!50001 VIEW (`(?:[^`]|``)*`) AS ")


# ---------------------------------------------------------------- the dump side


def database_properties(conn: Any, database: str) -> Dict[str, Any]:
    """What a database must be created with before its dump is loaded."""
    with conn.cursor() as cur:
        properties = _properties(cur, database)
        if not properties:
            # A database the account may not read is hidden too: let the server say which.
            cur.execute(f"USE {quote(database)}")
            raise DatabaseError(f"database {database!r} does not exist")
    return {"engine": "mariadb", **properties}


def _has_transaction_history(conn: Any, database: str) -> bool:
    """Whether a table is system-versioned by transaction id: mariadb-dump --dump-history
    refuses such a database whole, so it is dumped without history (docs/fidelity.md)."""
    with conn.cursor() as cur:
        versioned = _rows(
            cur,
            "SELECT TABLE_NAME FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'SYSTEM VERSIONED'",
            database,
        )
        for (table,) in versioned:
            cur.execute(f"SHOW CREATE TABLE {quote(database)}.{quote(table)}")
            if _TRX_ROW_START.search(cur.fetchone()[1]):
                return True
    return False


_TRX_ROW_START = re.compile(r" bigint\(\d+\) unsigned [^,\n]*GENERATED ALWAYS AS ROW START", re.I)


def globals_dump(conn: Any) -> str:
    """Users, roles and grants as SQL that never touches the account running it."""
    with conn.cursor() as cur:
        listed = _rows(
            cur, "SELECT User, Host, is_role FROM mysql.user ORDER BY is_role DESC, User, Host"
        )
        lines = [
            "-- shipper: MariaDB users, roles and grants",
            "-- Every statement about an account is skipped when that account runs the load.",
            "SET NAMES utf8mb4;",
            "SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO';",
            "DELIMITER ;;",
        ]
        blocks = []
        for user, host, role in listed:
            statements = _account_statements(cur, user, host, role == "Y")
            if statements is None:
                lines.append(f"-- {_account(user, host, role == 'Y')}: ignored by the server")
                continue
            lines.append(_create_account(user, host, role == "Y"))
            blocks += _account_block(user, host, role == "Y", statements)
        lines += [*blocks, "DELIMITER ;", "-- Dump completed", ""]
    return "\n".join(lines)


def _account(user: str, host: str, role: bool) -> str:
    return quote(user) if role else f"{quote(user)}@{quote(host)}"


def _create_account(user: str, host: str, role: bool) -> str:
    """Users are created if missing; roles are made anew, so that the loader administers them
    (granting a role needs its ADMIN OPTION), unless the loader holds the role itself."""
    if not role:
        return f"CREATE USER IF NOT EXISTS {_account(user, host, role)};;"
    if user == PUBLIC:
        return f"-- {PUBLIC} is built in: only its grants are loaded"
    return (
        "IF NOT EXISTS (SELECT 1 FROM information_schema.APPLICABLE_ROLES "
        f"WHERE BINARY ROLE_NAME = {_hex(user)}) THEN CREATE OR REPLACE ROLE {quote(user)}; "
        f"ELSE CREATE ROLE IF NOT EXISTS {quote(user)}; END IF;;"
    )


def _hex(text: str) -> str:
    """A string literal that means the same under every sql_mode and character set."""
    return "0x" + text.encode().hex() if text else "''"


def _account_statements(cur: Any, user: str, host: str, role: bool) -> Optional[List[str]]:
    """ALTER USER and the GRANTs that make the account what it is here; None for an account
    the server lists but ignores (a host name under skip-name-resolve: no one can use it)."""
    account = _account(user, host, role)
    # What the slave granted on its own goes first (role memberships too): grants add up.
    statements = [f"REVOKE ALL PRIVILEGES, GRANT OPTION FROM {account}"]
    try:
        if not role:
            cur.execute(f"SHOW CREATE USER {account}")
            statements.append("ALTER" + cur.fetchone()[0][len("CREATE") :])
        cur.execute(f"SHOW GRANTS FOR {account}")
    except pymysql.MySQLError as exc:
        if exc.args[0] == ER_NONEXISTING_GRANT:
            return None
        raise
    return statements + [row[0] for row in cur.fetchall()]


def _account_block(user: str, host: str, role: bool, statements: List[str]) -> List[str]:
    return [
        f"-- {_account(user, host, role)}",
        "BEGIN NOT ATOMIC",
        "  DECLARE CONTINUE HANDLER FOR 1146, 1305 BEGIN END;  -- table or routine not loaded yet",
        f"  IF BINARY CURRENT_USER() <> {_hex(f'{user}@{host}')} THEN",
        *[f"    {statement};" for statement in statements],
        "  END IF;",
        "END;;",
    ]


# ---------------------------------------------------------------- helpers


def _option(value: str) -> str:
    """A value for a MySQL option file (quoted, escapes for \\ and \")."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _read_options(path: str) -> Dict[str, str]:
    """Read back an option file `_write_credentials` wrote (not a general parser)."""
    options = {}
    with open(path) as handle:
        for line in handle:
            key, sep, value = line.rstrip("\n").partition("=")
            if sep:
                options[key] = re.sub(r"\\(.)", r"\1", value[1:-1])
    return options


def _text(exc: Exception) -> str:
    args = getattr(exc, "args", ())
    if len(args) >= 2:
        return f"{args[1]} (error {args[0]})"
    return str(exc)


def _find(tools: Sequence[str], label: str) -> str:
    return find_tool(tools, label, "the MariaDB client (mariadb-client)")


@functools.cache
def _history_option(tool: str) -> List[str]:
    """--dump-history where the dump tool has it (MariaDB 10.11+): without it a
    system-versioned table loses its history rows and its rows' timestamps."""
    return ["--dump-history"] if "--dump-history" in process.capture([tool, "--help"], 30) else []


def _module() -> List[str]:
    return [sys.executable, "-m", "shipper.databases.mariadb"]


def _open(user: str, password: str, where: Dict[str, Any], database: Optional[str] = None) -> Any:
    """A pymysql connection; `where` is {"socket": path} or {"host": name, "port": number}."""
    if "socket" in where:
        address: Dict[str, Any] = {"unix_socket": where["socket"], **_NO_TLS}
    else:
        address = {"host": where["host"], "port": int(where["port"])}
    return pymysql.connect(
        user=user,
        password=password.encode(),  # pymysql's default for str is latin-1
        database=database,
        autocommit=True,
        charset="utf8mb4",
        connect_timeout=10,
        **address,
    )


# Over a local socket TLS protects nothing, and PyMySQL 1.1+'s "preferred" mode
# builds a new TLS context (the system's CA store) for every connection: ~20 ms
# of CPU each, four per database load.
_NO_TLS = (
    {"ssl_disabled": True}
    if "ssl_disabled" in inspect.signature(pymysql.connections.Connection.__init__).parameters
    else {}
)


def _connect_with(option_file: str) -> Any:
    options = _read_options(option_file)
    return _open(options.pop("user"), options.pop("password", ""), options)


def main(argv: Optional[List[str]] = None) -> int:
    """`globals OPTION_FILE` or `dump OPTION_FILE DATABASE -- DUMP_ARGV...` (see dump_jobs)."""
    args = sys.argv[1:] if argv is None else argv
    what = "users and grants" if args[0] == "globals" else f"database {args[2]}"
    try:
        conn = _connect_with(args[1])
        if args[0] == "globals":
            sys.stdout.write(globals_dump(conn))
            return 0
        properties = database_properties(conn, args[2])
        dump = args[4:]
        if _has_transaction_history(conn, args[2]):
            dump = [arg for arg in dump if arg != "--dump-history"]
        conn.close()
        exec_with_header(properties, b"", dump)
    except (pymysql.MySQLError, DatabaseError, OSError) as exc:
        print(
            f"shipper: mariadb: dumping {what} failed: {_text(exc)}; check that the server "
            "runs and that the configured user may read it",
            file=sys.stderr,
        )
    return 1


if __name__ == "__main__":
    sys.exit(main())
