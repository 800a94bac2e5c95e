"""`shipper promote`: put a set in place on the slave and make it the master.

The run is preflight (checks, each OK or what to do), plan (what will
change), then these steps, each recorded in <state_dir>/promote/<set>.json
the moment it finishes, so a run that was interrupted (SIGKILL included)
resumes where it stopped:

  receiver          stop the receiver for good: the old master can no longer push
  files             restic restore of the files part in place, inside `paths` only
  globals:<engine>  users, grants, roles (before the databases that need them)
  database:<part>   each database dump, loaded under a temporary name and swapped
  hook:<name>       each post-restore hook
  role              the config says master; the schedule stays disabled

Every step is idempotent, so redoing one that finished but was not yet
recorded gives the same result; the role change is last, so a server whose
config says master has finished everything before it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import posixpath
import re
import shutil
import signal
import stat
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

from shipper import hooks, sets
from shipper.config import Config
from shipper.errors import NotFound, Refused, ShipperError
from shipper.files import not_a_folder, replace_file
from shipper.restic import Restic, ResticError
from shipper.restore import read_manifest

log = logging.getLogger("shipper.promote")

RECEIVER = "receiver"
FILES = "files"
ROLE = "role"
DONE = "done"
FAILED = "failed"
SKIPPED = "skipped"

# Kept free on a filesystem after the restore: a full disk breaks the services it brings up.
_SPACE_MARGIN = 64 << 20


class PromoteFailed(ShipperError):
    """A step failed; the report says which, and a re-run resumes there."""


@dataclass
class Options:
    set_ref: Optional[str] = None
    root: str = "/"
    allow_partial: bool = False
    force: bool = False


@dataclass
class Check:
    name: str
    ok: bool
    message: str
    overridable: bool = False  # --force may override it


# ---------------------------------------------------------------- the file scope


def norm(path: str) -> str:
    return posixpath.normpath(path) if path.startswith("/") else path


def is_under(path: str, top: str) -> bool:
    """path is top or inside it, by whole components (/srv2 is not under /srv)."""
    return path == top or top == "/" or path.startswith(top + "/")


def outermost(paths: Iterable[str]) -> List[str]:
    """The paths, without those inside another one."""
    out: List[str] = []
    for path in sorted({norm(p) for p in paths}):
        if not any(is_under(path, kept) for kept in out):
            out.append(path)
    return out


@dataclass
class Scope:
    """What promote may touch: `paths`, minus the protected (machine-specific) ones.

    restic restore cannot combine --include with --exclude, so a protected
    path inside a restored path is left out by including its siblings instead;
    the folders on the way down to it (`route`) are cleaned by shipper, since
    restic deletes only inside what it includes.
    """

    paths: List[str]
    whole: List[str]
    protected: List[str]
    route: List[str]

    @classmethod
    def make(cls, paths: Sequence[str], protected: Sequence[str]) -> Scope:
        guarded = outermost(protected)
        restored, whole, inner = [], [], []
        for path in outermost(paths):
            if any(is_under(path, m) for m in guarded):
                whole.append(path)
                continue
            restored.append(path)
            inner += [m for m in guarded if m != path and is_under(m, path)]
        route: Set[str] = set()
        for item in inner:
            parent = posixpath.dirname(item)
            top = next(p for p in restored if is_under(item, p))
            while is_under(parent, top):
                route.add(parent)
                if parent == top:
                    break
                parent = posixpath.dirname(parent)
        return cls(restored, whole, sorted(inner), sorted(route))

    def includes(self, children: Dict[str, List[str]]) -> List[str]:
        """restic include paths: each restored path, or the siblings of what it protects."""
        out = [p for p in self.paths if p not in self.route]
        kept = set(self.route) | set(self.protected)
        for folder in self.route:
            for name in children.get(folder, []):
                item = posixpath.join(folder, name)
                if item not in kept:
                    refuse_overlap(item, [k for k in kept if posixpath.dirname(k) == folder])
                    out.append(item)
        return sorted(out)

    def keeps(self, path: str) -> bool:
        """True for a protected path or a folder on the way to one."""
        return path in self.route or any(is_under(path, m) for m in self.protected)


def restic_pattern(path: str) -> str:
    """An exact path as a restic filter pattern (its glob characters escaped).

    restic's JSON turns each byte of a name that is not UTF-8 into U+FFFD;
    `?` matches that one byte again (Go's glob reads an invalid byte as one
    character), so such a name is still restored with its exact bytes.
    """
    return re.sub(r"([\\*?\[])", r"\\\1", path).replace(REPLACEMENT, "?")


REPLACEMENT = "\ufffd"


def refuse_overlap(item: str, kept: Sequence[str]) -> None:
    """A byte name's pattern (U+FFFD as `?`) must not also match a protected sibling."""
    name = posixpath.basename(item)
    if REPLACEMENT not in name:
        return
    for other in kept:
        theirs = posixpath.basename(other)
        if len(theirs) == len(name) and all(a in (b, REPLACEMENT) for a, b in zip(name, theirs)):
            raise Refused(
                f"{item} (a name that is not UTF-8) cannot be told from the machine-specific "
                f"{other} by restic's include pattern; rename one of them on the master"
            )


def json_name(name: str) -> str:
    """A name read from disk as restic's JSON spells it: each byte that is not UTF-8 as U+FFFD."""
    raw = os.fsencode(name)
    out, i = [], 0
    while i < len(raw):
        for size in (1, 2, 3, 4):
            try:
                char = raw[i : i + size].decode("utf-8")
            except UnicodeDecodeError:
                continue
            out.append(char)
            i += size
            break
        else:
            out.append(REPLACEMENT)
            i += 1
    return "".join(out)


def under_root(root: str, path: str) -> str:
    return path if root == "/" else root.rstrip("/") + path


