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
comment line with the encoding, locale and tablespace the database must be
created with, then one DO block that gives the current database, whatever its
name, what `pg_dump --create` would: owner, connection limit, template flag,
comment, privileges, and per-database and per-role-in-database settings.

Globals: pg_dumpall --globals-only (roles with their password hashes,
memberships, tablespaces). Loading it creates missing roles and makes existing
ones the master's exactly (what the master's role lacks - password, settings,
comment, memberships, privileges - is cleared too); the role running the load
keeps its own attributes and password, and an existing tablespace its folder.

Load: into a scratch database, then one transaction renames the old
database aside and the scratch database into its place, and the old one is
dropped: a failed load never touches the database it would replace. Other
sessions connected to that database are ended at the swap.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import psycopg2
from psycopg2 import sql

from . import rowcount
from .base import (
    DatabaseError,
    Engine,
    exec_with_header,
    find_tool,
    read_password,
    scratch_name,
    write_private,
)

log = logging.getLogger("shipper.databases")

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
        return "SELECT datname FROM pg_database WHERE datallowconn"  # user templates too

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

    def _count_sql(self, database: str) -> Callable[[str], str]:
        return rowcount.postgresql_count

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
        for template, key, quote in _CREATE_OPTIONS:
            if properties.get(key):
                options.append(sql.SQL(template).format(quote(properties[key])))
        query = sql.SQL("CREATE DATABASE {} ").format(sql.Identifier(name)) + sql.SQL(" ").join(
            options
        )
        try:
            self._query(query)
        except DatabaseError as exc:
            wanted = ", ".join(f"{k} {v}" for k, v in properties.items() if k != "engine")
            raise DatabaseError(
                f"{exc}; the dumped database was made with {wanted or 'the defaults'}: "
                "this server needs the same encoding and locale (install the locale) and "
                "tablespace (load the globals first)"
            ) from None

    def _drop_database(self, name: str) -> None:
        found = self._query(_DROP_BLOCKERS, (name,))
        if found and found[0][0]:  # a template cannot be dropped
            self._query(sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(sql.Identifier(name)))
        if found and found[0][1]:  # nor a database with subscriptions
            self._query(_DROP_SUBSCRIPTIONS, database=name)
        force = sql.SQL(" WITH (FORCE)") if self._version_num() >= 130000 else sql.SQL("")
        self._query(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)) + force)

    def _version_num(self) -> int:
        return int(self._query("SHOW server_version_num")[0][0])  # e.g. 150020

    def _replace(self, scratch: str, target: str) -> None:
        aside = scratch_name("old", target)
        try:
            self._drop_database(aside)  # left by a swap that committed and then died: old data
        except DatabaseError as exc:
            raise DatabaseError(
                f"{exc}; the old copy {aside} an earlier load left cannot be dropped and {target} "
                f"was left as it was before; drop {aside} by hand and load again"
            ) from None
        try:
            self._query(_SWAP, (target, target, aside, scratch, target), self._admin_db(target))
        except DatabaseError as exc:
            raise DatabaseError(
                f"{exc}; moving the loaded database into {target} failed and {target} was left "
                "as it was before; if other sessions keep connecting to it, stop them"
            ) from None
        try:
            self._drop_database(aside)
        except DatabaseError as exc:  # the load is complete: say so, but do not fail it
            log.warning(
                "%s; %s is loaded, but its old copy %s could not be dropped; drop it by hand "
                "(the next load tries again)",
                exc,
                target,
                aside,
            )

    def _admin_db(self, target: str) -> str:
        return "template1" if target == MAINTENANCE_DB else MAINTENANCE_DB

    def _remedy(self, errors: str) -> str:
        if _MISSING_ROLE.search(errors):
            return (
                "the role comes with the users and grants: load them first "
                "(restore-db --globals; promote loads them itself)"
            )
        return ""

    def _prepare_globals(self, dump: bytes) -> bytes:
        me = self._query("SELECT quote_ident(current_user)")[0][0].encode()
        spaces = {
            row[0].encode() for row in self._query("SELECT quote_ident(spcname) FROM pg_tablespace")
        }
        expiring = {
            row[0].encode()
            for row in self._query(
                "SELECT quote_ident(rolname) FROM pg_roles WHERE rolvaliduntil IS NOT NULL"
            )
        }
        lines = [_global_line(line, me, spaces, expiring) for line in dump.split(b"\n")]
        return b"\n".join(line for line in lines if line is not None)


