"""One run of `shipper snapshot`: lock, hooks, parts, manifest.

The order is fixed by the commit rule (no manifest, no set): database parts
first (each its own `restic backup --stdin-from-command`), then one
`restic backup` of the file paths that also carries the settings export and
the manifest. That last snapshot is the set's commit record, so an unchanged
files-only set costs exactly one restic process, like plain restic.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import socket
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

from shipper import __version__
from shipper.core import hooks, sets, state
from shipper.core import restic as restic_errors
from shipper.core.config import Config
from shipper.core.lock import host_lock
from shipper.core.manifest import FAILED, OK, UNREADABLE, Manifest, Part, encode
from shipper.core.restic import BackupResult, ItemError, Restic, ResticError

log = logging.getLogger("shipper.snapshot")

# restic errors that are about the repository, not about one part: they end the run.
_REPOSITORY_ERRORS = (
    restic_errors.RepositoryMissing,
    restic_errors.RepositoryLocked,
    restic_errors.WrongPassword,
    restic_errors.Unreachable,
    restic_errors.CertificateRejected,
    restic_errors.RepositoryFull,
    restic_errors.Interrupted,
    restic_errors.ResticNotFound,
    restic_errors.ResticTooOld,
)

# How many vanished or noted paths a manifest and a run record name; the counts are whole.
LISTED = 20


@dataclass
class SetResult:
    set_id: str
    status: str
    started: str
    duration: float = 0.0
    parts: List[Part] = field(default_factory=list)
    files_new: int = 0
    files_changed: int = 0
    unreadable: List[str] = field(default_factory=list)
    vanished: int = 0
    vanished_paths: List[str] = field(default_factory=list)
    noted: int = 0
    noted_paths: List[str] = field(default_factory=list)
    restic_processes: int = 0
    error: str = ""
    # For the copies: the set taken before this one, and this set's snapshot ids in the
    # order they were written (data parts, then the manifest carriers).
    previous_set: Optional[str] = None
    snapshots: List[str] = field(default_factory=list)

    @property
    def bytes_added(self) -> int:
        return sum(p.bytes_added for p in self.parts)

    @property
    def failures(self) -> List[Part]:
        return [p for p in self.parts if p.outcome != OK]

    def to_json(self) -> Dict[str, Any]:
        data = asdict(self)
        data["bytes_added"] = self.bytes_added
        return data


def is_repository_error(error: Exception) -> bool:
    return isinstance(error, _REPOSITORY_ERRORS)


# ---------------------------------------------------------------- layout on the master


def set_dir(cfg: Config) -> Path:
    """The folder that rides in every files part: the manifest and the settings export."""
    return cfg.state / sets.SET_FOLDER


def manifest_path(cfg: Config) -> Path:
    return set_dir(cfg) / sets.MANIFEST_FILENAME


def export_dir(cfg: Config) -> Path:
    return set_dir(cfg) / "export"


def backup_paths(cfg: Config) -> List[str]:
    return [*cfg.paths, str(set_dir(cfg))]


def backup_excludes(cfg: Config) -> List[str]:
    """The configured excludes, plus shipper's own state other than the set folder."""
    own = []
    if cfg.state.is_dir():
        own = [str(child) for child in cfg.state.iterdir() if child.name != "set"]
    return [*cfg.exclude, *own]


# ---------------------------------------------------------------- the run


