"""Files fidelity: a messy master promoted onto an older, different slave comes back exactly.

Real restic, the real CLI. The master tree has every kind of entry and
metadata restic keeps (filetree.build_master); the slave's root already
holds older versions with other contents, stale entries and other types
(filetree.older_slave). After `shipper promote` the two are walked and
compared field by field, the folders above `paths` and every folder's mtime
included. What restic cannot carry is in KNOWN, each with its reason in
docs/fidelity.md ("## Files"); anything else fails.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
import yaml

from tests.fidelity import filetree
from tests.fidelity.filetree import j
from tests.shipperenv import VENV_BIN, ShipperEnv

pytestmark = pytest.mark.slow

# Machine-specific entries (the slave keeps its own) and entries outside `paths`.
PROTECTED = (b"etc/ms", b"etc/hostname")
OUTSIDE = (b"outside", b"srv/other", b"unrestored")

# (path, field) -> why it differs; each is explained in docs/fidelity.md ("## Files").
KNOWN: Dict[Tuple[bytes, str], str] = {
    (b"srv/data/socket", "exists"): "restic does not keep sockets",
    (b"srv/data/hard-out", "nlink"): "its other name is outside paths",
    (b"srv/data/hard-out", "hardlinks"): "its other name is outside paths",
}


class Site:
    """The master (its tree, config and one set) and a way to make slaves that promote it."""

    def __init__(self, base: Path):
        self.env = ShipperEnv(base)
        self.base = base
        self.top = os.fsencode(str(base / "m"))
        self.roles = filetree.build_master(self.top)
        self.env.write_config(
            paths=[os.fsdecode(self.roles["data"]), os.fsdecode(self.roles["etc"])],
            machine_specific=[os.fsdecode(self.roles["ms"]), os.fsdecode(self.roles["hostname"])],
        )
        self.env.run("init", check=True)
        taken = self.env.run("snapshot", "--json", check=True)
        self.set_id = json.loads(taken.stdout)["set_id"]
        assert json.loads(taken.stdout)["status"] == "complete", taken.stdout
        self.master = filetree.walk(self.top)
        self.slaves = 0

    def slave_config(self, name: str) -> Tuple[Path, Path]:
        """A slave's config (role slave, the repository by local path) and its root."""
        folder = self.base / name
        folder.mkdir()
        settings = json.loads(json.dumps(self.env.settings))
        settings.update(role="slave", state_dir=str(folder / "state"))
        settings["repository"]["local_path"] = settings["repository"]["url"]
        config = folder / "shipper.yml"
        config.write_text(yaml.safe_dump(settings, sort_keys=False))
        return config, folder / "root"

    def shipper(self, config: Path, *args: str) -> subprocess.CompletedProcess:
        env = {**self.env.env(), "SHIPPER_CONFIG": str(config)}
        return subprocess.run(
            [str(VENV_BIN / "shipper"), *args], env=env, capture_output=True, timeout=600
        )

    def in_root(self, root: Path, rel: bytes = b"") -> bytes:
        path = os.fsencode(str(root)) + self.top
        return j(path, rel) if rel else path


class Promoted:
    def __init__(self, site: Site, root: Path, elsewhere: Path, before: Dict[bytes, Any]):
        self.site = site
        self.root = root
        self.elsewhere = elsewhere
        self.before = before  # the slave's tree before promote
        self.after = filetree.walk(site.in_root(root))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return Site(tmp_path_factory.mktemp("fidelity-files"))


@pytest.fixture(scope="module")
def promoted(site: Site) -> Promoted:
    config, root = site.slave_config("slave")
    elsewhere = site.base / "elsewhere"
    filetree.older_slave(site.in_root(root), os.fsencode(str(elsewhere)))
    before = filetree.walk(site.in_root(root))
    done = site.shipper(config, "promote", "--yes", "--root", str(root))
    out = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode == 0, out
    assert b"Traceback" not in done.stderr, out
    return Promoted(site, root, elsewhere, before)


def compared(master: Dict[bytes, Any], got: Dict[bytes, Any], skip: Tuple[bytes, ...]) -> List:
    """The differences that are not known restic limits."""

    def kept(tree: Dict[bytes, Any]) -> Dict[bytes, Any]:
        return {
            rel: item
            for rel, item in tree.items()
            if not any(rel == s or rel.startswith(s + b"/") for s in skip)
        }

    found = filetree.differences(kept(master), kept(got))
    return [d for d in found if (d[0], d[1]) not in KNOWN]