# CREATE DATABASE options for the header's properties (absent: the server's default).
_CREATE_OPTIONS = (
    ("ENCODING {}", "encoding", sql.Literal),
    ("LC_COLLATE {}", "collate", sql.Literal),
    ("LC_CTYPE {}", "ctype", sql.Literal),
    ("LOCALE_PROVIDER icu ICU_LOCALE {}", "icu_locale", sql.Literal),
    ("ICU_RULES {}", "icu_rules", sql.Literal),  # PostgreSQL 16+
    ("LOCALE_PROVIDER builtin BUILTIN_LOCALE {}", "builtin_locale", sql.Literal),  # 17+
    ("TABLESPACE {}", "tablespace", sql.Identifier),
)
_DROP_BLOCKERS = """
SELECT d.datistemplate, EXISTS (SELECT FROM pg_subscription s WHERE s.subdbid = d.oid)
FROM pg_database d WHERE d.datname = %s
"""
# Detached from their replication slots first: dropping a subscription must
# never reach its publisher (a loaded copy names the master's own slot).
_DROP_SUBSCRIPTIONS = """
DO $drop$
DECLARE
    name text;
BEGIN
    FOR name IN SELECT subname FROM pg_subscription
            WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()) LOOP
        EXECUTE format('ALTER SUBSCRIPTION %I DISABLE', name);
        EXECUTE format('ALTER SUBSCRIPTION %I SET (slot_name = NONE)', name);
        EXECUTE format('DROP SUBSCRIPTION %I', name);
    END LOOP;
END
$drop$
"""
_MISSING_ROLE = re.compile(r'ERROR: +role ".*" does not exist')

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


def _global_line(line: bytes, me: bytes, tablespaces: set, expiring: set) -> Optional[bytes]:
    """One line of pg_dumpall --globals-only as shipper loads it; None leaves it out."""
    if line == b"CREATE ROLE " + me + b";" or line.startswith(b"ALTER ROLE " + me + b" WITH "):
        return None  # the loading role keeps its own attributes and password
    role = _ALTER_ROLE.match(line)
    if role:
        return _whole_role(line, role.group(1), role.group(1) in expiring)
    if re.match(rb"CREATE ROLE [^;]+;$", line):
        return b"DO $r$BEGIN " + line + b" EXCEPTION WHEN duplicate_object THEN NULL; END$r$;"
    match = _CREATE_TABLESPACE.match(line)
    if match and match.group(1) in tablespaces:  # its location is this machine's own
        return b"ALTER TABLESPACE " + match.group(1) + b" OWNER TO " + match.group(2) + b";"
    return line


_NAME = rb'("(?:[^"]|"")+"|[^\s"]+)'
_CREATE_TABLESPACE = re.compile(rb"CREATE TABLESPACE " + _NAME + rb" OWNER " + _NAME + rb" ")
_ALTER_ROLE = re.compile(rb'ALTER ROLE ("(?:[^"]|"")+"|\S+) WITH .*;$')
_ROLE_TAIL = re.compile(rb"( PASSWORD '[^']*')?( VALID UNTIL '[^']*')?;$")


