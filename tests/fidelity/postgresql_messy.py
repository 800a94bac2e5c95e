"""A messy PostgreSQL master, an older slave, and an exhaustive comparison of two servers.

The master is a default initdb holding what real servers hold: roles with odd
passwords, attributes, memberships and settings; databases with odd names,
owners, encodings, locales, limits, comments, privileges and settings; and
inside them every kind of object pg_dump knows. The slave already holds older,
different versions of the same databases and roles.

`differences(master, slave)` compares the two with PostgreSQL's own tools
(pg_dumpall --globals-only, pg_dump --create) and catalog queries; it returns
one readable entry per difference.
"""

from __future__ import annotations

import difflib
import re
import shutil
import subprocess
from typing import Any, Dict, List

ODD_PASSWORD = 'it\'s "quoted" \\ back; ünïcödé ☃ %s $$ -- end'
OLD_PASSWORD = "older slave password"

SHOP = "Shop Main"  # spaces, upper case
LATIN = "data-ünï"  # hyphen, unicode; LATIN1 on the master, UTF8 on the slave
ICU = "ICU Db"  # ICU locale when the server has ICU
TEMPLATE = "Tmpl"  # a user's template database
SPACE = "fast space"  # a tablespace; the slave has its own folder for it
PLAIN = "plain"


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# Roles and their server-wide properties (run in the postgres database).
MASTER_ROLES = [
    "CREATE ROLE alice LOGIN CREATEDB CONNECTION LIMIT 5 VALID UNTIL '2031-01-01'"
    " PASSWORD " + literal(ODD_PASSWORD),
    "CREATE ROLE \"Bob-Reporter\" LOGIN NOINHERIT PASSWORD 'b''o\\b \"x\" ☃'",
    "CREATE ROLE readers NOLOGIN",
    "CREATE ROLE replicator LOGIN REPLICATION BYPASSRLS PASSWORD 'rep'",
    'GRANT readers TO "Bob-Reporter"',
    "GRANT readers TO alice WITH ADMIN OPTION",
    "ALTER ROLE alice SET work_mem = '8MB'",
    'ALTER ROLE alice SET search_path = app, "Odd Schema", public',
    "COMMENT ON ROLE alice IS 'owns the shop ☃'",
    "GRANT SET ON PARAMETER log_statement TO alice",
    "GRANT SET, ALTER SYSTEM ON PARAMETER work_mem TO readers WITH GRANT OPTION",
]

# The slave's older, different accounts: another password, other attributes,
# an extra role, another membership.
SLAVE_ROLES = [
    f"CREATE ROLE alice LOGIN CONNECTION LIMIT 1 PASSWORD '{OLD_PASSWORD}'",
    "CREATE ROLE readers LOGIN PASSWORD 'was a login'",
    "CREATE ROLE slave_only LOGIN PASSWORD 'only here'",
    "CREATE ROLE replicator LOGIN VALID UNTIL '2020-01-01' PASSWORD 'old'",
    "ALTER ROLE alice SET work_mem = '1MB'",
    "ALTER ROLE readers SET maintenance_work_mem = '64MB'",
    "GRANT replicator TO readers",  # only on the slave
    "GRANT readers TO alice",  # the master's has ADMIN OPTION
    "GRANT ALTER SYSTEM ON PARAMETER log_statement TO alice",
    "GRANT SET ON PARAMETER work_mem TO replicator",
    "COMMENT ON ROLE alice IS 'old comment'",
    "COMMENT ON ROLE readers IS 'only the slave says so'",
]


def master_databases(icu: bool) -> List[str]:
    statements = [
        f'CREATE DATABASE "{SHOP}" OWNER alice CONNECTION LIMIT 50',
        f"COMMENT ON DATABASE \"{SHOP}\" IS 'the shop''s data ☃'",
        f'REVOKE CONNECT, TEMPORARY ON DATABASE "{SHOP}" FROM PUBLIC',
        f'GRANT CONNECT ON DATABASE "{SHOP}" TO "Bob-Reporter"',
        f'GRANT CREATE, TEMPORARY ON DATABASE "{SHOP}" TO readers WITH GRANT OPTION',
        # a grant by a grantee with the grant option (one session)
        f'SET ROLE readers; GRANT TEMPORARY ON DATABASE "{SHOP}" TO "Bob-Reporter"; RESET ROLE',
        f"ALTER DATABASE \"{SHOP}\" SET work_mem = '16MB'",
        f'ALTER DATABASE "{SHOP}" SET search_path = app, "Odd Schema", public',
        f"ALTER DATABASE \"{SHOP}\" SET app.tenant = 'it''s 100%s'",
        f'ALTER ROLE "Bob-Reporter" IN DATABASE "{SHOP}" SET statement_timeout = \'5s\'',
        f'ALTER ROLE alice IN DATABASE "{SHOP}" SET role = readers',
        f'CREATE DATABASE "{LATIN}" OWNER "Bob-Reporter" TEMPLATE template0 ENCODING LATIN1'
        " LC_COLLATE 'C' LC_CTYPE 'C' CONNECTION LIMIT 0",
        f'CREATE DATABASE {PLAIN} TABLESPACE "{SPACE}"',
        f'CREATE DATABASE "{TEMPLATE}" IS_TEMPLATE true',
    ]
    if icu:
        statements.append(
            f"CREATE DATABASE \"{ICU}\" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'de-DE'"
        )
    return statements