def test_promote_of_a_messy_master_onto_an_older_slave_is_exact(promoted: Promoted) -> None:
    """Every entry and field, the folders above `paths` (m, m/srv) and every folder's mtime."""
    site = promoted.site
    assert compared(site.master, promoted.after, PROTECTED + OUTSIDE) == []
    # The known differences are real (measured here), else KNOWN and the docs must shrink.
    found = filetree.differences(site.master, promoted.after)
    assert set(KNOWN) <= {(rel, key) for rel, key, _, _ in found}


def test_names_that_are_not_utf8_beside_machine_specific_paths_are_restored(
    promoted: Promoted,
) -> None:
    """Issue 9: etc holds machine-specific entries, so its siblings are included one by one."""
    for rel in (b"etc/caf\xe9.conf", b"etc/\xff", b"etc/d\xfe", b"etc/d\xfe/inside"):
        assert promoted.after.get(rel) == promoted.site.master[rel], rel
    assert b"etc/stale-\xfd.conf" not in promoted.after
    assert b"srv/data/stale-\xff\xfe" not in promoted.after


def test_type_changes_on_the_slave_become_the_sets_types(promoted: Promoted) -> None:
    """Issue 10: folder<->link<->file<->fifo; a slave's symlink is replaced, never followed."""
    for name in (
        b"dir-to-link",
        b"dir-to-file",
        b"file-to-dir",
        b"file-to-dir/inside",
        b"link-to-dir",
        b"link-to-dir/inside",
        b"file-to-link",
        b"link-to-file",
        b"dir-to-fifo-parent/dir-to-fifo",
    ):
        rel = b"srv/data/types/" + name
        assert promoted.after.get(rel) == promoted.site.master[rel], rel
    assert os.listdir(promoted.elsewhere) == []  # nothing written through the slave's link


def test_folders_end_with_the_sets_metadata_after_stale_entries_go(promoted: Promoted) -> None:
    """Issue 11: etc lost stale entries after restic ran; m and m/srv are above `paths`."""
    for rel in (b"", b"srv", b"etc", b"srv/data", b"srv/data/names"):
        assert promoted.after[rel] == promoted.site.master[rel], rel or b"(top)"


def test_sparse_files_stay_sparse_after_promote_and_restore(
    promoted: Promoted, tmp_path: Path
) -> None:
    """Issue 12: a 1 GiB file with 16 KiB of data takes about 16 KiB, not 1 GiB."""
    site = promoted.site
    rel = b"srv/data/sparse"
    assert site.master[rel]["sparse"]
    assert promoted.after[rel] == site.master[rel]
    assert os.lstat(site.in_root(promoted.root, rel)).st_blocks * 512 < 1 << 20
    restored = site.env.run("restore", "latest", "--target", str(tmp_path / "r"))
    assert restored.returncode == 0, restored.stderr
    path = site.in_root(tmp_path / "r", rel)
    assert os.lstat(path).st_size == filetree.SPARSE_SIZE
    assert os.lstat(path).st_blocks * 512 < 1 << 20


def test_shipper_restore_of_the_messy_tree_is_exact(promoted: Promoted, tmp_path: Path) -> None:
    """`shipper restore` into an empty folder: the whole tree, machine-specific entries included."""
    site = promoted.site
    done = site.env.run("restore", "latest", "--target", str(tmp_path / "r"))
    assert done.returncode == 0, done.stderr
    got = filetree.walk(site.in_root(tmp_path / "r"))
    assert compared(site.master, got, (b"unrestored",)) == []


def test_promote_never_changes_what_is_outside_paths_or_machine_specific(
    promoted: Promoted,
) -> None:
    before, after = promoted.before, promoted.after
    for top in PROTECTED + OUTSIDE:
        mine = {r: i for r, i in before.items() if r == top or r.startswith(top + b"/")}
        theirs = {r: i for r, i in after.items() if r == top or r.startswith(top + b"/")}
        if top in (b"etc/ms", b"etc/hostname"):
            assert theirs == mine, top
        else:
            # The folder's entries are untouched; only mtimes of folders restic set may move.
            assert {r: i for r, i in theirs.items() if i["type"] != "dir"} == {
                r: i for r, i in mine.items() if i["type"] != "dir"
            }, top