def from_root(root: str, path: str) -> Optional[str]:
    """A real path as a path in the snapshot's namespace, None when outside root."""
    path = norm(path)
    if root == "/":
        return path
    base = root.rstrip("/")
    if path == base:
        return "/"
    return path[len(base) :] if path.startswith(base + "/") else None


def route_removals(root: str, scope: Scope, children: Dict[str, List[str]]) -> List[str]:
    """Entries in the route folders that the set does not have (snapshot paths)."""
    out = []
    for folder in scope.route:
        target = under_root(root, folder)
        try:
            info = os.lstat(target)
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(info.st_mode):
            continue  # a symlink on the way is never followed
        expected = set(children.get(folder, []))
        for name in sorted(os.listdir(target)):
            item = posixpath.join(folder, name)
            if json_name(name) not in expected and not scope.keeps(item):
                out.append(item)
    return out


def type_changes(root: str, scope: Scope, items: List[Dict[str, Any]]) -> List[str]:
    """Set entries the slave has as a folder while the set has something else (snapshot paths).

    restic replaces such a folder by a file but not by a symlink (`RemoveNode:
    directory not empty`), so promote removes it before restic runs. An entry
    of the set that no other entry lies in is not a folder, or an empty one
    (then restic --delete would empty the slave's folder anyway).
    """
    wanted = [
        str(item.get("item", "")) for item in items if item.get("action") in ("restored", "updated")
    ]
    folders = {posixpath.dirname(where) for where in wanted}
    out = []
    for where in wanted:
        if where in folders or scope.keeps(where) or not inside_paths(scope, where):
            continue
        target = under_root(root, where)
        with contextlib.suppress(OSError):
            if stat.S_ISDIR(os.lstat(target).st_mode) and os.listdir(target):
                out.append(where)
    return sorted(out)


def rewritten_files(root: str, scope: Scope, items: List[Dict[str, Any]]) -> List[str]:
    """The slave's files that restic will update (snapshot paths): promote unlinks them first.

    restic --sparse leaves holes only in files it creates; into an existing
    file it writes the zeros (the old bytes there may not be zero), so a
    sparse file would take its full size. Unlinking also keeps restic from
    writing through a slave-side hardlink into a file outside `paths`.
    """
    out = []
    for item in items:
        where = str(item.get("item", ""))
        if item.get("action") != "updated" or scope.keeps(where):
            continue
        if not inside_paths(scope, where):
            continue
        with contextlib.suppress(OSError):
            if stat.S_ISREG(os.lstat(under_root(root, where)).st_mode):
                out.append(where)
    return sorted(out)


def unlink_files(root: str, scope: Scope, items: Sequence[str]) -> int:
    """Unlink those files, never through a symlinked folder; a missing one is fine (a resumed run)."""
    removed = 0
    for where in items:
        target = under_root(root, where)
        if not inside_paths(scope, where) or not real_folders_to(root, where):
            continue
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISREG(os.lstat(target).st_mode):
                os.unlink(target)
                removed += 1
    return removed


def inside_paths(scope: Scope, path: str) -> bool:
    """path is one of the restored paths or inside one, and holds nothing protected."""
    return any(is_under(path, top) for top in scope.paths) and not any(
        is_under(m, path) for m in scope.protected
    )


def remove_in_the_way(root: str, scope: Scope, items: Sequence[str]) -> int:
    """Remove the slave's folders where the set has another type, never through a symlink."""
    removed = 0
    for where in items:
        target = under_root(root, where)
        if not inside_paths(scope, where) or not real_folders_to(root, where):
            continue
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISDIR(os.lstat(target).st_mode):
                shutil.rmtree(target)
                removed += 1
    return removed


def real_folders_to(root: str, where: str) -> bool:
    """Every folder from root down to where's parent is a real folder, not a symlink."""
    current = root
    for name in posixpath.dirname(where).strip("/").split("/"):
        if not name:
            continue
        current = os.path.join(current, name)
        try:
            if not stat.S_ISDIR(os.lstat(current).st_mode):
                return False
        except FileNotFoundError:
            return False
    return True


def remove_entry(path: str) -> None:
    info = os.lstat(path)
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


# ---------------------------------------------------------------- folders' metadata


def capture_metadata(folders: Sequence[str]) -> Dict[str, Dict[str, Any]]:
    out = {}
    for folder in folders:
        try:
            info = os.lstat(folder)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(info.st_mode):
            out[folder] = {
                "mode": stat.S_IMODE(info.st_mode),
                "uid": info.st_uid,
                "gid": info.st_gid,
                "atime_ns": info.st_atime_ns,
                "mtime_ns": info.st_mtime_ns,
                "xattrs": _xattrs(folder),
            }
    return out


def _xattrs(path: str) -> Dict[str, str]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for name in names:
        with contextlib.suppress(OSError):
            out[name] = os.getxattr(path, name, follow_symlinks=False).hex()
    return out


def restore_metadata(saved: Dict[str, Dict[str, Any]]) -> None:
    """Put back the folders' metadata as captured (deepest first)."""
    for folder in sorted(saved, key=len, reverse=True):
        meta = saved[folder]
        try:
            info = os.lstat(folder)
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(info.st_mode):
            continue
        with contextlib.suppress(PermissionError):
            os.chown(folder, meta["uid"], meta["gid"], follow_symlinks=False)
        os.chmod(folder, meta["mode"])
        current = _xattrs(folder)
        for name, value in meta["xattrs"].items():
            if current.get(name) != value:
                with contextlib.suppress(OSError):
                    os.setxattr(folder, name, bytes.fromhex(value), follow_symlinks=False)
        for name in set(current) - set(meta["xattrs"]):
            with contextlib.suppress(OSError):
                os.removexattr(folder, name, follow_symlinks=False)
        os.utime(folder, ns=(meta["atime_ns"], meta["mtime_ns"]), follow_symlinks=False)


# ---------------------------------------------------------------- the plan


