"""PostgreSQL servers.

Dump: pg_dump in plain SQL (-Fp, uncompressed). Plain SQL loads from a stream
with psql (custom format read from a pipe cannot seek, and pg_restore then
fails on dumps whose data it must read out of order), restic deduplicates
it well (unchanged tables give identical COPY blocks), and it can be read
and loaded by hand. pg_dump's snapshot is one REPEATABLE READ transaction:
consistent, and it blocks no writer (only DDL that needs an exclusive lock
waits for it). Owners and privileges of every object are kept; the roles come
from the globals. pg_dump without --create leaves out what belongs to the
database itself, so the stream starts with it, written by shipper: a
comment line with the encoding and locale the database must be created
with, then one DO block that gives the current database, whatever its name,
the master's owner, comment, privileges and settings.

Globals: pg_dumpall --globals-only (roles with their password hashes,
memberships, tablespaces). Loading it creates missing roles, gives existing
ones the master's attributes and passwords, and leaves the role running the
load (and tablespaces that exist) as they are.

Load: into a scratch database, then one transaction renames the old
database aside and the scratch database into its place, and the old one is
dropped: a failed load never touches the database it would replace. Other
sessions connected to that database are ended at the swap.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import psycopg2
from psycopg2 import sql

from .base import (
    DatabaseError,
    Engine,
    exec_with_header,
    find_tool,
    read_password,
    scratch_name,
    write_private,
)

SYSTEM_DATABASES = frozenset({"postgres", "template0", "template1"})
MAINTENANCE_DB = "postgres"


class PostgreSQL(Engine):
    name = "postgresql"
    system_databases = SYSTEM_DATABASES
    dump_trailer = b"-- PostgreSQL database dump complete"
    globals_trailer = b"-- PostgreSQL database cluster dump complete"

    def describe(self) -> str:
        return f"postgresql at {self.server.host}:{self.server.port}"

    # ------------------------------------------------------------ connections

    def conninfo(self, database: Optional[str] = None) -> str:
        """A libpq connection string (no password: that goes by PGPASSFILE)."""
        values = {
            "host": self.server.host,
            "port": str(self.server.port),
            "user": self.server.user,
            "dbname": database or MAINTENANCE_DB,
            "application_name": "shipper",
        }
        return " ".join(f"{key}={_conninfo_value(value)}" for key, value in values.items())

    def _write_credentials(self, folder: Path) -> None:
        if self.server.password_file:
            password = read_password(self.server.password_file, self.describe())
            fields = ["*", "*", "*", self.server.user, password]
            write_private(folder / "pgpass", ":".join(_pgpass_field(f) for f in fields) + "\n")

    def _env(self) -> Dict[str, str]:
        return {"PGPASSFILE": str(self.secrets / "pgpass")} if self.server.password_file else {}

    def _connect(self, database: Optional[str] = None) -> Any:
        password = None
        if self.server.password_file:
            password = read_password(self.server.password_file, self.describe())
        try:
            conn = psycopg2.connect(self.conninfo(database), password=password, connect_timeout=10)
        except psycopg2.Error as exc:
            raise DatabaseError(
                f"{self.describe()}: cannot connect as {self.server.user}: {_text(exc)}; "
                "check that the server runs and the host, port, user and password_file"
            ) from None
        conn.autocommit = True
        return conn

    def _query(
        self, query: Any, params: Sequence[Any] = (), database: Optional[str] = None
    ) -> List[tuple]:
        conn = self._connect(database)
        try:
            with conn.cursor() as cur:
                cur.execute(query, tuple(params) or None)
                return list(cur.fetchall()) if cur.description else []
        except psycopg2.Error as exc:
            raise DatabaseError(f"{self.describe()}: {_text(exc)}") from None
        finally:
            conn.close()

    # ------------------------------------------------------------ questions

    def _version_query(self) -> str:
        return "SHOW server_version"

    def _clean_version(self, raw: str) -> str:
        return raw.split()[0]

    def major_version(self) -> str:
        parts = self.version().split(".")
        return parts[0] if int(re.sub(r"\D.*", "", parts[0]) or 0) >= 10 else ".".join(parts[:2])

    def _list_databases_query(self) -> str:
        return "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate"

    def _size_query(self) -> str:
        return "SELECT pg_database_size(%s)"

    # ------------------------------------------------------------ commands

    def _tool(self, name: str) -> str:
        major = self.major_version()
        candidates = [
            f"/usr/lib/postgresql/{major}/bin/{name}",
            f"/usr/pgsql-{major}/bin/{name}",
            name,
        ]
        return find_tool(candidates, self.describe(), f"the PostgreSQL {major} client tools")

    def _dump_command(self, database: str) -> List[str]:
        conninfo = self.conninfo(database)
        dump = [self._tool("pg_dump"), "--no-password", "--format=plain", f"--dbname={conninfo}"]
        dump += self.server.dump_options
        return [sys.executable, "-m", "shipper.databases.postgresql", "dump", conninfo, "--", *dump]

    def _globals_command(self) -> List[str]:
        return [
            self._tool("pg_dumpall"),
            "--no-password",
            "--globals-only",
            f"--dbname={self.conninfo()}",
        ]

    def _client_command(self, database: Optional[str]) -> List[str]:
        psql = [
            self._tool("psql"),
            "--no-password",
            "--no-psqlrc",
            "--quiet",
            "--set=ON_ERROR_STOP=1",
        ]
        return [*psql, f"--dbname={self.conninfo(database)}"]

    # ------------------------------------------------------------ loads

    def _create_database(self, name: str, properties: Dict[str, Any]) -> None:
        options = [sql.SQL("TEMPLATE template0")]
        for option, key in (
            ("ENCODING", "encoding"),
            ("LC_COLLATE", "collate"),
            ("LC_CTYPE", "ctype"),
        ):
            if properties.get(key):
                options.append(sql.SQL(f"{option} {{}}").format(sql.Literal(properties[key])))
        if properties.get("icu_locale"):
            options.append(
                sql.SQL("LOCALE_PROVIDER icu ICU_LOCALE {}").format(
                    sql.Literal(properties["icu_locale"])
                )
            )
        query = sql.SQL("CREATE DATABASE {} ").format(sql.Identifier(name)) + sql.SQL(" ").join(
            options
        )
        try:
            self._query(query)
        except DatabaseError as exc:
            wanted = ", ".join(f"{k} {v}" for k, v in properties.items() if k != "engine")
            raise DatabaseError(
                f"{exc}; the dumped database was made with {wanted or 'the defaults'}: "
                "this server needs the same encoding and locale (install the locale)"
            ) from None

    def _drop_database(self, name: str) -> None:
        force = sql.SQL(" WITH (FORCE)") if self._version_num() >= 130000 else sql.SQL("")
        self._query(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)) + force)

    def _version_num(self) -> int:
        return int(self._query("SHOW server_version_num")[0][0])  # e.g. 150020

    def _replace(self, scratch: str, target: str) -> None:
        aside = scratch_name("old", target)
        self._drop_database(aside)  # left by a swap that committed and then died: replaced data
        try:
            self._query(_SWAP, (target, target, aside, scratch, target), self._admin_db(target))
        except DatabaseError as exc:
            raise DatabaseError(
                f"{exc}; moving the loaded database into {target} failed and {target} was left "
                "as it was before; if other sessions keep connecting to it, stop them"
            ) from None
        self._drop_database(aside)

    def _admin_db(self, target: str) -> str:
        return "template1" if target == MAINTENANCE_DB else MAINTENANCE_DB

    def _prepare_globals(self, dump: bytes) -> bytes:
        me = self._query("SELECT quote_ident(current_user)")[0][0].encode()
        spaces = {
            row[0].encode() for row in self._query("SELECT quote_ident(spcname) FROM pg_tablespace")
        }
        lines = [_global_line(line, me, spaces) for line in dump.split(b"\n")]
        return b"\n".join(line for line in lines if line is not None)


# One transaction: end the target's other sessions, rename it aside, rename the
# scratch database into its place. Renames are transactional: all or nothing.
_SWAP = """
DO $swap$
DECLARE
    target text := %s;
