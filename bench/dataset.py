#!/usr/bin/env python3
"""A deterministic server-like file tree, for the tests, the demo and the benchmarks.

  dataset.py DIR [--files N] [--mib M] [--seed S]    create a tree of N files, about M MiB
  dataset.py DIR --mutate PCT [--seed S]             change PCT% of its files
  dataset.py DIR --digest                            print one digest of the whole tree

The tree holds what a small office server does: many small mail-like text
files (var/mail), mid-size text documents (home/*/docs) and a few large
incompressible blobs (srv/vm-images). The same arguments give the same bytes
and the same modes on every machine (the umask plays no part), so two runs,
or a tree and its restored copy, compare by digest. As a module:
create(), mutate() and digest(), and entries() for a per-path view.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Sequence, Set, Union

PathLike = Union[str, os.PathLike]

MIB = 1 << 20
FILE_MODE = 0o644
BLOB_MODE = 0o600
DIR_MODE = 0o755
CHUNK = MIB  # blobs are written a chunk at a time: memory stays flat for any size
MAIL_SIZES = (1500, 12000)  # bytes, uniform: a short message to one with a long thread quoted
MIN_DOC = 512
BLOB_EVERY_MIB = 200  # one more blob for every 200 MiB of tree

# 64 words, so that each of the 256 values of a random byte stands for one.
WORDS = (
    b"invoice meeting report server backup customer project quarter update please "
    b"attached regards thanks schedule budget contract delivery order payment review "
    b"draft final minutes agenda office printer network password account access "
    b"support ticket request approved pending urgent monday tuesday wednesday "
    b"thursday friday morning afternoon tomorrow yesterday week month year team "
    b"manager sales planning forecast summary details question answer call note "
    b"the and for with data"
).split()  # noqa: SIM905 (one line of prose reads better than 64 of list)
assert len(WORDS) == 64, len(WORDS)
# One random byte -> a word and what follows it: a space, or (1 byte in 13) the end of a line.
# A single join over map() makes text at C speed.
TOKENS = tuple(WORDS[b & 63] + (b"\n" if b % 13 == 12 else b" ") for b in range(256))
PEOPLE = ["anna", "bernd", "carla", "dieter", "eva", "frank", "greta", "hans"]


@dataclass(frozen=True)
class Planned:
    """One file of a tree to be made: where, what kind of content, how many bytes."""

    path: str  # relative, "/"-separated
    kind: str  # "mail", "doc" or "blob"
    size: int


@dataclass(frozen=True)
class Entry:
    """One path of an existing tree, as digest() sees it."""

    path: str  # relative, "/"-separated
    kind: str  # "file", "dir", "link" or "other" (fifo, socket, device)
    mode: int  # permission bits (stat.S_IMODE)
    data: str  # sha256 of a file's content, a link's target, "" otherwise


# ---------------------------------------------------------------- content


def text(rng: random.Random, size: int) -> bytes:
    """Exactly size bytes of word salad in lines: compressible, unique per generator."""
    out: List[bytes] = []
    have = 0
    while have < size:
        # A word and its separator are about 8 bytes; ask for a few more than the rest needs.
        piece = b"".join(map(TOKENS.__getitem__, rng.randbytes((size - have) // 7 + 16)))
        out.append(piece)
        have += len(piece)
    return b"".join(out)[:size]


def mail(rng: random.Random, size: int) -> bytes:
    """A message: headers, a blank line, a body; exactly size bytes (headers may be cut)."""
    sender, to = rng.sample(PEOPLE, 2)
    sent = 1704067200 + rng.randrange(365 * 86400)  # some time in 2024
    subject = b" ".join(WORDS[b & 63] for b in rng.randbytes(rng.randint(2, 6))).decode()
    head = (
        f"From: {sender.title()} <{sender}@example.com>\n"
        f"To: {to.title()} <{to}@example.com>\n"
        f"Subject: {subject}\n"
        f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime(sent))}\n"
        f"Message-ID: <{rng.getrandbits(64):016x}@example.com>\n"
        "Content-Type: text/plain; charset=utf-8\n\n"
    ).encode()
    return (head + text(rng, max(0, size - len(head))))[:size]


def blob_chunks(rng: random.Random, size: int) -> Iterator[bytes]:
    """size incompressible bytes, a chunk at a time."""
    left = size
    while left > 0:
        n = min(left, CHUNK)
        yield rng.randbytes(n)
        left -= n


def content_rng(seed: object, path: str) -> random.Random:
    """Each file's own generator: its bytes depend on the seed and its path only."""
    return random.Random(f"{seed}:{path}")


