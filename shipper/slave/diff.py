"""`shipper diff SET1 SET2`: what changed between two sets.

Files come from `restic diff --metadata` of the two files parts (added,
removed, changed, metadata-only changes); databases from the manifests: a
dump whose content differs (sha256, or the digest without pg_dump's
\\restrict key) changed, one in only one set was added or removed.
shipper's own manifest, which differs in every set, is left out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

from shipper.core import manifest as manifests
from shipper.core import sets
from shipper.core.errors import NotFound
from shipper.core.manifest import Manifest, Part
from shipper.core.restic import Restic
from shipper.slave.restore import files_part

ADDED = "+"
REMOVED = "-"
MODIFIED = "M"
TYPE_CHANGED = "T"
METADATA = "U"


@dataclass
class Difference:
    first: str
    second: str
    added: List[str] = field(default_factory=list)
    removed: List[str] = field(default_factory=list)
    changed: List[str] = field(default_factory=list)
    metadata: List[str] = field(default_factory=list)
    databases: Dict[str, str] = field(default_factory=dict)  # part -> added/removed/changed/same
    statistics: Dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> Dict[str, Any]:
        return asdict(self)


def compare(restic: Restic, first: sets.SnapshotSet, second: sets.SnapshotSet) -> Difference:
    result = Difference(first.id, second.id)
    one, two = _files_snapshot(first), _files_snapshot(second)
    read = [manifests.read(restic, item) for item in (first, second)]
    skip = {m.own_file() for m in read if m and m.own_file()}
    if one and two:
        for message in restic.diff(one, two, metadata=True):
            _file_change(result, message, skip)
    result.databases = _databases(*read)
    return result


def _files_snapshot(chosen: sets.SnapshotSet) -> Optional[str]:
    try:
        return files_part(chosen).snapshot
    except NotFound:
        return None


def _file_change(result: Difference, message: Dict[str, Any], skip: set) -> None:
    kind = message.get("message_type")
    if kind == "statistics":
        result.statistics = {k: v for k, v in message.items() if k != "message_type"}
        return
    if kind != "change" or message.get("path") in skip:
        return
    path, modifier = str(message["path"]), str(message.get("modifier", ""))
    if ADDED in modifier:
        result.added.append(path)
    elif REMOVED in modifier:
        result.removed.append(path)
    elif MODIFIED in modifier or TYPE_CHANGED in modifier:
        result.changed.append(path)
    elif METADATA in modifier and not path.endswith("/"):
        # A folder's metadata changes whenever an entry comes or goes: noise.
        result.metadata.append(path)


def _databases(first: Optional[Manifest], second: Optional[Manifest]) -> Dict[str, str]:
    one = first.dump_parts() if first else {}
    two = second.dump_parts() if second else {}
    out = {}
    for name in sorted(set(one) | set(two)):
        if name not in one:
            out[name] = "added"
        elif name not in two:
            out[name] = "removed"
        else:
            out[name] = _dump_change(one[name], two[name])
    return out


def _dump_change(one: Part, two: Part) -> str:
    # Content digests leave out pg_dump's random \restrict key; sets taken before
    # shipper recorded them compare by the whole stream's sha256.
    if one.content_sha256 and two.content_sha256:
        return "same" if one.content_sha256 == two.content_sha256 else "changed"
    if not (one.sha256 and two.sha256):
        return "unknown (no digest)"
    return "same" if one.sha256 == two.sha256 else "changed"


def lines(result: Difference, limit: int = 50) -> List[str]:
    out = [f"from set {result.first} to set {result.second}:"]
    for label, items in (
        ("added", result.added),
        ("removed", result.removed),
        ("changed", result.changed),
        ("metadata only", result.metadata),
    ):
        out.append(f"  files {label}: {len(items)}")
        out += [f"    {item}" for item in items[:limit]]
        if len(items) > limit:
            out.append(f"    ... and {len(items) - limit} more (--json lists all)")
    if result.databases:
        out.append("  databases:")
        out += [f"    {name}: {state}" for name, state in result.databases.items()]
    else:
        out.append("  databases: none in either set")
    return out
