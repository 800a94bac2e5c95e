"""A standby apply's checks of what it put in place (slave/standby.py runs them).

- rows: after each database load, its tables' rows counted in the loaded
  database and compared with the counts the master took in the dump's
  stream (the manifest's `rows`): a load that lost rows without an error fails.
- content: a few of the sampled files, small ones, read back byte for byte
  against the repository's copy (one `restic restore` of just those files
  into a scratch folder: restic checks each blob's hash as it reads it).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from shipper.core.errors import Refused
from shipper.core.manifest import Dump
from shipper.core.restic import Restic
from shipper.slave.promote.scope import under_root

READ_FILES = 5  # files of the sample compared by content
READ_BYTES = 4 << 20  # and at most this many bytes of them
LISTED = 5  # mismatches named in the message
_GLOB = set("*?[\\")  # restic's --include takes patterns: such paths are not picked


def check_rows(engine: Any, load: Dump) -> Tuple[int, str]:
    """(tables counted, "" or one line naming the tables whose rows differ)."""
    if load.is_globals or load.rows is None or not load.database:
        return 0, ""
    try:
        found = engine.count_rows(load.database, sorted(load.rows))
    except Exception as exc:  # noqa: BLE001 - runs in a load's thread: any fault is the apply's line
        return 0, f"{load.part}: its rows could not be counted: {exc}"
    wrong = [
        f"{table} has {found.get(table, 'no')} rows, the dump {expected}"
        for table, expected in sorted(load.rows.items())
        if found.get(table) != expected
    ]
    if not wrong:
        return len(load.rows), ""
    more = f" and {len(wrong) - LISTED} more tables" if len(wrong) > LISTED else ""
    return len(load.rows), f"{load.part}: {', '.join(wrong[:LISTED])}{more}"


def read_back(
    restic: Restic, snapshot: str, root: str, sample: Sequence[Dict[str, Any]], scratch: Path
) -> Tuple[int, int]:
    """Some sampled files compared with the repository's bytes: (files, bytes) compared."""
    chosen = pick(sample)
    if not chosen:
        return 0, 0
    scratch.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="read-back-", dir=scratch))
    try:
        restic.restore(snapshot, str(folder), includes=[str(n["path"]) for n in chosen])
        wrong = [
            where
            for where, theirs in (
                (under_root(root, str(n["path"])), folder / str(n["path"]).lstrip("/"))
                for n in chosen
            )
            if _sha256(Path(where)) != _sha256(theirs)
        ]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if wrong:
        raise Refused(
            f"{len(wrong)} of {len(chosen)} files read back hold other bytes than the set's: "
            f"{', '.join(wrong[:3])}"
        )
    return len(chosen), sum(int(n.get("size") or 0) for n in chosen)


def pick(sample: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The smallest non-empty files of the sample, within READ_FILES and READ_BYTES."""
    chosen: List[Dict[str, Any]] = []
    total = 0
    candidates = [n for n in sample if int(n.get("size") or 0) > 0]
    for node in sorted(candidates, key=lambda n: int(n.get("size") or 0)):
        size = int(node.get("size") or 0)
        if len(chosen) == READ_FILES or total + size > READ_BYTES:
            break
        if not _GLOB & set(str(node["path"])):
            chosen.append(node)
            total += size
    return chosen


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        return f"{path} unreadable: {exc.strerror}"  # never equal to another path's
    return digest.hexdigest()