def slave_databases(icu: bool) -> List[str]:
    statements = [
        f'CREATE DATABASE "{SHOP}" CONNECTION LIMIT 3',
        f"COMMENT ON DATABASE \"{SHOP}\" IS 'older'",
        f'GRANT ALL ON DATABASE "{SHOP}" TO slave_only',
        f"ALTER DATABASE \"{SHOP}\" SET work_mem = '2MB'",
        f"ALTER DATABASE \"{SHOP}\" SET maintenance_work_mem = '64MB'",
        f"ALTER ROLE slave_only IN DATABASE \"{SHOP}\" SET work_mem = '3MB'",
        f'CREATE DATABASE "{LATIN}" OWNER alice',
        f"CREATE DATABASE {PLAIN} CONNECTION LIMIT 7",
        "CREATE DATABASE slave_only_db",
        f'CREATE DATABASE "{TEMPLATE}" IS_TEMPLATE true',
    ]
    if icu:
        statements.append(f'CREATE DATABASE "{ICU}"')
    return statements


ALL_BYTES = "decode(" + repr(bytes(range(256)).hex()) + ", 'hex')"

SHOP_OBJECTS = [
    "CREATE EXTENSION IF NOT EXISTS pgcrypto",
    "CREATE SCHEMA ext",
    "CREATE EXTENSION IF NOT EXISTS hstore SCHEMA ext",
    "CREATE EXTENSION IF NOT EXISTS citext",
    "CREATE SCHEMA app AUTHORIZATION alice",
    'CREATE SCHEMA "Odd Schema" AUTHORIZATION "Bob-Reporter"',
    "COMMENT ON SCHEMA app IS 'application ☃'",
    "GRANT USAGE ON SCHEMA app TO readers",
    "GRANT CREATE ON SCHEMA public TO readers",
    "CREATE TYPE app.mood AS ENUM ('sad', 'ok', 'happy')",
    "CREATE DOMAIN app.positive AS integer CHECK (VALUE > 0)",
    "CREATE TYPE app.pair AS (a integer, b text)",
    "CREATE SEQUENCE app.counter START 100 INCREMENT 7",
    "SELECT nextval('app.counter'), nextval('app.counter'), nextval('app.counter')",
    "CREATE TABLE app.items (id serial PRIMARY KEY, name citext NOT NULL, tags ext.hstore,"
    " blob bytea, mood app.mood, qty app.positive, secret text, touched timestamptz)",
    "COMMENT ON TABLE app.items IS 'items; with a quote '' here'",
    "COMMENT ON COLUMN app.items.blob IS 'all 256 byte values'",
    "INSERT INTO app.items (name, tags, blob, mood, qty, secret) VALUES"
    f" ('Apple', 'a=>1, b=>2', {ALL_BYTES}, 'happy', 3, crypt('pw', gen_salt('bf', 4))),"
    " ('hidden', NULL, '\\x00', 'sad', 1, NULL), ('Pear ☃', 'x=>NULL', '', 'ok', 2, 'x')",
    "ALTER TABLE app.items OWNER TO alice",
    'GRANT SELECT ON app.items TO "Bob-Reporter"',
    "GRANT SELECT (name), UPDATE (qty) ON app.items TO readers",
    'CREATE TABLE "Odd Schema"."Mixed Case" ("Id" int, "Value ☃" text)',
    'INSERT INTO "Odd Schema"."Mixed Case" VALUES (1, E\'tab\\there\\nnewline\\\\\')',
    'ALTER TABLE "Odd Schema"."Mixed Case" OWNER TO "Bob-Reporter"',
    "CREATE VIEW app.item_names AS SELECT id, upper(name::text) AS name FROM app.items",
    "CREATE VIEW app.item_names_2 WITH (security_barrier) AS SELECT * FROM app.item_names"
    " WHERE id > 1",
    "ALTER VIEW app.item_names OWNER TO alice",
    "CREATE MATERIALIZED VIEW app.item_counts AS SELECT mood, count(*) FROM app.items GROUP BY 1",
    "CREATE MATERIALIZED VIEW app.never_filled AS SELECT 1 AS one WITH NO DATA",
    "CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER"
    " SET search_path = app AS $f$BEGIN NEW.touched := now(); RETURN NEW; END$f$",
    "CREATE TRIGGER items_touch BEFORE UPDATE ON app.items FOR EACH ROW"
    " WHEN (OLD.qty IS DISTINCT FROM NEW.qty) EXECUTE FUNCTION app.touch()",
    "CREATE PROCEDURE app.bump(n integer) LANGUAGE sql AS $p$UPDATE app.items SET qty = qty + n$p$",
    "CREATE FUNCTION app.twice(x integer) RETURNS integer IMMUTABLE STRICT PARALLEL SAFE"
    " LANGUAGE sql RETURN x * 2",
    "COMMENT ON FUNCTION app.twice(integer) IS 'doubles'",
    "REVOKE EXECUTE ON FUNCTION app.twice(integer) FROM PUBLIC",
    "GRANT EXECUTE ON FUNCTION app.twice(integer) TO readers",
    "CREATE AGGREGATE app.concat_all(text) (SFUNC = textcat, STYPE = text, INITCOND = '')",
    "CREATE TABLE app.events (id bigint GENERATED ALWAYS AS IDENTITY, at date NOT NULL,"
    " note text) PARTITION BY RANGE (at)",
    "CREATE TABLE app.events_2025 PARTITION OF app.events"
    " FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')",
    "CREATE TABLE app.events_rest PARTITION OF app.events DEFAULT",
    "CREATE INDEX events_at ON app.events (at)",
    "INSERT INTO app.events (at, note) SELECT DATE '2025-01-01' + i, 'n' || i"
    " FROM generate_series(0, 500, 7) i",
    'CREATE TABLE app.tenant_rows (tenant text, v int) TABLESPACE "fast space"',
    "ALTER TABLE app.tenant_rows ENABLE ROW LEVEL SECURITY",
    "ALTER TABLE app.tenant_rows FORCE ROW LEVEL SECURITY",
    "CREATE POLICY own_rows ON app.tenant_rows FOR SELECT TO readers USING (tenant = current_user)",
    "CREATE POLICY restrictive ON app.tenant_rows AS RESTRICTIVE FOR ALL TO PUBLIC"
    " USING (v > 0) WITH CHECK (v < 100)",
    "INSERT INTO app.tenant_rows VALUES ('readers', 1), ('other', 2)",
    "CREATE RULE no_delete AS ON DELETE TO app.tenant_rows DO INSTEAD NOTHING",
    "CREATE STATISTICS app.items_stats (dependencies) ON id, qty FROM app.items",
    "CREATE TEXT SEARCH CONFIGURATION app.simple_copy (COPY = simple)",
    "CREATE COLLATION app.ci (provider = libc, locale = 'C')",
    "ALTER DEFAULT PRIVILEGES FOR ROLE alice IN SCHEMA app GRANT SELECT ON TABLES TO readers",
    "ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC",
    "CREATE PUBLICATION items_pub FOR TABLE app.items",
    "CREATE SUBSCRIPTION items_sub CONNECTION 'host=/nonexistent dbname=shop'"
    " PUBLICATION items_pub WITH (connect = false)",
    "CREATE FUNCTION public.on_ddl() RETURNS event_trigger LANGUAGE plpgsql"
    " AS $e$BEGIN RAISE NOTICE 'ddl'; END$e$",
    "CREATE EVENT TRIGGER note_ddl ON ddl_command_end EXECUTE FUNCTION public.on_ddl()",
    "ALTER EVENT TRIGGER note_ddl DISABLE",
    "SELECT lo_from_bytea(424242, " + ALL_BYTES + ")",
    "SELECT lo_from_bytea(424243, 'second')",
    "ALTER LARGE OBJECT 424242 OWNER TO alice",
    'GRANT SELECT ON LARGE OBJECT 424242 TO "Bob-Reporter"',
    "COMMENT ON LARGE OBJECT 424243 IS 'a blob ☃'",
]

