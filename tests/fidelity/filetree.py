"""A messy master tree, an older and different slave tree, and a walker that records everything.

Paths are bytes throughout: names that are not UTF-8 must survive as bytes.
The walker records what restic keeps (type, mode with setuid/setgid/sticky,
owner, size, mtime in ns, content, link target, device numbers, every xattr
including POSIX ACLs and file capabilities, hardlink groups, sparseness);
atime, ctime and inode numbers are not restorable by any tool and are left
out (docs/fidelity.md).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import stat
import subprocess
from typing import Any, Dict, List, Optional, Tuple

# Numeric owners that no passwd or group file names.
UID, GID = 4242, 4343
SPARSE_SIZE = 1 << 30
SPARSE_DATA = 16 << 10
# A fixed, odd mtime: restic must carry the nanoseconds.
MTIME_NS = 1_234_567_890_123_456_789

# Names that break naive code: spaces, a newline, a leading dash, glob and
# escape characters, Unicode in NFC and NFD, and bytes that are not UTF-8.
ODD_NAMES: List[bytes] = [
    b"with space",
    b"new\nline",
    b"-leading-dash",
    b"glob*?[x]",
    b"back\\slash",
    "caf\u00e9-nfc".encode(),
    "cafe\u0301-nfd".encode(),
    b"latin1-caf\xe9",
    b"bad\xff\xfe",
]


def j(*parts: bytes) -> bytes:
    return os.path.join(*parts)


def write(path: bytes, data: bytes, mode: int = 0o644) -> bytes:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)
    return path


def have(command: str) -> bool:
    return shutil.which(command) is not None


def build_master(top: bytes) -> Dict[str, bytes]:
    """The master tree under top; returns the roles of its paths (data, etc, machine-specific)."""
    data, etc = j(top, b"srv", b"data"), j(top, b"etc")
    os.makedirs(data)
    _kinds(data)
    _names(data)
    _modes_and_owners(data)
    _metadata(data)
    _type_changes_master(data)
    _etc(etc)
    os.utime(j(top, b"srv"), ns=(MTIME_NS, MTIME_NS + 1))
    os.chmod(j(top, b"srv"), 0o755)
    return {"data": data, "etc": etc, "ms": j(etc, b"ms"), "hostname": j(etc, b"hostname")}


def _kinds(data: bytes) -> None:
    write(j(data, b"plain.txt"), b"master plain\n")
    write(j(data, b"empty"), b"")
    os.makedirs(j(data, b"empty-dir"))
    os.makedirs(j(data, b"deep/a/b/c/d"))
    write(j(data, b"deep/a/b/c/d/leaf"), b"deep\n")
    os.symlink(b"plain.txt", j(data, b"link-relative"))
    os.symlink(b"/etc/hostname", j(data, b"link-absolute"))
    os.symlink(b"nowhere/at/all", j(data, b"link-dangling"))
    os.symlink(b"target-\xff-bytes", j(data, b"link-bytes"))
    write(j(data, b"hard-a"), b"hardlinked\n")
    os.link(j(data, b"hard-a"), j(data, b"hard-b"))
    os.link(j(data, b"hard-a"), j(data, b"deep/a/hard-c"))
    os.mkfifo(j(data, b"fifo"))
    os.mknod(j(data, b"char-null"), stat.S_IFCHR | 0o644, os.makedev(1, 3))
    os.mknod(j(data, b"block-loop"), stat.S_IFBLK | 0o640, os.makedev(7, 200))
    with open(j(data, b"sparse"), "wb") as handle:
        handle.truncate(SPARSE_SIZE)
        handle.seek(SPARSE_SIZE // 2)
        handle.write(os.urandom(SPARSE_DATA))
    write(j(data, b"random.bin"), os.urandom(3 << 20))
    # Known limits (docs/fidelity.md): restic keeps no sockets, and a hardlink
    # whose other name is outside `paths` comes back as a file of its own.
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(j(data, b"socket"))
    write(j(data, b"hard-out"), b"linked from outside paths\n")
    os.makedirs(j(data, b"..", b"..", b"unrestored"))
    os.link(j(data, b"hard-out"), j(data, b"..", b"..", b"unrestored", b"hard-out"))


def _names(data: bytes) -> None:
    folder = j(data, b"names")
    for name in ODD_NAMES:
        write(j(folder, name), b"named " + name + b"\n")
        os.makedirs(j(folder, b"dir-" + name))
        write(j(folder, b"dir-" + name, b"inside"), name)


def _modes_and_owners(data: bytes) -> None:
    folder = j(data, b"modes")
    write(j(folder, b"setuid"), b"#!/bin/sh\n", 0o4755)
    write(j(folder, b"setgid"), b"#!/bin/sh\n", 0o2755)
    write(j(folder, b"none"), b"no rights\n", 0o000)
    write(j(folder, b"group-only"), b"g\n", 0o070)
    os.makedirs(j(folder, b"sticky"))
    os.chmod(j(folder, b"sticky"), 0o1777)
    os.makedirs(j(folder, b"setgid-dir"))
    os.chmod(j(folder, b"setgid-dir"), 0o2770)
    os.makedirs(j(folder, b"closed-dir"))
    write(j(folder, b"closed-dir/in"), b"in a 000 folder\n")
    owned = write(j(folder, b"owned"), b"by nobody known\n", 0o640)
    os.chown(owned, UID, GID)
    os.chown(j(folder, b"setgid-dir"), UID, GID)
    os.symlink(b"owned", j(folder, b"owned-link"))
    os.chown(j(folder, b"owned-link"), UID, GID, follow_symlinks=False)
    # chown clears setuid: set it again after, as an admin would have.
    setuid_owned = write(j(folder, b"setuid-owned"), b"x\n")
    os.chown(setuid_owned, UID, GID)
    os.chmod(setuid_owned, 0o6750)
    os.chmod(j(folder, b"closed-dir"), 0o000)


def _metadata(data: bytes) -> None:
    folder = j(data, b"meta")
    xattr = write(j(folder, b"xattr"), b"x\n")
    os.setxattr(xattr, b"user.plain", b"value")
    os.setxattr(xattr, b"user.binary", b"\x00\xff\x01 bytes")
    os.makedirs(j(folder, b"xattr-dir"))
    os.setxattr(j(folder, b"xattr-dir"), b"user.on-a-folder", b"yes")
    acl = write(j(folder, b"acl"), b"acl\n", 0o640)
    os.makedirs(j(folder, b"acl-default"))
    if have("setfacl"):
        subprocess.run(["setfacl", "-m", f"u:{UID}:rwx,g:{GID}:r", acl], check=True)
        subprocess.run(
            ["setfacl", "-d", "-m", f"u:{UID}:rwx", j(folder, b"acl-default")], check=True
        )
    caps = write(j(folder, b"caps"), b"#!/bin/sh\n", 0o755)
    if have("setcap"):
        subprocess.run(["setcap", "cap_net_bind_service,cap_net_raw+ep", caps], check=True)
    timed = write(j(folder, b"ns-mtime"), b"t\n")
    os.utime(timed, ns=(MTIME_NS, MTIME_NS))
    os.symlink(b"ns-mtime", j(folder, b"ns-mtime-link"))
    os.utime(j(folder, b"ns-mtime-link"), ns=(MTIME_NS, MTIME_NS + 7), follow_symlinks=False)
    old = write(j(folder, b"before-1970"), b"old\n")
    os.utime(old, ns=(-86_400_000_000_123, -86_400_000_000_123))


def _type_changes_master(data: bytes) -> None:
    """Entries whose type the slave's older tree has different (see older_slave)."""
    folder = j(data, b"types")
    os.makedirs(folder)
    os.symlink(b"elsewhere", j(folder, b"dir-to-link"))
    write(j(folder, b"dir-to-file"), b"now a file\n")
    os.makedirs(j(folder, b"file-to-dir"))
    write(j(folder, b"file-to-dir/inside"), b"now a folder\n")
    os.makedirs(j(folder, b"link-to-dir"))
    write(j(folder, b"link-to-dir/inside"), b"now a real folder\n")
    os.symlink(b"../plain.txt", j(folder, b"file-to-link"))
    write(j(folder, b"link-to-file"), b"now a file\n")
    os.makedirs(j(folder, b"dir-to-fifo-parent"))
    os.mkfifo(j(folder, b"dir-to-fifo-parent/dir-to-fifo"))


