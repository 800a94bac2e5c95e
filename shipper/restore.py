"""Manual restores of a set's files (the newest, or an older one)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from shipper import sets
from shipper.errors import NotFound, Refused, ShipperError
from shipper.files import not_a_folder
from shipper.restic import Restic, ResticError


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
    # Only where a manifest can be (the set folder is the files part's last
    # path; an amended manifest sits at the root): listing a large files part
    # whole would cost seconds. The likely place first: one restic process.
    candidates = [f"{p.rstrip('/')}/{sets.MANIFEST_FILENAME}" for p in reversed(carrier.paths)]
    candidates = [p for p in carrier.paths if p.endswith("/" + sets.MANIFEST_FILENAME)] + candidates
    candidates.append("/" + sets.MANIFEST_FILENAME)
    with contextlib.suppress(ResticError):
        return json.loads(restic.read_file(carrier.id, candidates[0]))
    nodes = restic.ls(carrier.id, candidates)
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
    problem = not_a_folder(target)
    if problem:
        raise Refused(f"--target {problem}: give a folder (it is made when missing)")
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


def database_plan(
    restic: Restic, chosen: sets.SnapshotSet, part: str, with_globals: bool = False
) -> List[Any]:
    """The loads for `shipper restore-db`: the engine's globals first when asked, then the database."""
    from shipper import promote

    manifest = read_manifest(restic, chosen)
    if manifest is None:
        raise Refused(
            f"set {chosen.id} has no manifest (it never finished): its dumps cannot be told apart"
        )
    loads = promote.database_loads(chosen, manifest)
    wanted = next((load for load in loads if load.part == part and not load.is_globals), None)
    if wanted is None:
        known = ", ".join(load.part for load in loads if not load.is_globals) or "none"
        failed = promote.failed_parts(manifest)
        why = f" (it failed in that set: {failed[part]})" if part in failed else ""
        raise NotFound(f"set {chosen.id} has no database {part}{why}; its databases: {known}")
    if not with_globals:
        return [wanted]
    engine_globals = [load for load in loads if load.is_globals and load.engine == wanted.engine]
    if not engine_globals:
        raise NotFound(f"set {chosen.id} has no {wanted.engine} globals part")
    # Again after the database: grants on its tables and routines are skipped
    # while those do not exist yet (the globals load is idempotent).
    return [*engine_globals, wanted, *engine_globals]


def restore_database(cfg: Any, restic: Restic, load: Any, as_name: Optional[str] = None) -> None:
    """Load one dump into this server's engine with the loader promote uses."""
    from shipper import databases, promote

    engines = databases.engines_from_config(cfg.databases)
    engine = next((e for e in engines if e.label == load.engine), None)
    if engine is None:
        raise NotFound(
            f"no {load.engine} server is configured here (databases.{load.engine} in the config)"
        )
    try:
        with engine.credentials():
            promote.load_part(restic, engine, load, as_name=None if load.is_globals else as_name)
    except databases.DatabaseError as exc:
        raise ShipperError(str(exc)) from None
