"""Manual restores of a set's files (the newest, or an older one)."""

from __future__ import annotations

import fnmatch
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from shipper import databases
from shipper.core import manifest as manifests
from shipper.core import sets
from shipper.core.errors import NotFound, Refused
from shipper.core.files import not_a_folder
from shipper.core.manifest import Dump
from shipper.core.restic import Restic


def files_part(chosen: sets.SnapshotSet) -> sets.Part:
    part = chosen.parts.get(sets.FILES_PART)
    if part is None:
        raise NotFound(f"set {chosen.id} has no files part (status {chosen.status})")
    return part


@dataclass(frozen=True)
class FilesSource:
    """Where a set's files part is: a snapshot id, or `latest` among snapshots with `tags`."""

    set_id: str
    snapshot: str
    tags: Tuple[str, ...] = ()


def files_source(chosen: sets.SnapshotSet) -> FilesSource:
    """The files part of a set found in the repository listing."""
    if chosen.status == sets.INCOMPLETE:
        raise Refused(f"set {chosen.id} is incomplete (it has no manifest): it never finished")
    return FilesSource(chosen.id, files_part(chosen).snapshot)


def files_source_by_id(set_id: str) -> FilesSource:
    """The files part of set `set_id` without listing the repository: restic picks it by
    its tags, saving a restic process (a key derivation). Only the part that carries the
    manifest matches, so a set that never finished does not; restic then finds none
    (NoSnapshotFound), and the caller lists the sets to say why."""
    tags = (f"{sets.SET_TAG}:{set_id}", f"{sets.PART_TAG}:{sets.FILES_PART}")
    return FilesSource(set_id, "latest", (*tags, f"{sets.PART_TAG}:{sets.MANIFEST_PART}"))


def restore_files(
    restic: Restic,
    source: FilesSource,
    target: str,
    paths: Sequence[str] = (),
    excludes: Sequence[str] = (),
    delete: bool = False,
) -> Dict[str, Any]:
    """Restore the files part under target, keeping full original paths.

    `paths` are restic include patterns: a path, or a glob (`/etc/*.conf`,
    `**/*.pem`); patterns that match nothing fail the restore.
    """
    check_files_request(target, paths)
    Path(target).mkdir(parents=True, exist_ok=True)
    summary = restic.restore(
        source.snapshot,
        target,
        includes=list(paths),
        excludes=list(excludes),
        delete=delete,
        tags=source.tags,
    )
    # restic leaves zero counts out of its summary: no count at all is nothing restored.
    if paths and summary and not (summary.get("total_files") or summary.get("files_restored")):
        raise NotFound(_nothing_matched(source.set_id, paths))
    return summary


def preview_files(
    restic: Restic, source: FilesSource, target: str, paths: Sequence[str] = ()
) -> List[Tuple[str, str]]:
    """What restore_files would write: (restic's action, the path under target); nothing changes."""
    check_files_request(target, paths)
    _, items, _ = restic.restore_preview(
        source.snapshot, target, includes=list(paths), tags=source.tags
    )
    root = target.rstrip("/")
    out = [(str(i.get("action", "?")), root + str(i.get("item", ""))) for i in items]
    if paths and not out:
        raise NotFound(_nothing_matched(source.set_id, paths))
    return out


def check_files_request(target: str, paths: Sequence[str]) -> None:
    for path in paths:
        if not path.startswith("/") and not GLOB.search(path):
            raise Refused(
                f"--path {path}: give an absolute path as it was on the master, "
                "or a pattern such as '/etc/*.conf' or '**/*.pem'"
            )
    problem = not_a_folder(target)
    if problem:
        raise Refused(f"--target {problem}: give a folder (it is made when missing)")


GLOB = re.compile(r"[*?\[]")


def _nothing_matched(set_id: str, paths: Sequence[str]) -> str:
    return (
        f"nothing in set {set_id} matches --path {' --path '.join(paths)}; "
        "paths are absolute as on the master (`restic ls` on the files part lists them)"
    )


def set_dumps(restic: Restic, chosen: sets.SnapshotSet) -> Tuple[manifests.Manifest, List[Dump]]:
    """The set's manifest (read once per command) and its dumps that succeeded."""
    manifest = manifests.read(restic, chosen)
    if manifest is None:
        raise Refused(
            f"set {chosen.id} has no manifest (it never finished): its dumps cannot be told apart"
        )
    return manifest, manifest.dumps(chosen)