def _whole_role(line: bytes, role: bytes, expiring: bool) -> bytes:
    """A role's ALTER ROLE, also clearing what the master's role has not and this one has.

    pg_dumpall leaves out what a role lacks (password, expiry, settings,
    comment, memberships, privileges); over an existing role those would stay
    as the slave had them. A role can never expire again (NULL) once it has:
    'infinity' means the same.
    """
    tail = _ROLE_TAIL.search(line)
    assert tail is not None  # the pattern matches any line ending in ';'
    password = tail.group(1) or b" PASSWORD NULL"
    until = tail.group(2) or (b" VALID UNTIL 'infinity'" if expiring else b"")
    return b"\n".join(
        [
            line[: tail.start()] + password + until + b";",
            b"ALTER ROLE " + role + b" RESET ALL;",
            b"COMMENT ON ROLE " + role + b" IS NULL;",
            _REVOKE_GRANTS.replace(b"@ROLE@", b"'" + role.replace(b"'", b"''") + b"'"),
        ]
    )


# What the role was granted server-wide goes: memberships, privileges on
# parameters (15+) and tablespaces. The master's are granted again further down
# the dump. From PostgreSQL 16 on, a membership is revoked per grantor.
_REVOKE_GRANTS = b"""DO $shipper$DECLARE m record; p text; BEGIN
FOR m IN SELECT roleid, grantor FROM pg_auth_members WHERE member = @ROLE@::regrole LOOP
EXECUTE format('REVOKE %I FROM %s', pg_get_userbyid(m.roleid), @ROLE@)
|| CASE WHEN current_setting('server_version_num')::int >= 160000
   THEN format(' GRANTED BY %I', pg_get_userbyid(m.grantor)) ELSE '' END || ' CASCADE';
END LOOP;
IF to_regclass('pg_catalog.pg_parameter_acl') IS NOT NULL THEN
FOR p IN EXECUTE 'SELECT DISTINCT parname FROM pg_parameter_acl, aclexplode(paracl) a
    WHERE a.grantee = $1' USING @ROLE@::regrole LOOP
EXECUTE format('REVOKE ALL ON PARAMETER %I FROM %s CASCADE', p, @ROLE@);
END LOOP;
END IF;
FOR p IN SELECT DISTINCT spcname FROM pg_tablespace, aclexplode(spcacl) a
    WHERE a.grantee = @ROLE@::regrole AND a.grantee <> spcowner LOOP
EXECUTE format('REVOKE ALL ON TABLESPACE %I FROM %s CASCADE', p, @ROLE@);
END LOOP; END$shipper$;"""


# ---------------------------------------------------------------- the dump side