@dataclass
class DatabaseLoad:
    part: str
    engine: str
    database: Optional[str]
    snapshot: str
    filename: str
    bytes: int
    sha256: Optional[str]
    server_version: str

    @property
    def is_globals(self) -> bool:
        return not self.database

    @property
    def step(self) -> str:
        return f"globals:{self.engine}" if self.is_globals else f"database:{self.part}"


@dataclass
class FileChanges:
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    bytes_to_write: int = 0
    entries_to_create: int = 0  # files and folders the slave lacks: each takes an inode
    removed_sample: List[str] = field(default_factory=list)
    bytes_by_path: Dict[str, int] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)


@dataclass
class Plan:
    set_id: str
    status: str
    time: str
    host: str
    root: str
    files_snapshot: Optional[str]
    scope: Scope
    includes: List[str]
    children: Dict[str, List[str]]
    # Slave folders where the set has another type: removed before restic runs.
    in_the_way: List[str]
    # Slave files restic will rewrite: unlinked first, so sparse files stay sparse.
    rewrite: List[str]
    changes: Optional[FileChanges]
    databases: List[DatabaseLoad]
    skipped_parts: Dict[str, str]
    hooks: List[str]
    steps: List[str]
    done: List[str]
    resumed: bool

    def to_json(self) -> Dict[str, Any]:
        data = asdict(self)
        data.pop("children")
        data.pop("rewrite")  # one per changed file: the counts say it
        return data


