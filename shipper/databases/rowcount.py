"""Rows per table: counted in a dump's stream on the master, in the loaded database on the slave.

The master's count is exact because it reads the dump itself (the dump
tool's own snapshot), not the live tables, which move under write load. Each
engine's plain dump format has its counter here; both take the stream in
chunks of any size (a table name or a string may be cut anywhere) and keep
only small state, whatever the size of a row. `result()` is {table: rows},
or None when the dump holds data in a form the counter does not know (e.g.
pg_dump --inserts, mariadb-dump --insert-ignore): then no count is recorded
and none is checked, rather than a wrong one.

Table names are as the dump writes them: PostgreSQL's qualified, quoted
where needed (`public."Odd Name"`), MariaDB's bare (`it's`).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

LINE_LIMIT = 1 << 20  # a longer statement head than this is not a dump line we count

_IDENT = rb'(?:"(?:[^"]|"")+"|[a-z_][a-z0-9_$]*)'
_COPY = re.compile(rb"COPY (" + _IDENT + rb"\." + _IDENT + rb") .*FROM stdin;\Z")
_PG_NAME = re.compile(_IDENT.decode() + r"\." + _IDENT.decode() + r"\Z")
_TICKED = rb"`((?:[^`]|``)+)`"
_SECTION = re.compile(rb"-- Dumping data for table " + _TICKED + rb"\Z")
_INSERT = re.compile(rb"INSERT INTO " + _TICKED + rb"(?: \((?:[^`()]|`(?:[^`]|``)*`)*\))? VALUES")


class RowCounter:
    """Counts rows per table in a dump as its chunks pass; subclasses know one format."""

    def __init__(self) -> None:
        self.rows: Dict[str, int] = {}
        self.countable = True
        self._line = b""  # the current line's start, while it is classified

    def feed(self, chunk: bytes) -> None:
        position = 0
        while position < len(chunk) and self.countable:
            position = self._step(chunk, position)

    def result(self) -> Optional[Dict[str, int]]:
        return dict(self.rows) if self.countable and not self._open() else None

    def _step(self, chunk: bytes, position: int) -> int:
        raise NotImplementedError

    def _open(self) -> bool:
        """Whether the stream ended inside a table's data (a truncated dump: no count)."""
        raise NotImplementedError

    def _take_line(self, chunk: bytes, position: int) -> Tuple[Optional[bytes], int]:
        """The next whole line (without its newline) once complete, and where to go on."""
        end = chunk.find(b"\n", position)
        if end < 0:
            self._line += chunk[position : position + LINE_LIMIT]
            if len(self._line) > LINE_LIMIT:
                self._line = self._line[:LINE_LIMIT]
            return None, len(chunk)
        line, self._line = self._line + chunk[position:end], b""
        return line, end + 1


class PostgreSQLRows(RowCounter):
    """pg_dump's plain format: each table's rows are the lines of its COPY block.

    A block is the `COPY name (...) FROM stdin;` line that follows a "TABLE
    DATA" comment, up to the line `\\.`; a data line never is `\\.` (COPY
    writes a backslash as `\\\\`) nor holds a raw newline.
    """

    def __init__(self) -> None:
        super().__init__()
        self._table: Optional[str] = None  # inside this table's COPY block
        self._expect_copy = False  # a TABLE DATA comment was read: its COPY line comes next
        self._last = b""  # the block's last 3 bytes so far (its end may be cut)

    def _open(self) -> bool:
        return self._table is not None or self._expect_copy

    def _step(self, chunk: bytes, position: int) -> int:
        if self._table is not None:
            return self._block(chunk, position)
        line, position = self._take_line(chunk, position)
        if line is not None:
            self._header(line)
        return position

    def _header(self, line: bytes) -> None:
        if line.startswith(b"-- Data for Name: ") and b"; Type: TABLE DATA; " in line:
            self._expect_copy = True
        elif self._expect_copy and line and not line.startswith(b"--"):
            found = _COPY.match(line)
            self._expect_copy = False
            if found is None:  # --inserts and the like: rows we do not count
                self.countable = False
                return
            self._table = found.group(1).decode("utf-8", "surrogateescape")
            self.rows[self._table] = 0
            self._last = b"\n"  # the COPY line's own newline: not a row

    def _block(self, chunk: bytes, position: int) -> int:
        assert self._table is not None
        # Rows end with the newlines after the COPY line's, through the end marker's first.
        joint = self._last + chunk[position : position + 3]
        cut = joint.find(b"\n\\.\n")
        if 0 <= cut < len(self._last):  # the marker began in the last chunk: its newline counted
            return self._close(position + cut + 4 - len(self._last))
        end = chunk.find(b"\n\\.\n", position)
        if end >= 0:
            self.rows[self._table] += chunk.count(b"\n", position, end + 1)
            return self._close(end + 4)
        self.rows[self._table] += chunk.count(b"\n", position)
        self._last = (self._last + chunk[max(position, len(chunk) - 3) :])[-3:]
        return len(chunk)

    def _close(self, position: int) -> int:
        self._table = None
        return position


