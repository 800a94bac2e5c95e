"""The dump scans: rows per table and PostgreSQL's key-insensitive digest, cut anywhere.

The samples are what pg_dump 15.20 and mariadb-dump 10.11 wrote for tables
holding the awkward values (a quote, a backslash, "),(", a line that looks
like `\\.` or `\\restrict`); each is fed whole and in chunks of every small size.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

from shipper.core.manifest import Part
from shipper.core.state import StandbyRecord
from shipper.databases import dumpscan, rowcount
from shipper.slave.promote.standby import in_place

PG_DUMP = rb"""-- shipper-database: {"encoding": "UTF8"}
--
-- PostgreSQL database dump
--

\restrict AIlEgyNrFT9VEYYay2osxxyQgrfX1g5LwXYTPw7HhHODD5W5uLjeNftEWmkJP9w

SET statement_timeout = 0;

--
-- Name: Odd Name; Type: TABLE; Schema: public; Owner: postgres
--

CREATE TABLE public."Odd Name" (
    id integer,
    b text
);

--
-- Data for Name: Odd Name; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public."Odd Name" (id, b) FROM stdin;
1	line\nbreak\\.
2	\restrict x
\.


--
-- Data for Name: e; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public.e (id) FROM stdin;
\.


--
-- Data for Name: t2; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public.t2 (id, b) FROM stdin;
1	\\x00ff
2	\N
3	COPY public.x (a) FROM stdin;
\.


--
-- PostgreSQL database dump complete
--

\unrestrict AIlEgyNrFT9VEYYay2osxxyQgrfX1g5LwXYTPw7HhHODD5W5uLjeNftEWmkJP9w

"""

MARIADB_DUMP = rb"""-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)
--
-- Dumping data for table `em`
--

LOCK TABLES `em` WRITE;
/*!40000 ALTER TABLE `em` DISABLE KEYS */;
/*!40000 ALTER TABLE `em` ENABLE KEYS */;
UNLOCK TABLES;
DELIMITER ;;
/*!50003 CREATE*/ /*!50003 TRIGGER tr AFTER INSERT ON em FOR EACH ROW INSERT INTO v VALUES (9,9)
*/;;
DELIMITER ;

--
-- Dumping data for table `it's`
--

LOCK TABLES `it's` WRITE;
INSERT INTO `it's` VALUES
(1,'a\'),(b\\',0x00),
(2,'x\\\',(',NULL),
(3,'\n',NULL);
INSERT INTO `it's` VALUES (4,'it''s (',NULL),(5,'',NULL);
UNLOCK TABLES;

--
-- Dumping data for table `v`
--

