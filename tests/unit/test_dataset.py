"""bench/dataset.py: the tree the tests, the demo and the benchmarks are made of."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest

from bench import dataset

SCRIPT = Path(dataset.__file__)


def files(root: Path) -> Dict[str, str]:
    return {e.path: e.data for e in dataset.entries(root) if e.kind == "file"}


def sizes(root: Path) -> int:
    return sum((root / rel).stat().st_size for rel in files(root))


def test_same_seed_same_tree_other_seed_another(tmp_path: Path):
    dataset.create(tmp_path / "a", files=120, mib=1, seed=4)
    dataset.create(tmp_path / "b", files=120, mib=1, seed=4)
    dataset.create(tmp_path / "c", files=120, mib=1, seed=5)
    assert dataset.digest(tmp_path / "a") == dataset.digest(tmp_path / "b")
    assert dataset.digest(tmp_path / "a") != dataset.digest(tmp_path / "c")
    # Not just other names: the same paths hold other bytes.
    a, c = files(tmp_path / "a"), files(tmp_path / "c")
    common = set(a) & set(c)
    assert common and all(a[p] != c[p] for p in common)


def test_the_tree_has_the_files_and_size_asked_for_in_three_kinds(tmp_path: Path):
    made = dataset.create(tmp_path, files=300, mib=3, seed=1)
    found = files(tmp_path)
    assert len(found) == len(made) == 300
    assert abs(sizes(tmp_path) - 3 * dataset.MIB) < 0.05 * dataset.MIB
    kinds = {p.kind for p in made}
    assert kinds == {"mail", "doc", "blob"}
    mail = next(p for p in made if p.kind == "mail")
    assert (tmp_path / mail.path).read_bytes().startswith(b"From: ")
    blob = next(p for p in made if p.kind == "blob")
    assert len(set((tmp_path / blob.path).read_bytes()[:4096])) > 200  # incompressible


def test_modes_do_not_depend_on_the_umask(tmp_path: Path):
    old = os.umask(0o077)
    try:
        dataset.create(tmp_path / "tight", files=30, mib=1, seed=2)
    finally:
        os.umask(old)
    dataset.create(tmp_path / "loose", files=30, mib=1, seed=2)
    assert dataset.digest(tmp_path / "tight") == dataset.digest(tmp_path / "loose")


@pytest.mark.parametrize("percent", [5, 10, 20])
def test_mutate_changes_percent_of_the_files_the_same_way_each_time(tmp_path: Path, percent):
    for name in ("a", "b"):
        dataset.create(tmp_path / name, files=400, mib=2, seed=1)
    before = files(tmp_path / "a")
    done = dataset.mutate(tmp_path / "a", percent, seed=9)
    after = files(tmp_path / "a")

    changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
    assert len(changed) == round(400 * percent / 100)
    assert changed == set(done.changed)
    assert set(done.deleted) == set(before) - set(after)
    assert set(done.added) == set(after) - set(before)

    dataset.mutate(tmp_path / "b", percent, seed=9)
    assert dataset.digest(tmp_path / "a") == dataset.digest(tmp_path / "b")


def test_mutate_twice_with_one_seed_still_changes_the_tree(tmp_path: Path):
    dataset.create(tmp_path, files=50, mib=1, seed=1)
    first = dataset.digest(tmp_path)
    dataset.mutate(tmp_path, 10, seed=3)
    second = dataset.digest(tmp_path)
    dataset.mutate(tmp_path, 10, seed=3)
    assert len({first, second, dataset.digest(tmp_path)}) == 3


def test_digest_notices_content_mode_links_and_empty_dirs(tmp_path: Path):
    dataset.create(tmp_path, files=30, mib=1, seed=1)
    some = tmp_path / sorted(files(tmp_path))[0]
    seen = {dataset.digest(tmp_path)}

    def changed() -> bool:
        now = dataset.digest(tmp_path)
        new = now not in seen
        seen.add(now)
        return new

    some.chmod(0o600)
    assert changed(), "a mode change"
    (tmp_path / "link").symlink_to("var/mail")
    assert changed(), "a new symlink"
    (tmp_path / "link").unlink()
    (tmp_path / "link").symlink_to("home")
    assert changed(), "a symlink's target"
    (tmp_path / "empty").mkdir()
    assert changed(), "an empty directory"
    data = some.read_bytes()
    some.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    assert changed(), "one bit of content"
    some.rename(tmp_path / "moved")
    assert changed(), "a rename"


def test_digest_does_not_follow_links(tmp_path: Path):
    (tmp_path / "tree").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "tree" / "dir-link").symlink_to(tmp_path / "outside")
    before = dataset.digest(tmp_path / "tree")
    (tmp_path / "outside" / "file").write_text("not part of the tree\n")
    assert dataset.digest(tmp_path / "tree") == before


def test_command_line_matches_the_module(tmp_path: Path):
    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, str(SCRIPT), str(tmp_path / "cli"), *args],
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout.strip()

    run("--files", "60", "--mib", "1", "--seed", "3")
    dataset.create(tmp_path / "module", files=60, mib=1, seed=3)
    assert run("--digest") == dataset.digest(tmp_path / "module")
    run("--mutate", "10", "--seed", "4")
    dataset.mutate(tmp_path / "module", 10, seed=4)
    assert run("--digest") == dataset.digest(tmp_path / "module")
