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
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set


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
                    out.append(item)
        return sorted(out)

    def keeps(self, path: str) -> bool:
        """True for a protected path or a folder on the way to one."""
        return path in self.route or any(is_under(path, m) for m in self.protected)


def restic_pattern(path: str) -> str:
    """An exact path as a restic filter pattern (its glob characters escaped)."""
    return re.sub(r"([\\*?\[])", r"\\\1", path)


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
            if name not in expected and not scope.keeps(item):
                out.append(item)
    return out


def remove_entry(path: str) -> None:
    info = os.lstat(path)
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


# ---------------------------------------------------------------- folders above the paths


def ancestors(root: str, paths: Sequence[str]) -> List[str]:
    """Real folders strictly above each path (restic resets their owner, mode and times)."""
    out: Set[str] = set()
    for path in paths:
        parent = posixpath.dirname(path)
        while parent != "/":
            out.add(under_root(root, parent))
            parent = posixpath.dirname(parent)
    return sorted(out)


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
    """Put back what restic changed on folders outside `paths` (deepest first)."""
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