class SetRun:
    def __init__(self, cfg: Config, restic: Restic, announce=None):
        self.cfg = cfg
        self.restic = restic
        self.announce = announce or (lambda label: None)
        self.started = dt.datetime.now(dt.timezone.utc)
        previous = state.last_set_id(cfg.state)
        self.set_id = sets.new_set_id(self.started, previous)
        self.time = sets.id_time(self.set_id)
        self.result = SetResult(self.set_id, sets.INCOMPLETE, self.started.isoformat())
        self.result.previous_set = previous
        self.versions: Dict[str, str] = {"shipper": __version__}
        self.db_details: List[Dict[str, Any]] = []

    def tags(self, part: str) -> List[str]:
        return [f"{sets.SET_TAG}:{self.set_id}", f"{sets.PART_TAG}:{part}"]

    def run(self) -> SetResult:
        clock = time.monotonic()
        state.write_last_set_id(self.cfg.state, self.set_id)
        self.versions["restic"] = ".".join(map(str, self.restic.version()))
        try:
            self._settings_export()
            self._database_parts()
            self._files_and_manifest()
        finally:
            self.result.duration = round(time.monotonic() - clock, 3)
            self.result.restic_processes = self.restic.processes_started
        return self.result

    # ------------------------------------------------------------ settings

    def _settings_export(self) -> None:
        found = hooks.find(self.cfg.hooks.dirs, hooks.PRE_SNAPSHOT)
        target = export_dir(self.cfg)
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True, mode=0o700)
        if not found:
            return
        self.announce("settings export")
        env = {
            "SHIPPER_SET_ID": self.set_id,
            "SHIPPER_ROLE": self.cfg.role,
            "SHIPPER_EXPORT_DIR": str(target),
        }
        try:
            ran = hooks.run_phase(
                hooks.PRE_SNAPSHOT, self.cfg.hooks.dirs, env, self.cfg.hooks.timeout
            )
        except hooks.HookFailed as exc:
            self.result.parts.append(Part("settings", FAILED, error=str(exc)))
            return
        # The export rides in the files part; its snapshot id is filled in there.
        self.result.parts.append(Part("settings", OK, details={"hooks": ran, "path": str(target)}))

    # ------------------------------------------------------------ databases

    def _database_parts(self) -> None:
        if not self.cfg.databases.enabled:
            return
        from shipper import databases  # on use: a run without databases skips its imports

        engines = databases.engines_from_config(self.cfg.databases)
        if not engines:
            return
        with contextlib.ExitStack() as stack:
            jobs = []
            for engine in engines:
                try:
                    stack.enter_context(engine.credentials())
                    self.versions[engine.name] = engine.version()
                    jobs.extend(engine.dump_jobs())
                except databases.DatabaseError as exc:
                    self.result.parts.extend(unreached_parts(engine, exc))
            if not jobs:
                return
            self.announce(f"{len(jobs)} database dumps")
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="shipper-")))
            with concurrent.futures.ThreadPoolExecutor(self.cfg.databases.parallel) as pool:
                outcomes = list(pool.map(lambda job: self._dump(job, workdir), jobs))
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                raise outcome
            self.result.parts.append(outcome)
            if outcome.snapshot:
                self.result.snapshots.append(outcome.snapshot)

    def _dump(self, job, workdir: Path):
        from shipper.databases.base import dump_failure_cause, wrap_with_hash

        result_file = workdir / f"{job.filename}.hash.json"
        details: Dict[str, Any] = {
            "engine": job.engine,
            "database": job.database,
            "filename": job.filename,
            "server_version": job.server_version,
        }
        try:
            backup = self.restic.backup_command(
                wrap_with_hash(job, str(result_file)),
                job.filename,
                self.tags(job.part),
                self.cfg.hostname,
                time=self.time,
                env=job.env,
            )
        except ResticError as exc:
            if is_repository_error(exc):
                return exc
            # The dump tool's own words (e.g. the server's error), else restic's last line.
            said = dump_failure_cause(exc.detail)
            cause = said or (exc.detail.strip().splitlines() or [str(exc)])[-1]
            return Part(
                job.part, FAILED, error=f"dump of {job.part} failed: {cause}", details=details
            )
        try:
            details.update(json.loads(result_file.read_text()))
        except (OSError, ValueError):
            pass
        return Part(
            job.part,
            OK,
            snapshot=backup.snapshot_id,
            bytes_added=int(backup.summary.get("data_added", 0)),
            details=details,
        )

    # ------------------------------------------------------------ files + manifest

    def _status(self) -> str:
        return sets.COMPLETE if not self.result.failures else sets.PARTIAL

    def manifest(self, status: str, files: Optional[Part] = None) -> Manifest:
        return Manifest(
            set=self.set_id,
            status=status,
            host=self.cfg.hostname,
            machine=socket.gethostname(),
            started=self.started.isoformat(),
            written=dt.datetime.now(dt.timezone.utc).isoformat(),
            versions=self.versions,
            paths=self.cfg.paths,
            exclude=self.cfg.exclude,
            volatile=self.cfg.volatile,
            machine_specific=self.cfg.machine_specific,
            set_dir=str(set_dir(self.cfg)),
            parts=[*self.result.parts, *([files] if files else [])],
        )

    def _files_and_manifest(self) -> None:
        status = self._status()
        files = Part(sets.FILES_PART, OK, details={"paths": self.cfg.paths})
        _write_private(manifest_path(self.cfg), encode(self.manifest(status, files)))
        self.announce("files")
        missing = [path for path in self.cfg.paths if not os.path.lexists(path)]
        tags = [*self.tags(sets.FILES_PART), f"{sets.PART_TAG}:{sets.MANIFEST_PART}"]
        try:
            backup = self.restic.backup(
                backup_paths(self.cfg),
                [*tags, f"{sets.STATUS_TAG}:{status}"],
                self.cfg.hostname,
                excludes=backup_excludes(self.cfg),
                time=self.time,
            )
        except ResticError as exc:
            if is_repository_error(exc) or not self.result.parts:
                raise
            files.outcome, files.error = FAILED, str(exc)
            self.result.parts.append(files)
            self._amend_manifest()
            return
        # restic only warns, in plain text, and exits 0 for a missing path.
        backup.unreadable[:0] = [f"{path}: configured path does not exist" for path in missing]
        self._record_files(files, backup)
        if files.outcome != OK:
            self._amend_manifest()
        elif self.result.vanished or self.result.noted:
            self._note_vanished(status)
        else:
            self.result.status = status

    def _record_files(self, files: Part, backup: BackupResult) -> None:
        files.snapshot = backup.snapshot_id
        self.result.snapshots.append(backup.snapshot_id)
        files.bytes_added = int(backup.summary.get("data_added", 0))
        files.details["summary"] = backup.summary
        for part in self.result.parts:
            if part.name == "settings" and part.outcome == OK:
                part.snapshot = backup.snapshot_id
        self.result.files_new = int(backup.summary.get("files_new", 0))
        self.result.files_changed = int(backup.summary.get("files_changed", 0))
        self._record_vanished(files, backup)
        if backup.unreadable:
            files.outcome = UNREADABLE
            files.error = f"{len(backup.unreadable)} unreadable: " + "; ".join(
                backup.unreadable[:5]
            )
            self.result.unreadable = backup.unreadable
        self.result.parts.append(files)

    def _record_vanished(self, files: Part, backup: BackupResult) -> None:
        """Vanished files, and unreadable ones inside `volatile` folders: noted, not failures."""
        noted = volatile_errors(backup.errors, self.cfg.volatile)
        skipped = {e.item for e in noted}
        backup.unreadable = [item for item in backup.unreadable if item not in skipped]
        result = self.result
        result.vanished, result.vanished_paths = len(backup.vanished), backup.vanished[:LISTED]
        result.noted, result.noted_paths = len(noted), [e.label for e in noted[:LISTED]]
        if result.vanished or result.noted:
            files.details.update(vanished_details(result))

    def _note_vanished(self, status: str) -> None:
        """The manifest rode in before restic said what vanished: commit one that says it.

        The set is committed already; a failure to add the note does not undo that.
        """
        self.result.status = status
        try:
            self._amend_manifest(status)
        except ResticError as exc:
            log.warning(
                "set %s is %s, but the repository does not hold its vanished count: %s",
                self.set_id,
                status,
                exc,
            )

    def _amend_manifest(self, status: str = sets.PARTIAL) -> None:
        """Commit a corrected manifest on its own: a part failed, or files vanished,
        after the manifest went out."""
        document = encode(self.manifest(status)).encode()
        amended = self.restic.backup_bytes(
            document,
            sets.MANIFEST_FILENAME,
            [
                *self.tags(sets.MANIFEST_PART),
                f"{sets.STATUS_TAG}:{status}",
                *sets.count_tags(self.result.vanished, self.result.noted),
            ],
            self.cfg.hostname,
            time=self.time + dt.timedelta(seconds=1),
        )
        self.result.snapshots.append(amended.snapshot_id)
        self.result.status = status