/*M!101100 SET @old_system_versioning_insert_history=@@session.system_versioning_insert_history, @@session.system_versioning_insert_history=1 */;
LOCK TABLES `v` WRITE;
INSERT INTO `v` (`id`, `x`, row_start, row_end) VALUES (1,5,'2026-12-03 15:31:46.142606','2038-01-19 03:14:07.999999'),
(2,2,'2026-12-03 15:31:46.120092','2038-01-19 03:14:07.999999'),
(1,1,'2026-12-03 15:31:46.120092','2026-12-03 15:31:46.142606');
UNLOCK TABLES;
-- Dump completed
"""


def scanned(engine: str, data: bytes, size: int) -> Dict[str, Any]:
    scan = dumpscan.for_engine(engine)
    assert scan is not None
    for start in range(0, len(data), size):
        scan.feed(data[start : start + size])
    return scan.result()


def every_cut(engine: str, data: bytes) -> List[Dict[str, Any]]:
    return [scanned(engine, data, size) for size in [*range(1, 9), 13, 64, 4096, len(data)]]


def test_postgresql_rows_are_the_copy_blocks_lines_wherever_the_stream_is_cut() -> None:
    results = every_cut("postgresql", PG_DUMP)
    assert results[0]["rows"] == {'public."Odd Name"': 2, "public.e": 0, "public.t2": 3}
    assert all(result == results[0] for result in results)


def test_mariadb_rows_are_the_tuples_outside_strings_wherever_the_stream_is_cut() -> None:
    results = every_cut("mariadb", MARIADB_DUMP)
    assert results[0] == {"rows": {"em": 0, "it's": 5, "v": 3}}  # no content digest needed
    assert all(result == results[0] for result in results)


def test_the_content_digest_ignores_only_the_restrict_key() -> None:
    other_key = PG_DUMP.replace(b"AIlEgyNrFT9VEY", b"ZZZZZZZZZZZZZZ")
    assert hashlib.sha256(other_key).hexdigest() != hashlib.sha256(PG_DUMP).hexdigest()
    digests = {scanned("postgresql", d, 7)["content_sha256"] for d in (PG_DUMP, other_key)}
    assert len(digests) == 1
    changed = PG_DUMP.replace(b"2\t\\N", b"2\t\\N ")
    assert scanned("postgresql", changed, 7)["content_sha256"] not in digests
    # Only the \restrict line's key is left out: data lines that look like one count.
    lookalikes = [PG_DUMP.replace(b"2\t\\restrict x", b"\\restrict " + k) for k in (b"x", b"y")]
    assert len({scanned("postgresql", d, 7)["content_sha256"] for d in lookalikes}) == 2


def test_a_dump_without_a_key_has_no_content_digest_but_still_counts() -> None:
    lines = [line for line in PG_DUMP.splitlines(True) if b"restrict AIl" not in line]
    result = scanned("postgresql", b"".join(lines), 5)
    assert "content_sha256" not in result and result["rows"]["public.t2"] == 3


def test_a_long_stream_keeps_the_key_out_of_head_and_tail_only() -> None:
    body = b"".join(b"%d\tsome row\n" % i for i in range(200_000))
    head, rest = PG_DUMP.split(b"COPY public.e (id) FROM stdin;\n", 1)
    dump = head + b"COPY public.e (id) FROM stdin;\n" + body + rest
    result = scanned("postgresql", dump, 1 << 16)
    assert result["rows"]["public.e"] == 200_000
    again = scanned("postgresql", dump.replace(b"AIlEgy", b"QQQQQQ"), 4099)
    assert again == result


@pytest.mark.parametrize(
    "engine, dump",
    [
        # pg_dump --inserts: data not in COPY blocks
        ("postgresql", PG_DUMP.replace(b"COPY public.e (id) FROM stdin;\n\\.", b"INSERT 1;")),
        # the stream ends inside a COPY block: a truncated dump
        ("postgresql", PG_DUMP[: PG_DUMP.index(b"3\tCOPY")]),
        # --insert-ignore, --replace
        ("mariadb", MARIADB_DUMP.replace(b"INSERT INTO `v`", b"INSERT IGNORE INTO `v`")),
        ("mariadb", MARIADB_DUMP.replace(b"INSERT INTO `v`", b"REPLACE INTO `v`")),
        # an INSERT into another table than the section's
        ("mariadb", MARIADB_DUMP.replace(b"INSERT INTO `v`", b"INSERT INTO `w`")),
        # the stream ends inside an INSERT
        ("mariadb", MARIADB_DUMP[: MARIADB_DUMP.index(b"(3,'\\n'")]),
    ],
)
def test_data_the_counter_does_not_know_gives_no_count(engine: str, dump: bytes) -> None:
    assert all("rows" not in result for result in every_cut(engine, dump))


def test_a_huge_row_is_never_buffered_whole() -> None:
    blob = b"0x" + b"ab" * (3 << 20)
    dump = MARIADB_DUMP.replace(b"(5,'',NULL)", b"(5,''," + blob + b")")
    counter = rowcount.MariaDBRows()
    for start in range(0, len(dump), 1 << 16):
        counter.feed(dump[start : start + (1 << 16)])
        assert len(counter._line) < 1 << 16
    assert counter.result() == {"em": 0, "it's": 5, "v": 3}


def test_the_slaves_count_queries() -> None:
    queries = rowcount.count_queries(["public.a", 'public."B c"'], rowcount.postgresql_count, 1)
    assert queries == [
        (["public.a"], "SELECT 0, count(*) FROM ONLY public.a"),
        (['public."B c"'], 'SELECT 0, count(*) FROM ONLY public."B c"'),
    ]
    with pytest.raises(ValueError):
        rowcount.postgresql_count("public.a; DROP TABLE x")
    count = rowcount.mariadb_count({"v"})
    assert count("it`s") == "COUNT(*) FROM `it``s`"
    assert count("v") == "COUNT(*) FROM `v` FOR SYSTEM_TIME ALL"


def test_the_dump_command_adds_the_scan_to_the_hash(tmp_path: Path) -> None:
    source, result = tmp_path / "dump.sql", tmp_path / "result.json"
    source.write_bytes(PG_DUMP)
    command = [sys.executable, "-m", "shipper.databases.dumpscan", "postgresql", "--out"]
    done = subprocess.run([*command, str(result), "--", "cat", str(source)], capture_output=True)
    assert done.returncode == 0 and done.stdout == PG_DUMP, done.stderr
    written = json.loads(result.read_text())
    assert written["sha256"] == hashlib.sha256(PG_DUMP).hexdigest()
    assert written["bytes"] == len(PG_DUMP)
    assert written["rows"]["public.t2"] == 3 and len(written["content_sha256"]) == 64


def test_manifests_without_the_new_fields_still_load_and_compare_by_sha256() -> None:
    old = Part.from_json(
        {
            "name": "postgresql:app",
            "outcome": "ok",
            "snapshot": "abc",
            "details": {"engine": "postgresql", "database": "app", "filename": "f", "sha256": "s1"},
        }
    ).dump()
    assert old.rows is None and old.content_sha256 is None and old.content_key == "s1"
    new = Part.from_json(
        {
            "name": "postgresql:app",
            "outcome": "ok",
            "snapshot": "def",
            "details": {
                **{"engine": "postgresql", "database": "app", "filename": "f", "sha256": "s2"},
                **{"content_sha256": "c1", "rows": {"public.t": "3"}},
            },
        }
    ).dump()
    assert new.content_key == "c1" and new.rows == {"public.t": 3}
    # A record written from an old manifest holds the sha256: the new set's dump loads again.
    record = StandbyRecord(set="x", state="applied", dumps={"postgresql:app": "s1"})
    assert in_place(record, [new]) == []
    assert in_place(StandbyRecord(dumps={"postgresql:app": "c1"}), [new]) == ["postgresql:app"]
