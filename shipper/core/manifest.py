"""The manifest: a set's commit record, the contract between master and slave.

The snapshot writes it last (no manifest, no set); restore, promote, check,
damage and diff read it. This module is the only one that knows its JSON keys:
everything else works with the typed records below. The on-disk format is
`format: 1`; unknown keys are ignored when reading, so older shippers' sets
still read.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

from shipper.core import sets
from shipper.core.restic import Restic, ResticError

FORMAT = 1

OK = "ok"
FAILED = "failed"
UNREADABLE = "unreadable"


@dataclass
class Dump:
    """One database dump of a set, as restore and promote load it."""

    part: str
    engine: str  # the server's label: mariadb, mariadb2, postgresql, ...
    database: Optional[str]  # None for the engine's globals
    snapshot: str
    filename: str
    bytes: int
    sha256: Optional[str]
    server_version: str
    # Both counted by the master in the dump's stream; None in a manifest that predates them.
    content_sha256: Optional[str] = None  # PostgreSQL: sha256 without pg_dump's \restrict key
    rows: Optional[Dict[str, int]] = None  # table (as the dump names it) -> rows in the dump

    @property
    def content_key(self) -> Optional[str]:
        """What says two dumps load the same data: the content digest where there is one."""
        return self.content_sha256 or self.sha256

    @property
    def is_globals(self) -> bool:
        return not self.database

    @property
    def step(self) -> str:
        return f"globals:{self.engine}" if self.is_globals else f"database:{self.part}"


@dataclass
class Part:
    """One part of a set and its outcome (the snapshot's record of it)."""

    name: str
    outcome: str
    snapshot: Optional[str] = None
    error: str = ""
    bytes_added: int = 0
    details: Dict[str, Any] = field(default_factory=dict)

    @property
    def is_dump(self) -> bool:
        return "engine" in self.details and "filename" in self.details

    @property
    def sha256(self) -> Optional[str]:
        return self.details.get("sha256")

    @property
    def content_sha256(self) -> Optional[str]:
        return self.details.get("content_sha256") or None

    def dump(self, fallback_snapshot: str = "") -> Dump:
        details = self.details
        return Dump(
            part=self.name,
            engine=self.name.split(":", 1)[0],
            database=details.get("database") or None,
            snapshot=self.snapshot or fallback_snapshot,
            filename=details["filename"],
            bytes=int(details.get("bytes") or 0),
            sha256=details.get("sha256"),
            server_version=str(details.get("server_version") or ""),
            content_sha256=details.get("content_sha256") or None,
            rows=_rows(details.get("rows")),
        )

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> Part:
        return cls(
            name=str(data.get("name", "")),
            outcome=str(data.get("outcome", "?")),
            snapshot=data.get("snapshot"),
            error=str(data.get("error") or ""),
            bytes_added=int(data.get("bytes_added") or 0),
            details=dict(data.get("details") or {}),
        )


@dataclass
class Manifest:
    set: str
    status: str
    host: str = ""
    machine: str = ""
    started: str = ""
    written: str = ""
    versions: Dict[str, Any] = field(default_factory=dict)
    paths: Optional[List[str]] = None  # None in a manifest that predates the key
    exclude: List[str] = field(default_factory=list)
    volatile: List[str] = field(default_factory=list)
    machine_specific: List[str] = field(default_factory=list)
    set_dir: str = ""
    parts: List[Part] = field(default_factory=list)
    format: int = FORMAT

    def to_json(self) -> Dict[str, Any]:
        data = asdict(self)
        data.pop("format")
        return {"format": self.format, **data}

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> Manifest:
        return cls(
            set=str(data.get("set", "")),
            status=str(data.get("status", "")),
            host=str(data.get("host") or ""),
            machine=str(data.get("machine") or ""),
            started=str(data.get("started") or ""),
            written=str(data.get("written") or ""),
            versions=dict(data.get("versions") or {}),
            paths=list(data["paths"] or []) if "paths" in data else None,
            exclude=list(data.get("exclude") or []),
            volatile=list(data.get("volatile") or []),
            machine_specific=list(data.get("machine_specific") or []),
            set_dir=str(data.get("set_dir") or ""),
            parts=[Part.from_json(p) for p in data.get("parts", [])],
            format=int(data.get("format") or FORMAT),
        )

    def part(self, name: str) -> Optional[Part]:
        return next((p for p in self.parts if p.name == name), None)

    def failed_parts(self) -> Dict[str, str]:
        """Part name -> why it failed, for every part that is not ok."""
        return {p.name: p.error or p.outcome for p in self.by_name().values() if p.outcome != OK}

    def by_name(self) -> Dict[str, Part]:
        return {p.name: p for p in self.parts}

    def dumps(self, chosen: sets.SnapshotSet) -> List[Dump]:
        """The set's database dumps that succeeded, globals of each engine first."""
        present = chosen.parts
        out = [
            part.dump(present[part.name].snapshot if part.name in present else "")
            for part in self.by_name().values()
            if part.outcome == OK and part.is_dump
        ]
        return sorted(out, key=lambda d: (not d.is_globals, d.engine, d.part))

    def dump_parts(self) -> Dict[str, Part]:
        """Database part name -> the part, for the dumps that succeeded."""
        return {p.name: p for p in self.parts if p.outcome == OK and "engine" in p.details}

    def files_stored(self) -> bool:
        """Whether the files part was stored (whole, or with some files unreadable)."""
        files = self.by_name().get(sets.FILES_PART)
        return files is not None and files.outcome in (OK, UNREADABLE)

    def missing_parts(self, chosen: sets.SnapshotSet) -> List[str]:
        """Parts the manifest says were stored whose snapshot is not in the repository."""
        ids = {snap.id for snap in chosen.snapshots}
        present = chosen.parts
        out = []
        for part in self.parts:
            stored_gone = part.outcome == OK and part.snapshot and part.snapshot not in ids
            files_gone = part.name == sets.FILES_PART and part.outcome in (OK, UNREADABLE)
            if stored_gone or (files_gone and sets.FILES_PART not in present):
                out.append(part.name)
        return out

    def own_file(self) -> Optional[str]:
        """Where the manifest itself sits in the files part (it differs in every set)."""
        if not self.set_dir:
            return None
        return f"{self.set_dir.rstrip('/')}/{sets.MANIFEST_FILENAME}"


def _rows(value: Any) -> Optional[Dict[str, int]]:
    if not isinstance(value, dict):
        return None
    return {str(table): int(count) for table, count in value.items()}


def read_json(restic: Restic, chosen: sets.SnapshotSet) -> Optional[Dict[str, Any]]:
    """The set's manifest document as stored, or None for an incomplete set."""
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


def read(restic: Restic, chosen: sets.SnapshotSet) -> Optional[Manifest]:
    """The set's manifest, or None for an incomplete set."""
    document = read_json(restic, chosen)
    return None if document is None else Manifest.from_json(document)


def encode(manifest: Manifest) -> str:
    return json.dumps(manifest.to_json(), indent=1)
