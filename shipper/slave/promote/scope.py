"""Which files promote restores in place, which it keeps, and what it removes.

Promote restores only inside the master's `paths` and never touches a
machine-specific path. restic restores whole folders with --delete, so a
folder holding a protected path is routed: its entries are restored one by one
and those the set lacks are removed by shipper itself.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import shutil
import stat
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set

from shipper.core.errors import Refused


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
    """A name read from disk as restic's JSON spells it: each byte that is not UTF-8 as U+FFFD.

    Not bytes.decode(errors="replace"): Python puts one U+FFFD for a whole cut
    sequence (b"\\xe2\\x82"), Go (restic) one per byte, and the names must match.
    """
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
    (then restic --delete would empty the slave's folder anyway). Entries left
    unchanged count as lying in their folder: a folder restic only touches up
    (its children unchanged) is not in the way, and must not be removed.
    """
    wanted = [
        str(item.get("item", "")) for item in items if item.get("action") in ("restored", "updated")
    ]
    folders = {
        posixpath.dirname(str(item.get("item", "")))
        for item in items
        if item.get("action") != "deleted"
    }
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
    """Unlink the slave's files that restic will rewrite."""
    return _remove_inside(root, scope, items, stat.S_ISREG, os.unlink)


def inside_paths(scope: Scope, path: str) -> bool:
    """path is one of the restored paths or inside one, and holds nothing protected."""
    return any(is_under(path, top) for top in scope.paths) and not any(
        is_under(m, path) for m in scope.protected
    )


def remove_in_the_way(root: str, scope: Scope, items: Sequence[str]) -> int:
    """Remove the slave's folders where the set has another type."""
    return _remove_inside(root, scope, items, stat.S_ISDIR, shutil.rmtree)


def _remove_inside(
    root: str,
    scope: Scope,
    items: Sequence[str],
    of_kind: Callable[[int], bool],
    remove: Callable[[str], None],
) -> int:
    """Remove each item that is of_kind, only inside `paths` and never through a
    symlinked folder; a missing one is fine (a resumed run removed it)."""
    removed = 0
    for where in items:
        target = under_root(root, where)
        if not inside_paths(scope, where) or not real_folders_to(root, where):
            continue
        with contextlib.suppress(FileNotFoundError):
            if of_kind(os.lstat(target).st_mode):
                remove(target)
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