def _etc(etc: bytes) -> None:
    """A path with machine-specific entries, and siblings named with bytes that are not UTF-8."""
    write(j(etc, b"app.conf"), b"listen 80\n")
    write(j(etc, b"caf\xe9.conf"), b"latin-1 name\n")
    write(j(etc, b"\xff"), b"one byte name\n")
    write(j(etc, b"d\xfe/inside"), b"in a non-UTF-8 folder\n")
    write(j(etc, b"hostname"), b"master\n")
    write(j(etc, b"ms/id"), b"master machine id\n")
    write(j(etc, b"ms/ssh_host_key"), b"master key\n")


def older_slave(slave_top: bytes, elsewhere: bytes) -> None:
    """What the slave holds before promote: older, different versions of the master's tree."""
    data, etc = j(slave_top, b"srv", b"data"), j(slave_top, b"etc")
    write(j(data, b"plain.txt"), b"slave's older plain, longer than the master's\n")
    write(j(data, b"empty"), b"not empty on the slave\n")
    write(j(data, b"stale.txt"), b"only on the slave\n")
    write(j(data, b"stale-\xff\xfe"), b"stale with a byte name\n")
    os.makedirs(j(data, b"stale-dir/sub"))
    write(j(data, b"stale-dir/sub/f"), b"stale\n")
    write(j(data, b"hard-b"), b"not a hardlink on the slave\n")
    write(j(data, b"sparse"), b"small on the slave\n")
    write(j(data, b"names/bad\xff\xfe"), b"older\n")
    write(j(data, b"names/latin1-caf\xe9"), b"older\n")
    write(j(data, b"modes/setuid"), b"older\n", 0o755)
    write(j(data, b"meta/xattr"), b"older\n")
    os.setxattr(j(data, b"meta/xattr"), b"user.stale", b"slave only")
    types = j(data, b"types")
    write(j(types, b"dir-to-link/sub/f"), b"a folder on the slave\n")
    write(j(types, b"dir-to-file/f"), b"a folder on the slave\n")
    write(j(types, b"file-to-dir"), b"a file on the slave\n")
    os.makedirs(elsewhere, exist_ok=True)
    os.symlink(elsewhere, j(types, b"link-to-dir"))
    write(j(types, b"file-to-link"), b"a file on the slave\n")
    os.symlink(b"../plain.txt", j(types, b"link-to-file"))
    write(j(types, b"dir-to-fifo-parent/dir-to-fifo/f"), b"a folder on the slave\n")
    write(j(etc, b"app.conf"), b"listen 8080 (older)\n")
    write(j(etc, b"caf\xe9.conf"), b"older latin-1\n")
    write(j(etc, b"stale.conf"), b"stale in a folder with machine-specific entries\n")
    write(j(etc, b"stale-\xfd.conf"), b"stale, byte name\n")
    write(j(etc, b"hostname"), b"slave\n")
    write(j(etc, b"ms/id"), b"slave machine id\n")
    write(j(etc, b"ms/slave-only"), b"slave only\n")
    write(j(etc, b"ms/\xfa-byte"), b"slave only, byte name\n")
    write(j(slave_top, b"srv/other/keep"), b"beside paths: never touched\n")
    write(j(slave_top, b"outside/keep"), b"outside paths: never touched\n")
    os.chmod(j(slave_top, b"srv"), 0o750)