def parts_of_manifest(manifest: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    return {part["name"]: part for part in manifest.get("parts", [])}


def failed_parts(manifest: Dict[str, Any]) -> Dict[str, str]:
    return {
        name: part.get("error") or part.get("outcome", "?")
        for name, part in parts_of_manifest(manifest).items()
        if part.get("outcome") != "ok"
    }


def database_loads(chosen: sets.SnapshotSet, manifest: Dict[str, Any]) -> List[DatabaseLoad]:
    """The set's database parts that succeeded, globals of each engine first."""
    present = chosen.parts
    out = []
    for name, part in parts_of_manifest(manifest).items():
        details = part.get("details") or {}
        if part.get("outcome") != "ok" or "engine" not in details or "filename" not in details:
            continue
        snapshot = part.get("snapshot") or (present[name].snapshot if name in present else None)
        out.append(
            DatabaseLoad(
                part=name,
                engine=name.split(":", 1)[0],  # the server's label: mariadb, mariadb2, ...
                database=details.get("database") or None,
                snapshot=snapshot or "",
                filename=details["filename"],
                bytes=int(details.get("bytes") or 0),
                sha256=details.get("sha256"),
                server_version=str(details.get("server_version") or ""),
            )
        )
    return sorted(out, key=lambda d: (not d.is_globals, d.engine, d.part))


def summarize_preview(root: str, items: List[Dict[str, Any]], paths: Sequence[str]) -> FileChanges:
    """Counts from restic's dry-run actions; folders (parents of other items) are not counted."""
    changes = FileChanges()
    located = []
    for item in items:
        where = str(item.get("item", ""))
        if item.get("action") == "deleted":
            where = from_root(root, where) or where
        located.append((str(item.get("action")), where, int(item.get("size") or 0)))
    folders = {posixpath.dirname(where) for _, where, _ in located}
    for action, where, size in located:
        if action == "restored":
            changes.entries_to_create += 1
        if where in folders:
            continue
        if action == "restored":
            changes.new += 1
        elif action == "updated":
            changes.changed += 1
        elif action == "unchanged":
            changes.unchanged += 1
        elif action == "deleted":
            changes.removed += 1
            if len(changes.removed_sample) < 10:
                changes.removed_sample.append(where)
        if action in ("restored", "updated"):
            changes.bytes_to_write += size
            top = next((p for p in paths if is_under(where, p)), "/")
            changes.bytes_by_path[top] = changes.bytes_by_path.get(top, 0) + size
    return changes


# ---------------------------------------------------------------- the journal


class Journal:
    """The progress file: each finished step, written atomically and synced."""

    def __init__(self, folder: Path, set_id: str):
        self.path = folder / f"{set_id}.json"
        self.lock = threading.Lock()
        self.data: Dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            self.data = json.loads(self.path.read_text())

    @staticmethod
    def unfinished(folder: Path) -> List[Dict[str, Any]]:
        out = []
        for path in sorted(folder.glob("*.json")):
            with contextlib.suppress(OSError, ValueError):
                data = json.loads(path.read_text())
                if data.get("set") and not data.get("finished") and data.get("steps"):
                    out.append(data)
        return out

    def start(self, set_id: str, root: str) -> bool:
        """Begin or resume; True when resuming an interrupted run of the same promote."""
        resumable = (
            self.data.get("set") == set_id
            and self.data.get("root") == root
            and not self.data.get("finished")
        )
        if not resumable:
            self.data = {"set": set_id, "root": root, "started": _now(), "steps": {}, "attempts": 0}
        self.data["attempts"] = int(self.data.get("attempts", 0)) + 1
        self.data["finished"] = None
        self.save()
        return resumable and bool(self.data["steps"])

    def done(self, step: str) -> bool:
        return self.data.get("steps", {}).get(step, {}).get("status") == DONE

    def record(self, step: str, status: str, seconds: float, detail: Any = None) -> None:
        with self.lock:
            self.data["steps"][step] = {
                "status": status,
                "seconds": round(seconds, 3),
                "at": _now(),
                "detail": detail,
            }
            self.save()

    def remember(self, key: str, value: Any) -> None:
        with self.lock:
            self.data[key] = value
            self.save()

    def save(self) -> None:
        write_synced(self.path, json.dumps(self.data, indent=1, default=str))


def write_synced(path: Path, text: str) -> None:
    """Replace a root-only file so that a crash leaves the old or the new one whole."""
    replace_file(path, text, sync=True)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------- the report


@dataclass
class StepResult:
    name: str
    status: str
    seconds: float
    detail: Any = None
    earlier: bool = False  # finished by an earlier, interrupted run


@dataclass
class Report:
    set_id: str
    root: str
    outcome: str
    started: str
    seconds: float
    steps: List[StepResult]
    path: str = ""
    error: str = ""
    finished: str = field(default_factory=_now)
    # Wall-clock seconds of this run's phases (databases load side by side, so
    # their steps' seconds add up to more than the phase took).
    split: Dict[str, float] = field(default_factory=dict)

    def to_json(self) -> Dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- the promotion


Say = Callable[[Check], None]


class Promotion:
    """One promote: preflight() and plan() change nothing; run() does the steps."""

    def __init__(
        self, cfg: Config, restic: Restic, options: Options, engines: Optional[List[Any]] = None
    ):
        self.cfg = cfg
        self.restic = restic
        self.options = options
        self.root = norm(os.path.abspath(options.root))
        self.folder = cfg.state / "promote"
        self.chosen: Optional[sets.SnapshotSet] = None
        self.manifest: Dict[str, Any] = {}
        self.journal: Optional[Journal] = None
        self.checks: List[Check] = []
        self._engines = engines
        self._plan: Optional[Plan] = None
        self.started = _now()
        self.clock = time.monotonic()  # the whole command counts in the time to recover

    # ------------------------------------------------------------ preflight

    def preflight(self, say: Say = lambda check: None) -> List[Check]:
        """Every check, each OK or what to do; the set is chosen here."""

        def check(name: str, ok: bool, message: str, overridable: bool = False) -> bool:
            item = Check(name, ok, message, overridable)
            self.checks.append(item)
            say(item)
            return ok

        interrupted = Journal.unfinished(self.folder)
        self._check_role(check, interrupted)
        if not self._check_root(check):
            return self.checks
        try:
            found = sets.group(self.restic.snapshots())
        except ResticError as exc:
            check(
                "repository",
                False,
                f"cannot open the repository {self.restic.repository.display}: {exc}",
            )
            return self.checks
        check("repository", True, f"{self.restic.repository.display}: {len(found)} sets")
        if not self._choose_set(check, found, interrupted):
            return self.checks
        if not self._check_manifest(check):
            self._offer_readable(check, found)
            return self.checks
        if self._check_parts(check):
            self._check_readable(check, found)
        else:
            self._offer_readable(check, found)
        self._check_databases(check)
        return self.checks

    def _check_readable(self, check: Callable[..., bool], found: List[sets.SnapshotSet]) -> None:
        """Refuse a set that `shipper check` found in damaged packs."""
        from shipper import damage

        assert self.chosen is not None
        record = damage.load(self.cfg)
        why = record.why(self.chosen)
        if why:
            check("readable", False, f"set {self.chosen.id} cannot be read back whole: {why}")
            self._offer_readable(check, found, record)
            return
        when = f"last `shipper check`: {record.checked}" if record.checked else "no check yet"
        check("readable", True, f"no damage known in this set ({when})")

    def _offer_readable(
        self, check: Callable[..., bool], found: List[sets.SnapshotSet], record: Any = None
    ) -> None:
        """After a set failed because it cannot be read: name the newest one that can."""
        from shipper import damage

        if self.chosen is None or self.checks[-1].name not in ("manifest", "parts", "readable"):
            return
        if self.checks[-1].name == "manifest" and "partial" in self.checks[-1].message:
            return
        record = record or damage.load(self.cfg)
        check("instead", False, damage.offer(self.restic, found, record, skip=self.chosen.id))

    def _check_root(self, check: Callable[..., bool]) -> bool:
        """--root must be a folder (or not exist yet under one): found before the receiver stops."""
        problem = not_a_folder(self.root)
        if problem:
            return check("root", False, f"--root {problem}; give a folder")
        if self.root != "/":
            check("root", True, f"{self.root}: a folder")
        return True

    def _check_role(self, check: Callable[..., bool], interrupted: List[Dict[str, Any]]) -> None:
        if self.cfg.role == "slave":
            check("role", True, "this server is the slave")
        elif interrupted:
            check(
                "role",
                True,
                "this server is master, from an interrupted promote that will now finish",
            )
        else:
            check(
                "role",
                self.options.force,
                "this server is a master: promote runs on the slave"
                + (
                    " (--force given: going on)"
                    if self.options.force
                    else "; --force to promote anyway"
                ),
                overridable=True,
            )

    def _choose_set(
        self, check: Callable[..., bool], found: List[sets.SnapshotSet], interrupted
    ) -> bool:
        ref = self.options.set_ref
        if not ref and interrupted:
            ref = interrupted[-1]["set"]
        try:
            self.chosen = sets.find(found, ref) if ref else self._newest(found)
        except NotFound as exc:
            return check("set", False, str(exc))
        chosen = self.chosen
        age = _age(chosen.time)
        if chosen.status == sets.INCOMPLETE:
            return check(
                "set",
                False,
                f"set {chosen.id} is incomplete (no manifest: it never finished); "
                "choose a complete set with --set (`shipper sets` lists them)",
            )
        return check(
            "set", True, f"{chosen.id} ({chosen.status}, taken {age} ago on {chosen.host or '?'})"
        )

    def _newest(self, found: List[sets.SnapshotSet]) -> sets.SnapshotSet:
        newest = sets.newest(found)
        if newest is not None:
            return newest
        partial = sets.newest(found, (sets.PARTIAL,))
        if partial is not None and self.options.allow_partial:
            return partial
        if partial is not None:
            raise NotFound(
                f"there is no complete set; the newest is {partial.id}, partial: "
                "give --allow-partial to promote it"
            )
        raise NotFound("there is no set in the repository: nothing to promote")

    def _check_manifest(self, check: Callable[..., bool]) -> bool:
        assert self.chosen is not None
        try:
            manifest = read_manifest(self.restic, self.chosen)
        except (ResticError, ValueError) as exc:
            return check(
                "manifest", False, f"cannot read the manifest of set {self.chosen.id}: {exc}"
            )
        if manifest is None:
            return check(
                "manifest",
                False,
                f"set {self.chosen.id} has no readable manifest: it cannot be promoted",
            )
        self.manifest = manifest
        failed = failed_parts(manifest)
        if failed:
            named = "; ".join(f"{name}: {error}" for name, error in failed.items())
            if not self.options.allow_partial:
                return check(
                    "manifest",
                    False,
                    f"set {self.chosen.id} is partial, failed part(s): {named}; "
                    "--allow-partial promotes the rest, or choose another set with --set",
                )
            return check("manifest", True, f"partial set, --allow-partial: skipping {named}")
        return check("manifest", True, f"{len(manifest.get('parts', []))} parts, all ok")

    def _check_parts(self, check: Callable[..., bool]) -> bool:
        assert self.chosen is not None
        present = self.chosen.parts
        ids = {snap.id for snap in self.chosen.snapshots}
        missing = []
        for load in database_loads(self.chosen, self.manifest):
            if not load.snapshot or (load.snapshot not in ids and load.part not in present):
                missing.append(load.part)
        files_ok = parts_of_manifest(self.manifest).get(FILES, {}).get("outcome") in (
            "ok",
            "unreadable",
        )
        if files_ok and FILES not in present:
            missing.append(FILES)
        if missing:
            return check(
                "parts",
                False,
                f"set {self.chosen.id} lacks the snapshot of part(s) "
                f"{', '.join(missing)}: choose another set with --set",
            )
        return check("parts", True, f"{len(present)} part snapshots present")

    def _check_databases(self, check: Callable[..., bool]) -> None:
        assert self.chosen is not None
        loads = database_loads(self.chosen, self.manifest)
        if not loads:
            return
        engines = {load.engine for load in loads}
        try:
            available = self.engines()
        except Exception as exc:  # the database layer's own errors, whatever they are
            check("databases", False, f"cannot find this server's database servers: {exc}")
            return
        for name in sorted(engines):
            engine = available.get(name)
            if engine is None:
                check(
                    f"{name} server",
                    False,
                    f"the set has {name} dumps but no {name} server is configured "
                    "here: install and start it, and configure databases."
                    + re.sub(r"\d+$", "", name),
                )
                continue
            wanted = next(load.server_version for load in loads if load.engine == name)
            self._check_version(check, engine, wanted)

    def _check_version(self, check: Callable[..., bool], engine: Any, wanted: str) -> None:
        from shipper import databases

        label = f"{engine.name} server"
        try:
            with engine.credentials():
                have = engine.version()
                have_major = engine.major_version()
        except databases.DatabaseError as exc:
            check(
                label, False, f"{exc}; start the local {engine.name} server, then run promote again"
            )
            return
        want_major = major_of(engine.name, wanted) if wanted else have_major
        if want_major != have_major:
            forced = self.options.force
            check(
                label,
                forced,
                f"the set was dumped from {engine.name} {wanted} (major {want_major}), "
                f"this server runs {have} (major {have_major})"
                + (
                    "; --force given: loading anyway"
                    if forced
                    else "; install the same major version, or --force to load anyway"
                ),
                overridable=True,
            )
            return
        check(label, True, f"running, {have} (the set's: {wanted or '?'})")

    def engines(self) -> Dict[str, Any]:
        if self._engines is None:
            from shipper import databases

            self._engines = (
                databases.engines_from_config(self.cfg.databases)
                if self.cfg.databases.enabled
                else []
            )
        return {engine.label: engine for engine in self._engines}

    @property
    def ready(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks) and self.chosen is not None

    # ------------------------------------------------------------ plan

    def plan(self, say: Say = lambda check: None) -> Plan:
        """What run() will do; reads the repository and the disk, changes nothing."""
        if not self.ready:
            raise Refused("preflight failed: fix what it names, then run promote again")
        chosen = self.chosen
        assert chosen is not None
        journal = Journal(self.folder, chosen.id)
        done = [
            name
            for name, step in journal.data.get("steps", {}).items()
            if step.get("status") == DONE
            and journal.data.get("root") == self.root
            and not journal.data.get("finished")
        ]
        files_part = chosen.parts.get(FILES)
        snapshot = files_part.snapshot if files_part else None
        scope = Scope.make(self.restored_paths(files_part), self.protected_paths())
        children: Dict[str, List[str]] = {}
        includes: List[str] = []
        in_the_way: List[str] = []
        rewrite: List[str] = []
        changes = None
        if snapshot and FILES not in done and scope.paths:
            changes, children, in_the_way, rewrite = self._preview(snapshot, scope)
            includes = scope.includes(children)
        loads = database_loads(chosen, self.manifest)
        wanted = list(changes.bytes_by_path.items()) if changes else []
        self._check_space(
            say,
            [(under_root(self.root, p), n) for p, n in wanted] + self._database_space(loads, done),
        )
        if changes is not None:
            self._check_inodes(say, changes.entries_to_create)
        post = [hook.name for hook in hooks.find(self.cfg.hooks.dirs, hooks.POST_RESTORE)]
        steps = [
            RECEIVER,
            *([FILES] if snapshot else []),
            *(load.step for load in loads),
            *(f"hook:{name}" for name in post),
            ROLE,
        ]
        self._plan = Plan(
            set_id=chosen.id,
            status=chosen.status,
            time=chosen.time.isoformat(),
            host=str(self.manifest.get("host") or chosen.host),
            root=self.root,
            files_snapshot=snapshot,
            scope=scope,
            includes=includes,
            children=children,
            in_the_way=in_the_way,
            rewrite=rewrite,
            changes=changes,
            databases=loads,
            skipped_parts=failed_parts(self.manifest),
            hooks=post,
            steps=steps,
            done=[s for s in steps if s in done],
            resumed=bool(done),
        )
        return self._plan

    def restored_paths(self, files_part: Optional[sets.Part]) -> List[str]:
        """The master's `paths` from the manifest; else what the files snapshot holds but the set folder."""
        if "paths" in self.manifest or files_part is None:
            return list(self.manifest.get("paths") or [])
        own = self.manifest.get("set_dir")
        return [path for path in files_part.paths if path != own]

    def protected_paths(self) -> List[str]:
        """Machine-specific paths (this server's and the master's), and shipper's own files here."""
        own = [
            self.cfg.state_dir,
            self.cfg.receiver.repo_dir,
            os.path.dirname(os.path.abspath(self.cfg.source)),
        ]
        if self.cfg.repository.local_path:
            own.append(self.cfg.repository.local_path)
        mapped = [from_root(self.root, path) for path in own if path.startswith("/")]
        return sorted(
            {
                norm(p)
                for p in [
                    *self.cfg.machine_specific,
                    *self.manifest.get("machine_specific", []),
                    *(m for m in mapped if m),
                ]
            }
        )

    def _preview(
        self, snapshot: str, scope: Scope
    ) -> Tuple[FileChanges, Dict[str, List[str]], List[str], List[str]]:
        """restic's dry run over the whole paths: the changes, and what the route folders hold.

        Protected items are in restic's answer (it was asked about whole
        paths, which saves a `restic ls`) and are taken out of the counts;
        entries of the route folders that the set lacks are among restic's
        deletions, which shipper then makes itself.
        """
        _, items, errors = self.restic.restore_preview(
            snapshot, self.root, [restic_pattern(p) for p in scope.paths], delete=True
        )
        children: Dict[str, Set[str]] = {folder: set() for folder in scope.route}
        kept = []
        for item in items:
            where = str(item.get("item", ""))
            if item.get("action") == "deleted":
                where = from_root(self.root, where) or where
            elif posixpath.dirname(where) in children:
                children[posixpath.dirname(where)].add(posixpath.basename(where))
            if not any(is_under(where, m) for m in scope.protected):
                kept.append(item)
        changes = summarize_preview(self.root, kept, scope.paths)
        changes.warnings = errors
        named = {folder: sorted(names) for folder, names in children.items()}
        in_the_way = type_changes(self.root, scope, items)
        return changes, named, in_the_way, rewritten_files(self.root, scope, items)

    def _database_space(self, loads: List[DatabaseLoad], done: List[str]) -> List[Tuple[str, int]]:
        """Where each engine keeps its data and the bytes its loads add (a load is about its dump)."""
        from shipper import databases

        out = []
        engines = self.engines()
        for label in sorted({load.engine for load in loads if load.step not in done}):
            engine = engines.get(label)
            folder = getattr(engine, "data_directory", None)
            if folder is None:
                continue  # an engine that cannot say where its data lives is not checked
            try:
                with engine.credentials():
                    where = folder()
            except databases.DatabaseError:
                continue  # preflight has named a server that does not answer
            out.append((where, sum(load.bytes for load in loads if load.engine == label)))
        return out

    def _check_space(self, say: Say, needs: List[Tuple[str, int]]) -> None:
        needed: Dict[int, Tuple[int, str]] = {}
        for path, size in needs:
            where = _existing(path)
            device = os.stat(where).st_dev
            total, _ = needed.get(device, (0, where))
            needed[device] = (total + size, where)
        for total, where in needed.values():
            usage = shutil.disk_usage(where)
            ok = usage.free >= total + _SPACE_MARGIN
            item = Check(
                "disk",
                ok,
                f"{where}: {_human(total)} to write, {_human(usage.free)} free"
                + ("" if ok else "; free space there, then run promote again"),
            )
            self.checks.append(item)
            say(item)

    def _check_inodes(self, say: Say, count: int) -> None:
        """The root's filesystem has an inode for every entry the restore creates."""
        where = _existing(self.root)
        info = os.statvfs(where)
        if not info.f_files or not count:
            return  # no inode limit (btrfs, ...) or nothing new
        ok = info.f_favail >= count
        item = Check(
            "inodes",
            ok,
            f"{where}: {count} new files and folders, {info.f_favail} inodes free"
            + ("" if ok else f"; free inodes there (`df -i {where}`), then run promote again"),
        )
        self.checks.append(item)
        say(item)

    # ------------------------------------------------------------ run

    def run(self, on_step: Callable[[str, str], None] = lambda name, status: None) -> Report:
        """Do every step not done yet; the report is written even when a step fails."""
        plan = self._plan or self.plan()
        self.journal = Journal(self.folder, plan.set_id)
        self.journal.start(plan.set_id, self.root)
        first = round(time.monotonic() - self.clock, 3)
        results = [StepResult("preflight and plan", DONE, first)]
        split = {"preflight and plan": first, FILES: 0.0, "databases": 0.0, "hooks": 0.0}
        error = ""
        try:
            self._check(results, self._step(RECEIVER, lambda: stop_receiver(self.cfg), on_step))
            self._restore_data(plan, on_step, results, split)
            clock = time.monotonic()
            for name in plan.hooks:
                step = self._step(
                    f"hook:{name}", lambda name=name: self.run_hook(plan, name), on_step
                )
                self._check(results, step)
            split["hooks"] = round(time.monotonic() - clock, 3)
            self._check(
                results, self._step(ROLE, lambda: become_master(self.cfg, plan.set_id), on_step)
            )
        except PromoteFailed as exc:
            error = str(exc)
        if not error:
            self.journal.remember("finished", _now())
            self._close_other_journals(plan.set_id)
        report = Report(
            plan.set_id,
            self.root,
            "failed" if error else "promoted",
            self.started,
            round(time.monotonic() - self.clock, 3),
            results,
            path=str(self.folder / f"{plan.set_id}-report.json"),
            error=error,
            split=split,
        )
        self.write_report(report)
        return report

    def _close_other_journals(self, set_id: str) -> None:
        """Promotes of other sets left unfinished are over: they must not be resumed later."""
        for data in Journal.unfinished(self.folder):
            if data["set"] != set_id:
                other = Journal(self.folder, data["set"])
                other.remember("finished", f"abandoned: set {set_id} was promoted at {_now()}")

    @staticmethod
    def _check(results: List[StepResult], *steps: StepResult) -> None:
        """Add the steps to the report; stop at a failed one."""
        results.extend(steps)
        failed = [step for step in steps if step.status == FAILED]
        if failed:
            raise PromoteFailed(
                "; ".join(f"step {step.name} failed: {step.detail}" for step in failed)
            )

    def _restore_data(
        self, plan: Plan, on_step, results: List[StepResult], split: Dict[str, float]
    ) -> None:
        """Files and databases side by side: neither needs the other, and the time to recover is what counts."""

        def timed(phase: str, work: Callable[[], List[StepResult]]) -> List[StepResult]:
            clock = time.monotonic()
            try:
                return work()
            finally:
                split[phase] = round(time.monotonic() - clock, 3)

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            files = None
            if plan.files_snapshot:
                action = lambda: self.restore_files(plan)  # noqa: E731
                files = pool.submit(timed, FILES, lambda: [self._step(FILES, action, on_step)])
            loaded = (
                timed("databases", lambda: self.load_databases(plan, on_step))
                if plan.databases
                else []
            )
            restored = files.result() if files is not None else []
        self._check(results, *restored, *loaded)

    def _step(self, name: str, action: Callable[[], Any], on_step) -> StepResult:
        """Run one step unless an earlier run did it; a failure is returned, not raised."""
        from shipper import databases

        journal = self.journal
        assert journal is not None
        if journal.done(name):
            on_step(name, "done earlier")
            earlier = journal.data["steps"][name]
            return StepResult(
                name, DONE, earlier.get("seconds", 0.0), earlier.get("detail"), earlier=True
            )
        on_step(name, "running")
        journal.remember("current", name)
        fault_point(name, "start")
        clock = time.monotonic()
        try:
            detail = action()
            fault_point(name, "end")
        except (ShipperError, ResticError, OSError, databases.DatabaseError) as exc:
            seconds = round(time.monotonic() - clock, 3)
            journal.record(name, FAILED, seconds, str(exc))
            on_step(name, f"failed: {exc}")
            return StepResult(name, FAILED, seconds, str(exc))
        seconds = round(time.monotonic() - clock, 3)
        journal.record(name, DONE, seconds, detail)
        on_step(name, "done")
        return StepResult(name, DONE, seconds, detail)

    # ------------------------------------------------------------ files

    def restore_files(self, plan: Plan) -> Dict[str, Any]:
        """restic restore in place, then the route folders' stale entries.

        Folders end with the set's metadata, the folders above `paths`
        included (restic sets those); the route folders' metadata is read back
        after restic and put again after shipper's removals changed their mtime.
        """
        assert plan.files_snapshot
        replaced = remove_in_the_way(self.root, plan.scope, plan.in_the_way)
        unlink_files(self.root, plan.scope, plan.rewrite)
        summary: Dict[str, Any] = {}
        if plan.includes:
            try:
                summary = self.restic.restore(
                    plan.files_snapshot,
                    self.root,
                    [restic_pattern(p) for p in plan.includes],
                    delete=True,
                )
            except ResticError as exc:
                raise PromoteFailed(_with_item_errors(exc)) from None
        route = capture_metadata([under_root(self.root, f) for f in plan.scope.route])
        removed = route_removals(self.root, plan.scope, plan.children)
        for item in removed:
            remove_entry(under_root(self.root, item))
        restore_metadata(route)
        return {
            "files_restored": summary.get("files_restored", 0),
            "files_skipped": summary.get("files_skipped", 0),
            "files_deleted": int(summary.get("files_deleted", 0)) + len(removed) + replaced,
            "bytes_restored": summary.get("bytes_restored", 0),
        }

    # ------------------------------------------------------------ databases

    def load_databases(self, plan: Plan, on_step: Callable[[str, str], None]) -> List[StepResult]:
        """Globals first (the databases' owners and grants), then the databases side by side."""
        engines = self.engines()

        def load(item: DatabaseLoad, step: str = "") -> StepResult:
            return self._step(
                step or item.step,
                lambda: load_part(self.restic, engines[item.engine], item),
                on_step,
            )

        with contextlib.ExitStack() as stack:
            for name in sorted({item.engine for item in plan.databases}):
                stack.enter_context(engines[name].credentials())
            users = [item for item in plan.databases if item.is_globals]
            results = [load(item) for item in users]
            rest = [item for item in plan.databases if not item.is_globals]
            with concurrent.futures.ThreadPoolExecutor(max(1, self.cfg.databases.parallel)) as pool:
                results += list(pool.map(load, rest))
            # Grants on tables and routines were skipped while those did not
            # exist yet; the globals load again (it is idempotent) to add them.
            results += [load(item, f"grants:{item.engine}") for item in users if rest]
        return results

    # ------------------------------------------------------------ hooks

    def run_hook(self, plan: Plan, name: str) -> str:
        found = {hook.name: hook for hook in hooks.find(self.cfg.hooks.dirs, hooks.POST_RESTORE)}
        if name not in found:
            raise PromoteFailed(
                f"post-restore hook {name} is gone from {', '.join(self.cfg.hooks.dirs)}"
            )
        env = {
            "SHIPPER_SET_ID": plan.set_id,
            "SHIPPER_ROLE": "master",
            "SHIPPER_ROOT": self.root,
            "SHIPPER_SERVICES": " ".join(self.cfg.promote.services),
        }
        hooks.run_one(found[name], hooks.POST_RESTORE, env, self.cfg.hooks.timeout)
        return str(found[name])

    # ------------------------------------------------------------ report

    def write_report(self, report: Report) -> None:
        text = json.dumps(report.to_json(), indent=1, default=str)
        write_synced(Path(report.path), text)
        write_synced(self.cfg.state / "last-promote.json", text)


def load_part(
    restic: Restic, engine: Any, load: DatabaseLoad, as_name: Optional[str] = None
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
        from shipper import databases

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


# ---------------------------------------------------------------- becoming master


def stop_receiver(cfg: Config) -> str:
    """Stop the receiver and keep it stopped, so a returning old master cannot push."""
    from shipper import receiver

    return receiver.stop_for_good(cfg)


def major_of(engine: str, version: str) -> str:
    """The major version in a server's version string: PostgreSQL 15, MariaDB 10.11."""
    numbers = re.findall(r"\d+", version)
    if engine == "postgresql" and numbers and int(numbers[0]) >= 10:
        return numbers[0]
    return ".".join(numbers[:2])


def become_master(cfg: Config, set_id: str) -> str:
    """role: master and enabled: false in the config file, its comments and other keys kept."""
    from shipper import provision

    provision.update_config(cfg.source, {("role",): "master", ("enabled",): False}, "")
    return (
        f"{cfg.source}: role master (set {set_id}), schedule disabled until a new slave is set up"
    )


# ---------------------------------------------------------------- small helpers


def fault_point(step: str, when: str) -> None:
    """Die here, as a crash would, when SHIPPER_FAULT_KILL=<step>:<when> (start or end).

    For tests that prove a killed promote resumes: `end` is the narrowest
    window, a step's work done but not yet recorded.
    """
    if os.environ.get("SHIPPER_FAULT_KILL") == f"{step}:{when}":
        os.kill(os.getpid(), signal.SIGKILL)


def _with_item_errors(exc: ResticError) -> str:
    """restic's own summary line ("There were 2 errors") says little: name the items."""
    items = [
        line for line in exc.detail.splitlines() if line and not line.lower().startswith("fatal")
    ]
    return f"{exc}" + (f"; {'; '.join(items[:5])}" if items else "")


def _existing(path: str) -> str:
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def _human(count: float) -> str:
    from shipper.progress import human_bytes

    return human_bytes(count)


def _age(when: dt.datetime) -> str:
    seconds = max(0, int((dt.datetime.now(dt.timezone.utc) - when).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


# ---------------------------------------------------------------- text for the terminal


def check_line(check: Check) -> str:
    return f"  {'OK  ' if check.ok else 'FAIL'} {check.name}: {check.message}"


def plan_lines(plan: Plan) -> List[str]:
    when = dt.datetime.fromisoformat(plan.time)
    lines = [
        f"plan: promote set {plan.set_id} ({plan.status}), taken {when:%Y-%m-%d %H:%M:%S} UTC "
        f"({_age(when)} ago) on {plan.host}",
    ]
    if plan.resumed:
        lines.append(
            f"  resuming an interrupted promote; already done: {', '.join(plan.done) or '-'}"
        )
    lines.append(
        f"{_mark(plan, RECEIVER)}stop the receiver for good (no more pushes from the old master)"
    )
    lines += _files_lines(plan)
    for load in plan.databases:
        what = (
            f"{load.engine} users and grants"
            if load.is_globals
            else f"replace database {load.database}"
        )
        lines.append(f"{_mark(plan, load.step)}{what} ({load.engine}, {_human(load.bytes)} dump)")
    for name, error in plan.skipped_parts.items():
        lines.append(f"  - skip the failed part {name}: {error}")
    for name in plan.hooks:
        lines.append(f"{_mark(plan, 'hook:' + name)}run post-restore hook {name}")
    lines.append(
        "  then: this server becomes the master (role: master); the schedule stays "
        "disabled until a new slave is configured"
    )
    return lines


def _mark(plan: Plan, step: str) -> str:
    return "  - (done) " if step in plan.done else "  - "


def _files_lines(plan: Plan) -> List[str]:
    if not plan.files_snapshot:
        return ["  - files: the set has no files part: nothing to restore"]
    where = "" if plan.root == "/" else f" under {plan.root}"
    lines = [
        f"  - {'(done) ' if FILES in plan.done else ''}restore files in place{where}: "
        + ", ".join(plan.scope.paths)
    ]
    if plan.scope.protected:
        lines.append(f"     kept as they are (machine-specific): {', '.join(plan.scope.protected)}")
    if plan.scope.whole:
        lines.append(f"     not restored (machine-specific): {', '.join(plan.scope.whole)}")
    changes = plan.changes
    if changes is not None:
        lines.append(
            f"     {changes.new} new, {changes.changed} changed, {changes.removed} removed, "
            f"{changes.unchanged} unchanged (by size and time); {_human(changes.bytes_to_write)} to write"
        )
        for item in changes.removed_sample:
            lines.append(f"       remove {item}")
        if changes.removed > len(changes.removed_sample):
            lines.append(f"       ... and {changes.removed - len(changes.removed_sample)} more")
        for warning in changes.warnings[:10]:
            lines.append(f"     restic warns: {warning}")
    return lines


def report_lines(report: Report) -> List[str]:
    lines = [f"promote of set {report.set_id}: {report.outcome.upper()} in {report.seconds:.1f}s"]
    for step in report.steps:
        when = "earlier run" if step.earlier else f"{step.seconds:.1f}s"
        lines.append(f"  {step.status:<7} {step.name:<32} {when}")
    split = report.split
    lines.append(
        f"  files {split['files']:.1f}s, databases {split['databases']:.1f}s, hooks {split['hooks']:.1f}s"
    )
    if report.error:
        lines.append(f"  error: {report.error}")
        lines.append(
            "  fix the cause and run `shipper promote` again: it resumes at the failed step"
        )
    lines.append(f"  report: {report.path}")
    return lines
