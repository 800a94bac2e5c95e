"""Busy servers: files that vanish while a set is taken are noted, not failures.

Against real restic, with a writer that creates, renames and deletes files in
a configured path during every run. The restic messages in the first tests are
the exact lines restic 0.18.0 printed for each case here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Dict, Iterator, List, Set

import pytest

from shipper.core import config
from shipper.core.restic import backup_item_errors
from shipper.master.snapshot import volatile_errors
from tests.shipperenv import VENV_BIN, ShipperEnv

EXIT_PARTIAL = 4

# What restic 0.18.0 printed (restic backup --json) for each case.
GONE_BEFORE_OPEN = {
    "message_type": "error",
    "error": {"message": "lstat /srv/spool/dir12/s4: no such file or directory"},
    "during": "archival",
    "item": "/srv/spool/dir12/s4",
}
GONE_AFTER_OPEN = {
    "message_type": "error",
    "error": {
        "message": "incomplete metadata for /srv/spool/f7: xattr.list /srv/spool/f7: "
        "no such file or directory"
    },
    "during": "archival",
    "item": "/srv/spool/f7",
}
FOLDER_GONE = {
    "message_type": "error",
    "error": {
        "message": "readdirnames /srv/spool/dir9 failed: readdirent /srv/spool/dir9: "
        "no such file or directory"
    },
    "during": "archival",
    "item": "/srv/spool/dir9",
}
SCANNER_ONLY = {
    "message_type": "error",
    "error": {"message": "lstat /srv/spool/f8: no such file or directory"},
    "during": "scan",
    "item": "/srv/spool/f8",
}
DENIED = {
    "message_type": "error",
    "error": {"message": "open /srv/app/locked: permission denied"},
    "during": "archival",
    "item": "/srv/app/locked",
}
IO_ERROR = {
    "message_type": "error",
    "error": {"message": "failed to save /srv/disk/tail: read /srv/disk/tail: input/output error"},
    "during": "archival",
    "item": "/srv/disk/tail",
    "a_field_restic_may_add_later": 1,
}


def test_restic_errors_tell_vanished_from_unreadable():
    messages = [GONE_BEFORE_OPEN, GONE_AFTER_OPEN, FOLDER_GONE, SCANNER_ONLY, DENIED, IO_ERROR]
    errors = backup_item_errors([*messages, {"message_type": "summary"}])
    assert [e.item for e in errors if e.vanished] == [
        "/srv/spool/dir12/s4",
        "/srv/spool/f7",
        "/srv/spool/dir9",
    ]
    assert [e.item for e in errors if not e.vanished] == ["/srv/app/locked", "/srv/disk/tail"]


def test_volatile_folders_note_unreadable_files_inside_them_only():
    errors = backup_item_errors([DENIED, IO_ERROR, GONE_BEFORE_OPEN])
    noted = volatile_errors(errors, ["/srv/disk", "/srv/ap"])
    assert [e.item for e in noted] == ["/srv/disk/tail"]


def test_volatile_is_a_list_of_absolute_folders():
    cfg = config.parse("repository: {url: /r}\nvolatile: [/var/spool/postfix]\n", "x.yml")
    assert cfg.volatile == ["/var/spool/postfix"]
    assert config.parse("repository: {url: /r}\n", "x.yml").volatile == []
    with pytest.raises(config.ConfigError) as caught:
        config.parse("repository: {url: /r}\nvolatile: [spool]\n", "x.yml")
    assert caught.value.problems == ["x.yml:2: volatile[0]: 'spool' must be an absolute path"]


# ---------------------------------------------------------------- against real restic


class Churn:
    """Creates, renames and deletes files in `root` until stopped, like a mail queue.

    Files appear whole (written under a dot name, then renamed) and never change
    afterwards, so any file the set holds must equal the file still there.
    """

    def __init__(self, root: Path):
        self.root = root
        self.stop = threading.Event()
        self.made = 0
        root.mkdir(parents=True, exist_ok=True)

    def run(self) -> None:
        # Folders of messages that come and go whole, and a large file that is replaced
        # and deleted (no name is used twice): restic 0.18 meets these between its listing and its read every
        # run here, where single random deletions in one folder it almost never meets.
        i = 0
        while not self.stop.is_set():
            i += 1
            folder = self.root / f"q{i}"
            folder.mkdir()
            for k in range(30):
                self._put(folder / f"m{k}", os.urandom(200_000 if k % 10 == 0 else 100))
            if i > 5:
                shutil.rmtree(self.root / f"q{i - 5}", ignore_errors=True)
            big = self.root / f"big{i}"
            self._put(big, os.urandom(1_000_000))
            if i % 2:
                big.rename(big.with_name(big.name + ".sent"))
            for old in (f"big{i - 4}", f"big{i - 4}.sent"):
                with contextlib.suppress(FileNotFoundError):
                    (self.root / old).unlink()
            self.made += 31

    @staticmethod
    def _put(path: Path, data: bytes) -> None:
        tmp = path.with_name("." + path.name)
        tmp.write_bytes(data)
        os.rename(tmp, path)


@contextlib.contextmanager
def churning(root: Path) -> Iterator[Churn]:
    churn = Churn(root)
    worker = threading.Thread(target=churn.run, daemon=True)
    worker.start()
    try:
        yield churn
    finally:
        churn.stop.set()
        worker.join()


def whole_files(root: Path) -> Dict[str, str]:
    """Relative path -> digest of every file, while the writer may delete any of them;
    its half-written dot files are left out."""
    out = {}
    for folder, _, names in os.walk(root):  # os.walk skips a folder that vanished
        for name in names:
            path = Path(folder, name)
            if name.startswith(".") or path.is_symlink():
                continue
            with contextlib.suppress(FileNotFoundError):
                out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def manifest_of(env: ShipperEnv, set_id: str) -> dict:
    """The set's newest manifest, read with plain restic."""
    found = json.loads(env.restic("snapshots", "--json", "--tag", f"shipper-set:{set_id}").stdout)
    carrier = max(
        (s for s in found if "shipper-part:manifest" in s["tags"]), key=lambda s: s["time"]
    )
    listing = env.restic("ls", "--json", carrier["id"]).stdout.splitlines()
    nodes = [json.loads(line) for line in listing if line.startswith("{")]
    path = next(n["path"] for n in nodes if n.get("name") == "shipper-manifest.json")
    return json.loads(env.restic("dump", carrier["id"], path).stdout)