def volatile_errors(errors: Sequence[ItemError], volatile: Sequence[str]) -> List[ItemError]:
    """The unreadable items inside a `volatile` folder (vanished ones are counted apart)."""
    return [e for e in errors if not e.vanished and is_inside(e.item, volatile)]


def is_inside(path: str, folders: Sequence[str]) -> bool:
    return any(path == f or path.startswith(f.rstrip("/") + "/") for f in folders if f)


def vanished_details(result: SetResult) -> Dict[str, Any]:
    return {
        "vanished": result.vanished,
        "vanished_paths": result.vanished_paths,
        "noted": result.noted,
        "noted_paths": result.noted_paths,
    }


def unreached_parts(engine: Any, error: Exception) -> List[Part]:
    """A server that failed before its dumps: a failed part for each database it was to give."""
    selection = engine.server
    named = [d for d in selection.databases if d != "all" and d not in selection.exclude]
    if not named:
        return [Part(f"{engine.label}:*", FAILED, error=str(error))]
    return [
        Part(f"{engine.label}:{name}", FAILED, error=f"{name} not dumped: {error}")
        for name in named
    ]


def take(cfg: Config, restic: Restic, announce=None) -> SetResult:
    """Take one set under the host lock and record the run's outcome."""
    with host_lock(cfg.state, "snapshot"), _run_marker(cfg, restic):
        run = SetRun(cfg, restic, announce)
        try:
            result = run.run()
        except Exception as exc:
            run.result.error = str(exc)
            record_run(cfg, run.result)
            raise
        if result.failures:
            result.error = "; ".join(p.error for p in result.failures)
        record_run(cfg, result)
        return result