class MariaDBRows(RowCounter):
    """mariadb-dump's INSERT statements: a table's rows are its value tuples.

    A tuple opens with "(" outside the string literals (values are numbers,
    NULL, 0x... or quoted strings; none has a parenthesis of its own). Strings
    are told apart by their quotes once the escapes are removed (`\\\\` and
    `\\'`; a doubled `''` cancels itself). A raw newline is never inside a
    string (the dump writes it `\\n`), so a statement may span lines (the
    tuples of 10.11+ do) and ends at the line that ends with ";".
    """

    def __init__(self) -> None:
        super().__init__()
        self._section: Optional[str] = None  # "Dumping data for table" seen: its table
        self._insert: Optional[str] = None  # inside an INSERT into this table
        self._in_string = False
        self._escape = False  # the last piece ended with a backslash inside a string
        self._tail = b""  # the statement's last byte so far

    def _open(self) -> bool:
        return self._insert is not None

    def _step(self, chunk: bytes, position: int) -> int:
        if self._insert is not None:
            return self._values(chunk, position)
        if self._section is not None and (self._line + chunk[position : position + 13]).startswith(
            b"INSERT INTO `"
        ):
            return self._insert_head(chunk, position)
        line, position = self._take_line(chunk, position)
        if line is not None:
            self._classify(line)
        return position

    def _classify(self, line: bytes) -> None:
        section = _SECTION.match(line)
        if section:
            self._section = _unticked(section.group(1))
            self.rows.setdefault(self._section, 0)
        elif self._section is None or line in (b"", b"--") or line.startswith((b"/*", b"LOCK ")):
            pass
        elif line.startswith((b"--", b"UNLOCK TABLES", b"DELIMITER")):
            self._section = None
        else:
            self.countable = False  # REPLACE, INSERT IGNORE...: rows we do not count

    def _insert_head(self, chunk: bytes, position: int) -> int:
        """`INSERT INTO `t` [(columns)] VALUES`, perhaps cut: then its values, never buffered."""
        end = chunk.find(b"\n", position)
        head = self._line + chunk[position : len(chunk) if end < 0 else end]
        found = _INSERT.match(head)
        if found is None:
            if end >= 0 or len(head) > LINE_LIMIT:
                self.countable = False
            else:
                self._line = head
            return len(chunk)
        if _unticked(found.group(1)) != self._section:
            self.countable = False
            return len(chunk)
        self._line, self._insert, self._tail = b"", self._section, b""
        self._scan(head[found.end() :])
        if end < 0:
            return len(chunk)
        self._line_end()
        return end + 1

    def _values(self, chunk: bytes, position: int) -> int:
        end = chunk.find(b"\n", position)
        self._scan(chunk[position : len(chunk) if end < 0 else end])
        if end < 0:
            return len(chunk)
        self._line_end()
        return end + 1

    def _line_end(self) -> None:
        if self._in_string or self._escape:
            self.countable = False  # a newline inside a string: not mariadb-dump's
        elif self._tail == b";":
            self._insert = None

    def _scan(self, data: bytes) -> None:
        if not data:
            return
        assert self._insert is not None
        if self._escape:  # the escaped byte was cut off: it is this piece's first
            data, self._escape = data[1:], False
        if b"\\" in data:
            data = data.replace(b"\\\\", b"")
            if data.endswith(b"\\"):
                data, self._escape = data[:-1], True
            data = data.replace(b"\\'", b"")
        pieces = data.split(b"'")
        outside = pieces[1::2] if self._in_string else pieces[0::2]
        if len(pieces) % 2 == 0:
            self._in_string = not self._in_string
        self.rows[self._insert] += b"".join(outside).count(b"(")
        last = outside[-1] if outside and not self._in_string else b""
        stripped = last.rstrip()
        if stripped:
            self._tail = stripped[-1:]
        elif not self._in_string and len(pieces) > 1:
            self._tail = b"'"


def _unticked(name: bytes) -> str:
    return name.replace(b"``", b"`").decode("utf-8", "surrogateescape")


# ---------------------------------------------------------------- the slave's side


def count_queries(
    tables: Sequence[str], count_sql: Any, batch: int = 200
) -> List[Tuple[List[str], str]]:
    """Few queries for many tables: batches of `SELECT 0, count(*) ... UNION ALL ...`."""
    out = []
    for start in range(0, len(tables), batch):
        names = list(tables[start : start + batch])
        parts = [f"SELECT {i}, {count_sql(name)}" for i, name in enumerate(names)]
        out.append((names, " UNION ALL ".join(parts)))
    return out


def postgresql_count(name: str) -> str:
    """count(*) of one table as pg_dump named it (its own rows only, as COPY wrote them)."""
    if not _PG_NAME.match(name):
        raise ValueError(f"not a table name pg_dump writes: {name!r}")
    return f"count(*) FROM ONLY {name}"


MARIADB_VERSIONED = (
    "SELECT TABLE_NAME FROM information_schema.TABLES "
    "WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'SYSTEM VERSIONED'"
)


def mariadb_count(versioned: Set[str]) -> Callable[[str], str]:
    """count(*) of one table; a system-versioned one with its history rows."""

    def count(name: str) -> str:
        ticked = "`" + name.replace("`", "``") + "`"
        return f"COUNT(*) FROM {ticked}" + (" FOR SYSTEM_TIME ALL" if name in versioned else "")

    return count
