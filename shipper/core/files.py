"""Writing shipper's own files: whole or not at all, root-only by default."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def replace_file(path: Path, text: str, mode: int = 0o600, sync: bool = False) -> None:
    """Replace path with text atomically: a reader or a crash sees the old file or the new one.

    The folder is made 0700 when missing. `sync` also flushes the file and its
    folder to disk, for records that must survive a power cut (promote's
    progress, secrets, the config).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
                if sync:
                    handle.flush()
                    os.fsync(handle.fileno())
        except OSError as exc:
            # A full disk fails the write, whose error names no file: name it.
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        os.chmod(tmp, mode)  # the umask may have narrowed it
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if sync:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def not_a_folder(path: str) -> str:
    """Why path cannot be used as a folder, or "": it, or what exists on its way, is something else."""
    where = os.path.abspath(path)
    while not os.path.lexists(where):
        where = os.path.dirname(where)
    if os.path.isdir(where):
        return ""
    if where == os.path.abspath(path):
        return f"{path} is not a folder"
    return f"{path}: {where} on its way is not a folder"
