"""Manual restores of a set's files (the newest, or an older one)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import IO, Any, Dict, Iterator, List, Optional, Sequence

from shipper import databases
from shipper.core import manifest as manifests
from shipper.core import sets
from shipper.core.errors import NotFound, Refused, ShipperError
from shipper.core.files import not_a_folder
from shipper.core.manifest import Dump
from shipper.core.restic import Restic


def files_part(chosen: sets.SnapshotSet) -> sets.Part:
    part = chosen.parts.get(sets.FILES_PART)
    if part is None:
        raise NotFound(f"set {chosen.id} has no files part (status {chosen.status})")
    return part


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


def database_plan(
    restic: Restic, chosen: sets.SnapshotSet, part: str, with_globals: bool = False
) -> List[Dump]:
    """The loads for `shipper restore-db`: the engine's globals first when asked, then the database."""
    manifest = manifests.read(restic, chosen)
    if manifest is None:
        raise Refused(
            f"set {chosen.id} has no manifest (it never finished): its dumps cannot be told apart"
        )
    loads = manifest.dumps(chosen)
    wanted = next((load for load in loads if load.part == part and not load.is_globals), None)
    if wanted is None:
        known = ", ".join(load.part for load in loads if not load.is_globals) or "none"
        failed = manifest.failed_parts()
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


def restore_database(cfg: Any, restic: Restic, load: Dump, as_name: Optional[str] = None) -> None:
    """Load one dump into this server's engine with the loader promote uses."""
    engines = databases.engines_from_config(cfg.databases)
    engine = next((e for e in engines if e.label == load.engine), None)
    if engine is None:
        raise NotFound(
            f"no {load.engine} server is configured here (databases.{load.engine} in the config)"
        )
    try:
        with engine.credentials():
            load_part(restic, engine, load, as_name=None if load.is_globals else as_name)
    except databases.DatabaseError as exc:
        raise ShipperError(str(exc)) from None


def load_part(
    restic: Restic, engine: Any, load: Dump, as_name: Optional[str] = None
) -> Dict[str, Any]:
    """Stream one dump from the repository into the engine's loader, checking its digest."""
    with restic.dump(load.snapshot, "/" + load.filename) as stream:
        checked = DigestCheckingReader(stream, load.sha256, load.part)
        if load.is_globals:
            engine.load_globals(checked)
        else:
            engine.load(checked, load.database, as_name=as_name)
        checked.drain()
    return {"database": as_name or load.database or "globals", "bytes": checked.size}


class DigestCheckingReader:
    """A stream that fails at its end when the bytes differ from the manifest's sha256.

    The loader reads to the end before it swaps the new database in, so a
    corrupted dump fails the load and leaves the old database in place.
    """

    def __init__(self, stream: IO[bytes], sha256: Optional[str], label: str):
        self.stream = stream
        self.expected = sha256
        self.label = label
        self.digest = hashlib.sha256()
        self.size = 0
        self.ended = False

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self._account(data, size)
        if size is None or size < 0:
            self._account(b"", -1)  # all of it was read: judge it now
        return data

    def read1(self, size: int = -1) -> bytes:
        reader = getattr(self.stream, "read1", self.stream.read)
        data = reader(size)
        self._account(data, size)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        raise OSError(
            "the dump stream is checked on the way; it has no file descriptor to hand out"
        )

    def _account(self, data: bytes, size: int) -> None:
        if data:
            self.digest.update(data)
            self.size += len(data)
        elif size != 0 and not self.ended:
            self.ended = True
            self._verify()

    def _verify(self) -> None:
        if self.expected and self.digest.hexdigest() != self.expected:
            raise databases.DatabaseError(
                f"the dump of {self.label} read from the repository does not match its manifest "
                f"(sha256 {self.digest.hexdigest()[:12]}..., expected {self.expected[:12]}...): "
                "the repository may be damaged; run `shipper check`, or promote another set with --set"
            )

    def drain(self) -> None:
        while self.read(1 << 20):
            pass

    def __iter__(self) -> Iterator[bytes]:
        while True:
            line = self.stream.readline()
            if not line:
                self._account(b"", -1)
                return
            self._account(line, -1)
            yield line

    def readline(self, size: int = -1) -> bytes:
        data = self.stream.readline(size)
        self._account(data, size)
        return data