SHOP_SLAVE_OBJECTS = [
    "CREATE SCHEMA app",
    "CREATE TABLE app.items (id int, name text)",
    "INSERT INTO app.items VALUES (1, 'old apple'), (99, 'gone')",
    "CREATE TABLE public.only_on_slave (x int)",
    "SELECT lo_from_bytea(424242, 'old blob')",
    "SELECT lo_from_bytea(777, 'slave only blob')",
]

LATIN_OBJECTS = [
    "CREATE TABLE words (w text, b bytea)",
    "INSERT INTO words VALUES ('café', '\\xff00'), ('Ærø ñ', NULL)",
    "CREATE SEQUENCE s",
    "SELECT setval('s', 42, false)",
]

LATIN_SLAVE_OBJECTS = ["CREATE TABLE words (w text)", "INSERT INTO words VALUES ('old')"]


def build_master(server: Any, icu: bool) -> None:
    _run(server, MASTER_ROLES)
    _run(server, [tablespace(server, "alice"), f'GRANT CREATE ON TABLESPACE "{SPACE}" TO readers'])
    _run(server, master_databases(icu))
    _run(server, SHOP_OBJECTS, SHOP)
    _run(server, LATIN_OBJECTS, LATIN)
    _run(server, ["CREATE TABLE t (id int PRIMARY KEY)", "INSERT INTO t VALUES (1)"], PLAIN)
    _run(server, ["CREATE TABLE starter (v text)", "INSERT INTO starter VALUES ('x')"], TEMPLATE)
    if icu:
        _run(server, ["CREATE TABLE t (s text)", "INSERT INTO t VALUES ('ä'), ('z')"], ICU)
    server.sql(f'ALTER DATABASE "{LATIN}" SET default_transaction_read_only = on')