# ---------------------------------------------------------------- the walker


def kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISREG, "file"),
        (stat.S_ISDIR, "dir"),
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISFIFO, "fifo"),
        (stat.S_ISCHR, "chardev"),
        (stat.S_ISBLK, "blockdev"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return name
    return "?"


def xattrs(path: bytes) -> Dict[bytes, str]:
    """Every extended attribute: user.*, system.posix_acl_* (ACLs), security.capability."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for name in names:
        try:
            out[os.fsencode(name)] = os.getxattr(path, name, follow_symlinks=False).hex()
        except OSError as exc:
            out[os.fsencode(name)] = f"unreadable: {exc.strerror}"
    return dict(sorted(out.items()))


def entry(path: bytes) -> Tuple[Dict[str, Any], os.stat_result]:
    info = os.lstat(path)
    what = kind(info.st_mode)
    item: Dict[str, Any] = {
        "type": what,
        "mode": oct(stat.S_IMODE(info.st_mode)),
        "uid": info.st_uid,
        "gid": info.st_gid,
        "mtime_ns": info.st_mtime_ns,
        "xattrs": xattrs(path),
    }
    if what == "file":
        item["size"] = info.st_size
        item["sha256"] = digest(path)
        item["sparse"] = info.st_blocks * 512 < info.st_size
        item["nlink"] = info.st_nlink
    elif what == "symlink":
        item["target"] = os.readlink(path)
    elif what in ("chardev", "blockdev"):
        item["rdev"] = (os.major(info.st_rdev), os.minor(info.st_rdev))
    return item, info


def digest(path: bytes) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def walk(top: bytes, skip: Tuple[bytes, ...] = ()) -> Dict[bytes, Dict[str, Any]]:
    """Relative path -> entry, for top and everything below it (bytes paths, lstat, no following)."""
    out: Dict[bytes, Dict[str, Any]] = {}
    inodes: Dict[Tuple[int, int], List[bytes]] = {}
    todo = [b""]
    while todo:
        rel = todo.pop()
        if any(rel == s or rel.startswith(s + b"/") for s in skip):
            continue
        path = j(top, rel) if rel else top
        item, info = entry(path)
        out[rel] = item
        if item["type"] == "file" and info.st_nlink > 1:
            inodes.setdefault((info.st_dev, info.st_ino), []).append(rel)
        if item["type"] == "dir":
            todo += [j(rel, name) if rel else name for name in os.listdir(path)]
    for group in inodes.values():
        for rel in group:
            out[rel]["hardlinks"] = sorted(group)
    return out


def differences(
    master: Dict[bytes, Dict[str, Any]], slave: Dict[bytes, Dict[str, Any]]
) -> List[Tuple[bytes, str, Any, Any]]:
    """(path, field, master's, slave's) for every field that differs; missing and extra entries too."""
    out: List[Tuple[bytes, str, Any, Any]] = []
    for rel in sorted(set(master) | set(slave)):
        mine: Optional[Dict[str, Any]] = master.get(rel)
        theirs: Optional[Dict[str, Any]] = slave.get(rel)
        if mine is None or theirs is None:
            out.append((rel, "exists", mine is not None, theirs is not None))
            continue
        for key in sorted(set(mine) | set(theirs)):
            if mine.get(key) != theirs.get(key):
                out.append((rel, key, mine.get(key), theirs.get(key)))
    return out