# Columns newer servers have are read through to_jsonb (NULL where missing).
_PROPERTIES = """
SELECT pg_encoding_to_char(d.encoding) AS encoding, d.datcollate AS collate,
       d.datctype AS ctype,
       CASE WHEN to_jsonb(d) ->> 'datlocprovider' = 'i'
            THEN coalesce(to_jsonb(d) ->> 'daticulocale', to_jsonb(d) ->> 'datlocale')
       END AS icu_locale,
       to_jsonb(d) ->> 'daticurules' AS icu_rules,
       CASE WHEN to_jsonb(d) ->> 'datlocprovider' = 'b' THEN to_jsonb(d) ->> 'datlocale'
       END AS builtin_locale,
       nullif(t.spcname, 'pg_default') AS tablespace,
       pg_get_userbyid(d.datdba) AS owner, shobj_description(d.oid, 'pg_database') AS comment,
       d.datacl IS NOT NULL AS has_acl, d.datconnlimit AS limit, d.datistemplate AS template
FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace
WHERE d.datname = current_database()
"""
_ACL = """
SELECT a.privilege_type,
       CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
       a.is_grantable, nullif(pg_get_userbyid(a.grantor), pg_get_userbyid(d.datdba))
FROM pg_database d, aclexplode(d.datacl) WITH ORDINALITY
     a(grantor, grantee, privilege_type, is_grantable, n)
WHERE d.datname = current_database() ORDER BY a.n
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
        row = dict(zip([column[0] for column in cur.description], cur.fetchone()))
        cur.execute(_ACL)
        acl = cur.fetchall() if row["has_acl"] else []
        cur.execute(_SETTINGS)
        settings = cur.fetchall()
    properties = {"engine": "postgresql"}
    properties.update((key, row[key]) for _, key, _ in _CREATE_OPTIONS if row[key])
    owner, limit, comment = row["owner"], row["limit"], row["comment"]
    statements = [_execute("ALTER DATABASE %I OWNER TO %I", owner)]
    if limit != -1:
        statements.append(_execute(f"ALTER DATABASE %I WITH CONNECTION LIMIT {int(limit)}"))
    if row["template"]:
        statements.append(_execute("ALTER DATABASE %I IS_TEMPLATE true"))
    if comment is not None:
        statements.append(_execute("COMMENT ON DATABASE %I IS %L", comment))
    if row["has_acl"]:
        statements += [
            _execute("REVOKE ALL ON DATABASE %I FROM PUBLIC"),
            _execute("REVOKE ALL ON DATABASE %I FROM %I", owner),
        ]
    statements += [_grant(*entry) for entry in acl]
    for role, config in settings:
        statements += [_setting(role, entry) for entry in config]
    return properties, _do_block(statements)


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _execute(template: str, *args: str) -> str:
    """EXECUTE format(template, current_database(), args...) as PL/pgSQL."""
    values = ", ".join(["current_database()", *(_literal(a) for a in args)])
    return f"EXECUTE format({_literal(template)}, {values});"


def _grant(privilege: str, grantee: str, grantable: bool, grantor: Optional[str]) -> str:
    """grantee is already SQL (PUBLIC or a quoted name); % doubled for format().

    A grant someone other than the owner made (with the grant option) is made
    as that role again, as pg_dump does: the ACL names its grantor.
    """
    option = " WITH GRANT OPTION" if grantable else ""
    grant = _execute(f"GRANT {privilege} ON DATABASE %I TO {grantee.replace('%', '%%')}{option}")
    if grantor is None:
        return grant
    as_grantor = f"EXECUTE format('SET LOCAL ROLE %I', {_literal(grantor)});"
    return f"{as_grantor} {grant} EXECUTE 'RESET ROLE';"


def _setting(role: Optional[str], entry: str) -> str:
    """ALTER DATABASE (or ALTER ROLE IN DATABASE) ... SET with the value as literals.

    Never set_config() then FROM CURRENT: some settings cannot change inside a
    session, and `role` would switch the loading role itself.
    """
    name, _, value = entry.partition("=")
    assignment = f" SET {_identifier(name)} TO {_setting_value(name, value).replace('%', '%%')}"
    if role is None:
        return _execute("ALTER DATABASE %I" + assignment)
    return _execute("ALTER ROLE %2$I IN DATABASE %1$I" + assignment, role)


# Settings the server stores as a list of quoted names (pg_dump's variable_is_guc_list_quote).
_LIST_SETTINGS = frozenset(
    {
        "local_preload_libraries",
        "search_path",
        "session_preload_libraries",
        "shared_preload_libraries",
        "temp_tablespaces",
        "unix_socket_directories",
    }
)
_LIST_ITEM = re.compile(r'\s*(?:"((?:[^"]|"")*)"|([^,"]*?))\s*(,|$)')


def _setting_value(name: str, value: str) -> str:
    """A stored setting's value as SQL: one literal, or one per element of a list setting."""
    if name.lower() not in _LIST_SETTINGS:
        return _literal(value)
    return ", ".join(_literal(item) for item in _split_list(value)) or "''"


def _split_list(value: str) -> List[str]:
    """`app, "Odd Schema"` -> ["app", "Odd Schema"] (the server's SplitGUCList)."""
    items: List[str] = []
    position = 0
    while position < len(value):
        match = _LIST_ITEM.match(value, position)
        if match is None:
            return [value]
        quoted, bare, comma = match.groups()
        items.append(bare if quoted is None else quoted.replace('""', '"'))
        position = match.end()
        if not comma:
            break
    return items


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