def build_slave(server: Any, icu: bool) -> None:
    _run(server, SLAVE_ROLES)
    _run(server, [tablespace(server, "postgres"), f'GRANT CREATE ON TABLESPACE "{SPACE}" TO alice'])
    _run(server, slave_databases(icu))
    _run(server, SHOP_SLAVE_OBJECTS, SHOP)
    _run(server, LATIN_SLAVE_OBJECTS, LATIN)


def tablespace(server: Any, owner: str) -> str:
    """CREATE TABLESPACE for SPACE in a folder of the server's own."""
    folder = server.workdir / "tablespace"
    folder.mkdir()
    shutil.chown(folder, "postgres", "postgres")
    return f"CREATE TABLESPACE \"{SPACE}\" OWNER {owner} LOCATION '{folder}'"


def has_icu(server: Any) -> bool:
    return bool(server.sql("SELECT count(*) FROM pg_collation WHERE collprovider = 'i'")[0][0])


def _run(server: Any, statements: List[str], db: str = "postgres") -> None:
    for statement in statements:
        server.sql(statement, db)


# ---------------------------------------------------------------- comparison


def settle_documented(master: Any, slave: Any) -> None:
    """Check the differences docs/fidelity.md allows, then undo them on the slave.

    Roles and databases only the slave has are kept, an expiry the master's
    role lacks becomes 'infinity', and the loading role keeps its own password.
    """
    assert slave.sql("SELECT count(*) FROM pg_roles WHERE rolname = 'slave_only'") == [(1,)]
    slave.sql("DROP ROLE slave_only")
    slave.sql("DROP DATABASE slave_only_db")
    expiry = "SELECT rolvaliduntil::text FROM pg_authid WHERE rolname = 'replicator'"
    assert slave.sql(expiry) == [("infinity",)]
    slave.sql("UPDATE pg_authid SET rolvaliduntil = NULL WHERE rolname = 'replicator'")
    for role in ("alice", "Bob-Reporter", "replicator"):
        assert scram_of(slave, role) == scram_of(master, role)
    slave.connect(user="alice", password=ODD_PASSWORD, tcp=True).close()
    assert scram_of(slave, "postgres") != scram_of(master, "postgres")
    slave.sql(f"ALTER ROLE postgres PASSWORD '{scram_of(master, 'postgres')}'")


def differences(master: Any, slave: Any, databases: List[str]) -> Dict[str, str]:
    """What differs between the two servers: {aspect: unified diff}; {} when equal."""
    found = {}
    for aspect, read in _aspects(databases).items():
        want, got = read(master), read(slave)
        if want != got:
            found[aspect] = "\n".join(
                difflib.unified_diff(want, got, "master", "slave", lineterm="", n=1)
            )
    return found