@contextlib.contextmanager
def _run_marker(cfg: Config, restic: Restic) -> Iterator[None]:
    """Mark a run in progress; after a run that died or failed, clear stale restic locks.

    A killed restic leaves its lock behind, which blocks prune and check (not
    other backups). `restic unlock` removes only locks whose process is gone,
    and it costs a restic process, so it runs only after a run that did not
    end cleanly; the marker stays when the run raised.
    """
    marker = cfg.state / "run-in-progress"
    if marker.exists():
        log.warning(
            "the previous run (%s) did not end cleanly; clearing stale restic locks",
            marker.read_text().strip(),
        )
        restic.unlock_stale()
    _write_private(marker, f"pid {os.getpid()}\n")
    yield
    marker.unlink()


def plan(cfg: Config) -> Dict[str, Any]:
    """What a run would do, for --dry-run: nothing is written."""
    out: Dict[str, Any] = {
        "repository": cfg.repository.url,
        "paths": backup_paths(cfg),
        "exclude": backup_excludes(cfg),
        "hooks": [str(h) for h in hooks.find(cfg.hooks.dirs, hooks.PRE_SNAPSHOT)],
        "databases": [],
    }
    if cfg.databases.enabled:
        from shipper import databases

        for engine in databases.engines_from_config(cfg.databases):
            try:
                with engine.credentials():
                    out["databases"] += [job.part for job in engine.dump_jobs()]
            except databases.DatabaseError as exc:
                out["databases"].append(f"{engine.name}: {exc}")
    return out


# ---------------------------------------------------------------- run records


def record_run(cfg: Config, result: SetResult) -> None:
    state.record_run(cfg.state, result.to_json())


def _write_private(path: Path, text: str) -> None:
    state.write_text(path, text)
