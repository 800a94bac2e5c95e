"""Manual restores of a set's files (the newest, or an older one)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from shipper import sets
from shipper.errors import NotFound, Refused
from shipper.restic import Restic


def files_part(chosen: sets.SnapshotSet) -> sets.Part:
    part = chosen.parts.get(sets.FILES_PART)
    if part is None:
        raise NotFound(f"set {chosen.id} has no files part (status {chosen.status})")
    return part


def read_manifest(restic: Restic, chosen: sets.SnapshotSet) -> Optional[Dict[str, Any]]:
    """The set's manifest document, or None for an incomplete set."""
    carrier = chosen.manifest_snapshot
    if carrier is None:
        return None
    nodes = restic.ls(carrier.id)
    path = next((n["path"] for n in nodes if n.get("name") == sets.MANIFEST_FILENAME), None)
    if path is None:
        return None
    return json.loads(restic.read_file(carrier.id, path))


def restore_files(
    restic: Restic,
    chosen: sets.SnapshotSet,
    target: str,
    paths: Sequence[str] = (),
    excludes: Sequence[str] = (),
    delete: bool = False,
) -> Dict[str, Any]:
    """Restore the files part under target, keeping full original paths."""
    if chosen.status == sets.INCOMPLETE:
        raise Refused(f"set {chosen.id} is incomplete (it has no manifest): it never finished")
    part = files_part(chosen)
    for path in paths:
        if not path.startswith("/"):
            raise Refused(f"--path {path}: give an absolute path as it was on the master")
    Path(target).mkdir(parents=True, exist_ok=True)
    return restic.restore(
        part.snapshot,
        target,
        includes=list(paths),
        excludes=list(excludes),
        delete=delete,
    )


def listing(sets_found: List[sets.SnapshotSet]) -> List[Dict[str, Any]]:
    return [s.to_json() for s in sets_found]