def _aspects(databases: List[str]) -> Dict[str, Any]:
    aspects: Dict[str, Any] = {
        "pg_dumpall --globals-only": globals_dump,
        "pg_database": lambda s: _rows(s, _DATABASES),
        "pg_db_role_setting": lambda s: _rows(s, _SETTINGS),
        "pg_shdescription": lambda s: _rows(s, _SHARED_COMMENTS),
        "roles": lambda s: _rows(s, _ROLES),
    }
    for db in databases:
        aspects[f"pg_dump --create {db}"] = lambda s, db=db: database_dump(s, db)
        aspects[f"large objects {db}"] = lambda s, db=db: _rows(s, _LARGE_OBJECTS, db)
    return aspects


def _tool(server: Any, name: str, *args: str) -> List[str]:
    argv = [str(server.bindir / name), f"--host={server.socket}", f"--port={server.port}"]
    done = subprocess.run(
        [*argv, "--username=postgres", "--no-password", *args],
        capture_output=True,
        check=True,
    )
    return [
        line
        for line in done.stdout.decode(errors="backslashreplace").splitlines()
        if not _volatile(line)
    ]


def _volatile(line: str) -> bool:
    # \restrict's key is random per run; comments carry no content.
    return line.startswith(("\\restrict ", "\\unrestrict ", "--")) or not line.strip()


def globals_dump(server: Any) -> List[str]:
    # A tablespace's folder is each machine's own (docs/fidelity.md).
    lines = _tool(server, "pg_dumpall", "--globals-only")
    return [re.sub(r" LOCATION '[^']*';$", " LOCATION '...';", line) for line in lines]


def database_dump(server: Any, db: str) -> List[str]:
    lines = _tool(server, "pg_dump", "--create", f"--dbname={db}")
    # pg_dump lists per-role settings in the catalog's physical order, which
    # says nothing about the database: compare them sorted.
    where = [n for n, line in enumerate(lines) if _ROLE_IN_DATABASE.match(line)]
    for n, line in zip(where, sorted(lines[n] for n in where)):
        lines[n] = line
    return lines


_ROLE_IN_DATABASE = re.compile(r"ALTER ROLE .* IN DATABASE .* SET ")


def _rows(server: Any, query: str, db: str = "postgres") -> List[str]:
    return [repr(row) for row in server.sql(query, db)]


_DATABASES = """
SELECT datname, pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype,
       datlocprovider, daticulocale, datconnlimit, datacl::text, datistemplate, datallowconn,
       (SELECT spcname FROM pg_tablespace WHERE oid = dattablespace),
       to_jsonb(d) ->> 'datcollversion'
FROM pg_database d WHERE datname NOT LIKE 'shipper\\_%' ORDER BY 1
"""
_SETTINGS = """
SELECT coalesce(d.datname, '*'), coalesce(pg_get_userbyid(NULLIF(s.setrole, 0)), '*'),
       s.setconfig::text
FROM pg_db_role_setting s LEFT JOIN pg_database d ON d.oid = s.setdatabase ORDER BY 1, 2
"""
_SHARED_COMMENTS = """
SELECT coalesce((SELECT datname FROM pg_database WHERE oid = objoid),
                (SELECT rolname FROM pg_authid WHERE oid = objoid)), classoid::regclass::text,
       description
FROM pg_shdescription ORDER BY 1, 2
"""
_ROLES = """
SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication,
       rolbypassrls, rolconnlimit, rolvaliduntil::text, rolpassword IS NOT NULL,
       ARRAY(SELECT b.rolname || CASE WHEN m.admin_option THEN '+admin' ELSE '' END
             FROM pg_auth_members m JOIN pg_roles b ON b.oid = m.roleid
             WHERE m.member = a.oid ORDER BY 1)::text
FROM pg_authid a WHERE rolname NOT LIKE 'pg\\_%' ORDER BY 1
"""
_LARGE_OBJECTS = """
SELECT m.oid, pg_get_userbyid(m.lomowner), m.lomacl::text, md5(lo_get(m.oid)),
       obj_description(m.oid, 'pg_largeobject')
FROM pg_largeobject_metadata m ORDER BY 1
"""


def scram_of(server: Any, role: str) -> str:
    return server.sql(f"SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'")[0][0]


def without_role(lines: List[str], role: str) -> List[str]:
    pattern = re.compile(rf"\b{re.escape(role)}\b")
    return [line for line in lines if not pattern.search(line)]