@pytest.fixture
def busy(shipper_env: ShipperEnv) -> ShipperEnv:
    """A master with a small stable tree and a spool the writer churns."""
    env = shipper_env
    app = env.src / "app"
    app.mkdir()
    for i in range(50):
        (app / f"page{i}.html").write_text(f"page {i}\n" * (i + 1))
    env.run("init", check=True)
    return env


def snapshot_json(env: ShipperEnv, *prefix: str) -> subprocess.CompletedProcess:
    cmd = [*prefix, str(VENV_BIN / "shipper"), "snapshot", "--json"]
    return subprocess.run(cmd, env=env.env(), capture_output=True, text=True, timeout=120)


def test_ten_runs_with_a_busy_spool_are_complete_and_count_what_vanished(busy: ShipperEnv):
    env = busy
    counts: List[int] = []
    with churning(env.src / "spool") as churn:
        for _ in range(10):
            result = snapshot_json(env)
            assert result.returncode == 0, result.stderr
            run = json.loads(result.stdout)
            assert run["status"] == "complete", run
            assert run["unreadable"] == []
            counts.append(run["vanished"])
    listed = {item["id"]: item for item in json.loads(env.run("sets", "--json").stdout)}
    assert len(listed) == 10 and {s["status"] for s in listed.values()} == {"complete"}
    assert sorted(s["vanished"] for s in listed.values()) == sorted(counts)
    assert churn.made > 200
    assert sum(counts) > 0, "the writer never raced restic: the test proves nothing"
    newest = max(listed.values(), key=lambda s: s["id"])
    if newest["vanished"]:
        files = next(p for p in manifest_of(env, newest["id"])["parts"] if p["name"] == "files")
        assert files["outcome"] == "ok"
        assert files["details"]["vanished"] == newest["vanished"]
        assert len(files["details"]["vanished_paths"]) == min(newest["vanished"], 20)
    table = env.run("sets", check=True).stdout
    assert "VANISHED" in table
    status = json.loads(env.run("status", "--json").stdout)
    assert status["repository"]["newest_vanished"] == newest["vanished"]
    assert status["last_run"]["vanished"] == newest["vanished"]


def test_restore_of_a_busy_set_is_exact_for_every_file_still_there(
    busy: ShipperEnv, tmp_path: Path
):
    env = busy
    spool = env.src / "spool"
    with churning(spool) as churn:
        while churn.made < 150:
            time.sleep(0.01)
        for _ in range(4):  # until a run meets a file that vanishes
            before = set(whole_files(env.src))
            run = json.loads(snapshot_json(env).stdout)
            after = whole_files(env.src)
            assert run["status"] == "complete", run
            if run["vanished"]:
                break
    assert run["vanished"], "no run met a vanishing file"
    target = tmp_path / "restored"
    env.run("restore", run["set_id"], "--target", str(target), check=True)
    restored = whole_files(target / env.src.relative_to("/"))
    kept_throughout: Set[str] = before & set(after)
    assert kept_throughout - set(restored) == set(), "a file that never left is missing"
    differ = [rel for rel in set(restored) & set(after) if restored[rel] != after[rel]]
    assert differ == []
    app = {rel: d for rel, d in after.items() if rel.startswith("app")}
    assert {rel: restored.get(rel) for rel in app} == app


def test_unreadable_file_still_makes_a_busy_set_partial(busy: ShipperEnv):
    env = busy
    locked = env.src / "app" / "locked"
    locked.write_text("secret")
    locked.chmod(0)
    no_dac = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    with churning(env.src / "spool"):
        result = snapshot_json(env, *no_dac)
    assert result.returncode == EXIT_PARTIAL, result.stderr
    run = json.loads(result.stdout)
    assert run["status"] == "partial" and run["unreadable"] == [str(locked)]
    [item] = json.loads(env.run("sets", "--json", check=True).stdout)
    assert item["status"] == "partial"


