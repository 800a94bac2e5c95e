"""What the master learns of a dump as it streams past (core/streamhash.py feeds it).

    python -m shipper.databases.dumpscan ENGINE --out RESULTFILE -- CMD ARGS...

is streamhash with ENGINE's scan (databases/base.py's wrap_with_hash).

Besides the byte count and sha256 that streamhash takes itself, an engine's
scan gives the rows per table (rowcount.py) and, for PostgreSQL, a content
digest that ignores pg_dump's random `\\restrict` key: two dumps of
unchanged data differ in that key only (17.6, 16.10, 15.14... write it), so
the standby compares this digest to know that a dump it has loaded need
not load again. The sha256 of the bytes stays the integrity check of every load.
"""

from __future__ import annotations

import hashlib
import re
import sys
from typing import Any, Callable, Dict, List, Optional

from shipper.core import streamhash
from shipper.databases import rowcount

HEAD = 8192  # pg_dump writes `\restrict KEY` within its first lines
TAIL = 4096  # and `\unrestrict KEY` as its very last one
_RESTRICT = re.compile(rb"^\\restrict ([A-Za-z0-9]+)$", re.MULTILINE)


class RestrictKeyDigest:
    """sha256 of the stream with the key of its `\\restrict` and `\\unrestrict` lines left out.

    The key is looked for in the first HEAD bytes only and left out of the
    last TAIL bytes only (where pg_dump writes them), so data holding such a
    line counts as it is. result() is None when the stream has no key: then
    the sha256 of the bytes says the same.
    """

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self._head = b""
        self._key: Optional[bytes] = None
        self._headed = False
        self._tail = b""

    def feed(self, chunk: bytes) -> None:
        if not self._headed:
            self._head += chunk
            if len(self._head) < HEAD:
                return
            chunk, self._head = self._open(self._head), b""
        if len(chunk) >= TAIL:
            self._digest.update(self._tail)
            self._digest.update(memoryview(chunk)[:-TAIL])
            self._tail = chunk[-TAIL:]
        else:
            held = self._tail + chunk
            self._digest.update(held[:-TAIL])
            self._tail = held[-TAIL:]

    def _open(self, head: bytes) -> bytes:
        """The head with its key left out (kept for the tail); from here on, bytes as they are."""
        self._headed = True
        found = _RESTRICT.search(head, 0, HEAD)
        if found is None:
            return head
        self._key = found.group(1)
        return head[: found.start(1)] + head[found.end(1) :]

    def result(self) -> Optional[str]:
        if not self._headed:
            self.feed(self._open(self._head))
        if self._key is None:
            return None
        self._digest.update(self._tail.replace(b"\n\\unrestrict " + self._key, b"\n\\unrestrict "))
        return self._digest.hexdigest()


class Scan:
    """One engine's scan of one dump: its row counter and, where needed, its content digest."""

    def __init__(self, counter: rowcount.RowCounter, digest: Optional[RestrictKeyDigest] = None):
        self.counter, self.digest = counter, digest

    def feed(self, chunk: bytes) -> None:
        self.counter.feed(chunk)
        if self.digest is not None:
            self.digest.feed(chunk)

    def result(self) -> Dict[str, Any]:
        """The manifest's fields: rows (when countable) and content_sha256 (when it differs)."""
        out: Dict[str, Any] = {}
        rows = self.counter.result()
        if rows is not None:
            out["rows"] = rows
        content = self.digest.result() if self.digest is not None else None
        if content is not None:
            out["content_sha256"] = content
        return out


SCANS: Dict[str, Callable[[], Scan]] = {
    "postgresql": lambda: Scan(rowcount.PostgreSQLRows(), RestrictKeyDigest()),
    "mariadb": lambda: Scan(rowcount.MariaDBRows()),
}


def for_engine(name: str) -> Optional[Scan]:
    """A fresh scan for one dump of the engine `name` (mariadb, postgresql), None if none."""
    make = SCANS.get(name)
    return make() if make else None


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 5 or args[0] not in SCANS or args[1] != "--out" or args[3] != "--":
        print(
            "usage: python -m shipper.databases.dumpscan ENGINE --out RESULTFILE -- CMD ARGS...",
            file=sys.stderr,
        )
        return 2
    return streamhash.run(args[4:], args[2], for_engine(args[0]))


if __name__ == "__main__":
    sys.exit(main())