BEGIN
    PERFORM pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE datname = target AND pid <> pg_backend_pid();
    IF EXISTS (SELECT FROM pg_database WHERE datname = %s) THEN
        EXECUTE format('ALTER DATABASE %%I RENAME TO %%I', target, %s);
    END IF;
    EXECUTE format('ALTER DATABASE %%I RENAME TO %%I', %s, %s);
END
$swap$
"""


def _global_line(line: bytes, me: bytes, tablespaces: set) -> Optional[bytes]:
    """One line of pg_dumpall --globals-only as shipper loads it; None leaves it out."""
    if line == b"CREATE ROLE " + me + b";" or line.startswith(b"ALTER ROLE " + me + b" WITH "):
        return None  # the loading role keeps its own attributes and password
    if re.match(rb"CREATE ROLE [^;]+;$", line):
        return b"DO $r$BEGIN " + line + b" EXCEPTION WHEN duplicate_object THEN NULL; END$r$;"
    match = re.match(rb'CREATE TABLESPACE ("(?:[^"]|"")+"|\S+) ', line)
    if match and match.group(1) in tablespaces:
        return None
    return line


# ---------------------------------------------------------------- the dump side


_PROPERTIES = """
SELECT pg_encoding_to_char(d.encoding), d.datcollate, d.datctype,
       CASE WHEN to_jsonb(d) ->> 'datlocprovider' = 'i'
            THEN coalesce(to_jsonb(d) ->> 'daticulocale', to_jsonb(d) ->> 'datlocale') END,
       pg_get_userbyid(d.datdba), shobj_description(d.oid, 'pg_database'), d.datacl IS NOT NULL