# ---------------------------------------------------------------- create


def plan(files: int, mib: float, seed: int) -> List[Planned]:
    """The files of a tree of about `files` files and `mib` MiB.

    Mail takes its natural sizes; what is left of the budget goes a third to
    documents (exponentially distributed sizes, as real ones are) and two
    thirds to the blobs.
    """
    if files < 0 or mib < 0:
        raise ValueError("files and mib must not be negative")
    rng = random.Random(f"plan:{seed}")
    n_blobs = min(files, max(1, int(mib // BLOB_EVERY_MIB))) if mib > 0 else 0
    n_docs = min(files - n_blobs, files // 10)
    n_mail = files - n_blobs - n_docs

    out: List[Planned] = []
    for i in range(n_mail):
        path = f"var/mail/box{i % 60:02d}/cur/{i:07d}.eml"
        out.append(Planned(path, "mail", rng.randint(*MAIL_SIZES)))
    left = max(0, int(mib * MIB) - sum(p.size for p in out))
    if n_docs:
        mean = max(MIN_DOC, left // 3 // n_docs)
        for i in range(n_docs):
            path = f"home/user{i % 40:02d}/docs/{i // 40:04d}/doc{i:06d}.txt"
            size = MIN_DOC + int(rng.expovariate(1 / max(1, mean - MIN_DOC)))
            out.append(Planned(path, "doc", size))
        left = max(0, left - sum(p.size for p in out[n_mail:]))
    for i in range(n_blobs):
        out.append(Planned(f"srv/vm-images/disk{i:03d}.img", "blob", left // n_blobs))
    return out


def write(path: Path, chunks: Iterable[bytes], mode: int) -> None:
    """Write a file with exactly this mode, whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb", closefd=False) as out:
            for chunk in chunks:
                out.write(chunk)
    finally:
        os.close(fd)


def make_dirs(root: Path, rel_dir: str, made: Set[str]) -> None:
    """Create rel_dir and its parents under root, each DIR_MODE, once per run."""
    parts = rel_dir.split("/") if rel_dir else []
    for depth in range(1, len(parts) + 1):
        rel = "/".join(parts[:depth])
        if rel in made:
            continue
        path = root / rel
        path.mkdir(exist_ok=True)
        os.chmod(path, DIR_MODE)
        made.add(rel)


def create(root: PathLike, files: int = 20000, mib: float = 1024, seed: int = 1) -> List[Planned]:
    """Make the tree under root (created if missing); return what was written."""
    top = Path(root)
    top.mkdir(parents=True, exist_ok=True)
    made: Set[str] = set()
    planned = plan(files, mib, seed)
    for item in planned:
        make_dirs(top, item.path.rpartition("/")[0], made)
        rng = content_rng(seed, item.path)
        if item.kind == "blob":
            write(top / item.path, blob_chunks(rng, item.size), BLOB_MODE)
        elif item.kind == "mail":
            write(top / item.path, [mail(rng, item.size)], FILE_MODE)
        else:
            write(top / item.path, [text(rng, item.size)], FILE_MODE)
    return planned


# ---------------------------------------------------------------- mutate


@dataclass
class Mutation:
    """What mutate() did, by relative path."""

    appended: List[str]
    rewritten: List[str]
    deleted: List[str]
    added: List[str]

    @property
    def changed(self) -> List[str]:
        return sorted(self.appended + self.rewritten + self.deleted + self.added)


def regular_files(root: Path) -> List[str]:
    return sorted(e.path for e in entries(root) if e.kind == "file")


def mutate(root: PathLike, percent: float = 10, seed: int = 2) -> Mutation:
    """Change percent% of the tree's files (at least one), as a day on a server would.

    Of the changes, about 45% append to a file (a mailbox, a log), 30%
    overwrite a region in place (a database page, an edited document), 15%
    delete a file and 10% add a new mail. The count of changed paths is
    exactly round(files * percent / 100); the same tree and seed give the
    same result.
    """
    top = Path(root)
    done = Mutation([], [], [], [])
    paths = regular_files(top)
    if percent <= 0 or not paths:
        return done
    count = min(len(paths), max(1, round(len(paths) * percent / 100)))
    rng = random.Random(f"mutate:{seed}")
    for rel in rng.sample(paths, count):
        path = top / rel
        action = rng.random()
        if action < 0.45:
            with open(path, "ab") as out:
                out.write(text(rng, rng.randint(200, 4000)))
            done.appended.append(rel)
        elif action < 0.75:
            rewrite_region(path, rng)
            done.rewritten.append(rel)
        elif action < 0.90:
            path.unlink()
            done.deleted.append(rel)
        else:
            done.added.append(add_mail(top, rng, seed))
    return done


def rewrite_region(path: Path, rng: random.Random) -> None:
    """Overwrite up to 4 KiB at a random offset; every byte of the region changes."""
    size = path.stat().st_size
    if size == 0:
        path.write_bytes(rng.randbytes(64))
        return
    length = min(4096, max(1, size // 10))
    offset = rng.randrange(size - length + 1)
    with open(path, "r+b") as f:
        f.seek(offset)
        old = f.read(length)
        noise = rng.randbytes(length)
        f.seek(offset)
        f.write(bytes(a ^ (b | 1) for a, b in zip(old, noise)))


def add_mail(root: Path, rng: random.Random, seed: int) -> str:
    made: Set[str] = set()
    make_dirs(root, "var/mail/new", made)
    n = 0
    while (root / f"var/mail/new/{seed}-{n:06d}.eml").exists():
        n += 1
    rel = f"var/mail/new/{seed}-{n:06d}.eml"
    write(root / rel, [mail(rng, rng.randint(*MAIL_SIZES))], FILE_MODE)
    return rel


# ---------------------------------------------------------------- digest


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def entries(root: PathLike) -> Iterator[Entry]:
    """Every path under root (root itself not included), sorted, links not followed."""

    def walk(directory: str, prefix: str) -> Iterator[Entry]:
        with os.scandir(directory) as found:
            children = sorted(found, key=lambda e: e.name)
        for child in children:
            rel = prefix + child.name
            st = child.stat(follow_symlinks=False)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                yield Entry(rel, "link", mode, os.readlink(child.path))
            elif stat.S_ISDIR(st.st_mode):
                yield Entry(rel, "dir", mode, "")
                yield from walk(child.path, rel + "/")
            elif stat.S_ISREG(st.st_mode):
                yield Entry(rel, "file", mode, file_sha256(child.path))
            else:
                yield Entry(rel, "other", mode, "")

    return walk(os.fspath(root), "")


def digest(root: PathLike) -> str:
    """One sha256 over every path, its kind, mode, content or link target."""
    h = hashlib.sha256()
    for e in entries(root):
        # No field can hold a NUL byte, so NUL-separated records cannot run into each other.
        for field in (e.kind, f"{e.mode:o}", e.path, e.data):
            h.update(os.fsencode(field) + b"\0")
    return h.hexdigest()


# ---------------------------------------------------------------- command line


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("dir")
    ap.add_argument("--files", type=int, default=20000, help="files to create (20000)")
    ap.add_argument("--mib", type=float, default=1024, help="about this many MiB (1024)")
    ap.add_argument("--seed", type=int, default=1, help="same seed, same bytes (1)")
    ap.add_argument("--mutate", type=float, metavar="PCT", help="change PCT%% of the files")
    ap.add_argument("--digest", action="store_true", help="print the tree's digest")
    args = ap.parse_args(argv)
    if args.digest:
        print(digest(args.dir))
    elif args.mutate is not None:
        mutate(args.dir, args.mutate, args.seed)
    else:
        create(args.dir, args.files, args.mib, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