def listed_dumps(chosen: sets.SnapshotSet) -> List[Dump]:
    """The set's dumps as the repository listing shows them (part tags, stream paths).

    Their digests come from the manifest, which restore-db reads while the first
    loads run: each load checks its digest when its stream ends, before the swap.
    """
    if chosen.status == sets.INCOMPLETE:
        raise Refused(
            f"set {chosen.id} has no manifest (it never finished): its dumps cannot be told apart"
        )
    out = []
    for part in chosen.parts.values():
        engine, _, database = part.name.partition(":")
        if part.name == sets.FILES_PART or not database or len(part.paths) != 1:
            continue
        name = None if database == "globals" else database
        filename = str(part.paths[0]).lstrip("/")
        out.append(Dump(part.name, engine, name, part.snapshot, filename, 0, None, ""))
    return sorted(out, key=lambda d: (not d.is_globals, d.engine, d.part))


def select_dumps(
    chosen: sets.SnapshotSet,
    manifest: Callable[[], manifests.Manifest],
    dumps: List[Dump],
    only: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> List[Dump]:
    """The databases to load: all, or those --only names (globs on ENGINE:DB or DB), minus --exclude."""
    databases = [d for d in dumps if not d.is_globals]
    chosen_ones = [d for d in databases if not only or _matches(d, only)]
    chosen_ones = [d for d in chosen_ones if not _matches(d, exclude)]
    if chosen_ones:
        return chosen_ones
    known = ", ".join(d.part for d in databases) or "none"
    failed = manifest().failed_parts()
    why = "".join(f" (it failed in that set: {failed[name]})" for name in only if name in failed)
    asked = f"database {only[0]}" if len(only) == 1 and not exclude else "database matching that"
    raise NotFound(f"set {chosen.id} has no {asked}{why}; its databases: {known}")


def _matches(dump: Dump, patterns: Sequence[str]) -> bool:
    return any(
        fnmatch.fnmatchcase(dump.part, p) or fnmatch.fnmatchcase(dump.database or "", p)
        for p in patterns
    )


def with_globals(chosen: sets.SnapshotSet, dumps: List[Dump], selected: List[Dump]) -> List[Dump]:
    """The engines' globals of the selected databases (loaded before them, and again after)."""
    engines = {d.engine for d in selected}
    found = [d for d in dumps if d.is_globals and d.engine in engines]
    missing = sorted(engines - {d.engine for d in found})
    if missing:
        raise NotFound(f"set {chosen.id} has no {missing[0]} globals part")
    return found


def target_name(dump: Dump, as_name: Optional[str] = None, suffix: str = "") -> str:
    """The name a database loads as: --as (a name, or a pattern with {db}), plus --suffix."""
    name = as_name.replace("{db}", dump.database or "") if as_name else dump.database or ""
    return name + suffix


def configured_engine(cfg: Any, label: str) -> Any:
    """The engine the config names by `label` (mariadb, mariadb2, postgresql...)."""
    engines = databases.engines_from_config(cfg.databases)
    engine = next((e for e in engines if e.label == label), None)
    if engine is None:
        raise NotFound(
            f"no {label} server is configured here (databases.{label} in the config); "
            "configure it, or name another server with --to-host/--to-socket"
        )
    return engine


def load_part(
    restic: Restic,
    engine: Any,
    load: Dump,
    as_name: Optional[str] = None,
    expected: Optional[Callable[[], Optional[str]]] = None,
) -> Dict[str, Any]:
    """Stream one dump from the repository into the engine's loader, checking its digest.

    `expected` gives the digest when the stream ends (the manifest may still be
    on its way); without it the dump's own sha256 is the one checked.
    """
    with restic.dump(load.snapshot, "/" + load.filename) as stream:
        checked = DigestCheckingReader(stream, expected or (lambda: load.sha256), load.part)
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

    def __init__(
        self,
        stream: IO[bytes],
        sha256: Union[None, str, Callable[[], Optional[str]]],
        label: str,
    ):
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
        expected = self.expected() if callable(self.expected) else self.expected
        if expected and self.digest.hexdigest() != expected:
            raise databases.DatabaseError(
                f"the dump of {self.label} read from the repository does not match its manifest "
                f"(sha256 {self.digest.hexdigest()[:12]}..., expected {expected[:12]}...): "
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