def test_unreadable_file_in_a_volatile_folder_is_noted(busy: ShipperEnv):
    env = busy
    spool = env.src / "spool"
    spool.mkdir()
    locked = spool / "held"
    locked.write_text("a message being written")
    locked.chmod(0)
    env.write_config(volatile=[str(spool)])
    result = snapshot_json(env, "setpriv", "--bounding-set=-dac_override,-dac_read_search")
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["status"] == "complete" and run["noted"] == 1
    assert run["noted_paths"] == [f"{locked}: open {locked}: permission denied"]
    [item] = json.loads(env.run("sets", "--json", check=True).stdout)
    assert (item["status"], item["noted"]) == ("complete", 1)


# ---------------------------------------------------------------- an I/O error, for root


@contextlib.contextmanager
def disk_with_a_bad_block(mountpoint: Path, image: Path) -> Iterator[Path]:
    """A loop-mounted ext2 whose last file lies past the device's end: reading it is EIO.

    The kernel here has no device-mapper, so no `error` target: the loop device
    is shrunk under the mounted filesystem instead (`losetup -c`), and the
    file's blocks then fail like a dead disk's, for root too.
    """
    if not shutil.which("losetup") or not shutil.which("mkfs.ext2"):
        pytest.skip("needs losetup and mkfs.ext2")
    subprocess.run(["truncate", "-s", "8M", str(image)], check=True)
    subprocess.run(["mkfs.ext2", "-q", "-F", str(image)], check=True)
    made = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"no loop device: {made.stderr.strip()}")
    device = made.stdout.strip()
    mountpoint.mkdir()
    try:
        if subprocess.run(["mount", device, str(mountpoint)]).returncode != 0:
            pytest.skip("cannot mount a loop device here")
        (mountpoint / "filler").write_bytes(b"\0" * 6_000_000)
        (mountpoint / "tail").write_bytes(os.urandom(500_000))
        subprocess.run(["umount", str(mountpoint)], check=True)  # drops the cached pages
        subprocess.run(["mount", "-o", "ro", device, str(mountpoint)], check=True)
        subprocess.run(["truncate", "-s", "6500000", str(image)], check=True)
        subprocess.run(["losetup", "-c", device], check=True)
        yield mountpoint / "tail"
    finally:
        subprocess.run(["umount", str(mountpoint)], capture_output=True)
        subprocess.run(["losetup", "-d", device], capture_output=True)


def test_io_error_makes_the_set_partial_and_is_noted_in_a_volatile_folder(
    busy: ShipperEnv, tmp_path: Path
):
    env = busy
    with disk_with_a_bad_block(env.src / "disk", tmp_path / "disk.img") as bad:
        failed = json.loads(snapshot_json(env).stdout)
        env.write_config(volatile=[str(bad.parent)])
        noted = json.loads(snapshot_json(env).stdout)
    assert failed["status"] == "partial" and str(bad) in failed["unreadable"]
    assert noted["status"] == "complete" and noted["unreadable"] == []
    assert f"{bad}: failed to save {bad}: read {bad}: input/output error" in noted["noted_paths"]


# ---------------------------------------------------------------- the mail queue hook

QUEUE_HOOK = (
    Path(__file__).resolve().parent.parent / "hooks/pre-snapshot.d/20-postfix-queue.disabled"
)


def fake_postfix(bin_dir: Path, queue: Path, log: Path) -> None:
    """`postfix` and `postconf` stand-ins that log what the hook asks of them."""
    bin_dir.mkdir()
    (bin_dir / "postfix").write_text(f'#!/bin/sh\necho "postfix $1" >>{log}\n')
    (bin_dir / "postconf").write_text(f"#!/bin/sh\necho {queue}\n")
    (bin_dir / "systemctl").write_text("#!/bin/sh\nexit 3\n")  # not under systemd here
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)


def test_postfix_queue_hook_copies_the_queue_while_postfix_is_stopped(tmp_path: Path):
    queue, log, export = tmp_path / "spool", tmp_path / "calls", tmp_path / "export"
    (queue / "deferred" / "A").mkdir(parents=True)
    (queue / "deferred" / "A" / "A1B2C3").write_text("a deferred message")
    (queue / "active").mkdir()
    export.mkdir()
    fake_postfix(tmp_path / "bin", queue, log)
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "SHIPPER_EXPORT_DIR": str(export)}
    subprocess.run(["sh", str(QUEUE_HOOK)], env=env, check=True, timeout=30)
    assert log.read_text().split("\n")[:-1] == ["postfix status", "postfix stop", "postfix start"]
    copied = export / "postfix-queue" / "deferred" / "A" / "A1B2C3"
    assert copied.read_text() == "a deferred message"

    # A copy that fails (here: the export already holds one) still starts Postfix again.
    log.unlink()
    failed = subprocess.run(["sh", str(QUEUE_HOOK)], env=env, capture_output=True, timeout=30)
    assert failed.returncode != 0
    assert log.read_text().split("\n")[:-1] == ["postfix status", "postfix stop", "postfix start"]