FROM pg_database d WHERE d.datname = current_database()
"""
_ACL = """
SELECT a.privilege_type,
       CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
       a.is_grantable
FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = current_database()
ORDER BY 2, 1
"""
_SETTINGS = """
SELECT CASE WHEN s.setrole = 0 THEN NULL ELSE pg_get_userbyid(s.setrole) END, s.setconfig
FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
WHERE d.datname = current_database() ORDER BY 1 NULLS FIRST
"""


def database_header(conn: Any) -> tuple:
    """(properties for the header line, the DO block) of the connected database."""
    with conn.cursor() as cur:
        cur.execute(_PROPERTIES)
        encoding, collate, ctype, icu, owner, comment, has_acl = cur.fetchone()
        cur.execute(_ACL)
        acl = cur.fetchall() if has_acl else []
        cur.execute(_SETTINGS)
        settings = cur.fetchall()
    properties = {"engine": "postgresql", "encoding": encoding, "collate": collate, "ctype": ctype}
    if icu:
        properties["icu_locale"] = icu
    statements = [_execute("ALTER DATABASE %I OWNER TO %I", owner)]
    if comment is not None:
        statements.append(_execute("COMMENT ON DATABASE %I IS %L", comment))
    if has_acl:
        statements += [
            _execute("REVOKE ALL ON DATABASE %I FROM PUBLIC"),
            _execute("REVOKE ALL ON DATABASE %I FROM %I", owner),
        ]
    statements += [_grant(privilege, grantee, grantable) for privilege, grantee, grantable in acl]
    for role, config in settings:
        statements += [_setting(role, entry) for entry in config]
    return properties, _do_block(statements)


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _execute(template: str, *args: str) -> str:
    """EXECUTE format(template, current_database(), args...) as PL/pgSQL."""
    values = ", ".join(["current_database()", *(_literal(a) for a in args)])
    return f"EXECUTE format({_literal(template)}, {values});"


def _grant(privilege: str, grantee: str, grantable: bool) -> str:
    """grantee is already SQL (PUBLIC or a quoted name); % doubled for format()."""
    option = " WITH GRANT OPTION" if grantable else ""
    return _execute(f"GRANT {privilege} ON DATABASE %I TO {grantee.replace('%', '%%')}{option}")


def _setting(role: Optional[str], entry: str) -> str:
    name, _, value = entry.partition("=")
    apply = f"PERFORM set_config({_literal(name)}, {_literal(value)}, true);"
    if role is None:
        return (
            apply + " " + _execute("ALTER DATABASE %I SET " + _identifier(name) + " FROM CURRENT")
        )
    return (
        apply
        + " "
        + _execute(
            "ALTER ROLE %2$I IN DATABASE %1$I SET " + _identifier(name) + " FROM CURRENT", role
        )
    )


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""').replace("%", "%%") + '"'


def _do_block(statements: List[str]) -> bytes:
    body = "\n".join(f"    {s}" for s in statements)
    tag = next(t for t in (f"$shipper{n or ''}$" for n in range(len(body) + 1)) if t not in body)
    lines = ["-- shipper: the database's owner, comment, privileges and settings"]
    lines += [f"DO {tag}", "BEGIN", body, "END", f"{tag};", "", ""]
    return "\n".join(lines).encode()


# ---------------------------------------------------------------- helpers


def _conninfo_value(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _pgpass_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def _text(exc: Exception) -> str:
    message = getattr(exc, "pgerror", None) or str(exc)
    return " ".join(message.split())


def main(argv: Optional[List[str]] = None) -> int:
    """`dump CONNINFO -- PG_DUMP_ARGV...`: the header, then pg_dump (see dump_jobs)."""
    args = sys.argv[1:] if argv is None else argv
    try:
        conn = psycopg2.connect(args[1], connect_timeout=10)
        properties, prologue = database_header(conn)
        conn.close()
    except psycopg2.Error as exc:
        print(f"shipper: postgresql: {_text(exc)}", file=sys.stderr)
        return 1
    exec_with_header(properties, prologue, args[3:])
    return 1


if __name__ == "__main__":
    sys.exit(main())
