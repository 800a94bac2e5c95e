"""Faults on the destinations, with a master and two slaves in three network namespaces.

Each slave has its own link to the master (tests/netns.py ThreeHosts), so one
can be cut while the other carries on; the S3 store (SeaweedFS) runs inside
the master's namespace, on its loopback. Everything is set up the way an
operator does it: `setup slave` on both slaves, `setup master`, then `setup
destination slave spare` (and `setup destination s3 offsite`). Each test checks
the promise of a row in the README's "What happens when things fail": the run
exits 0 with one line naming the destination, the other destinations get the
set, no half set is ever visible, and the next run catches up, whole.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterator, List

import pytest
import yaml

from shipper.core import config_edit
from tests.netns import ThreeHosts
from tests.seaweed import SeaweedFS
from tests.shipperenv import (
    PASSWORD,
    VENV_BIN,
    make_dataset,
    mutate_dataset,
    tmpfs,
    tree_digest,
    write_secret,
)
from tests.test_receiver import (
    Side,
    printed_fingerprint,
    repository_files,
    setup_master,
    setup_slave,
    write_master_config,
)
from tests.test_setup_e2e import plain_restic_on

pytestmark = [pytest.mark.slow, pytest.mark.netns]


@dataclass
class Fleet:
    hosts: ThreeHosts
    master: Side
    slave: Side
    spare: Side  # the second slave, destination "spare"
    src: Path
    shared: Path
    base: Path

    def snapshot(self, timeout: float = 300) -> subprocess.CompletedProcess:
        result = self.master.run("snapshot", timeout=timeout)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Traceback" not in result.stderr, result.stderr
        return result

    def ids(self, destination: str = "primary") -> List[str]:
        shown = self.master.run("sets", "--json", "--destination", destination, check=True)
        return [s["id"] for s in json.loads(shown.stdout)]

    def complete(self, destination: str = "primary") -> List[str]:
        shown = self.master.run("sets", "--json", "--destination", destination, check=True)
        return [s["id"] for s in json.loads(shown.stdout) if s["status"] == "complete"]

    def add_destination(self, entry: dict) -> None:
        config_edit.update_list_entry(str(self.master.config), "destinations", entry)


def shipper_argv(side: Side, *args: str) -> List[str]:
    return [str(VENV_BIN / "shipper"), "-c", str(side.config), *args]


def one_line_about(stderr: str, name: str) -> str:
    """The single line that names the destination; the run says nothing else about it."""
    lines = [line for line in stderr.splitlines() if f"destination {name}" in line]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr, stderr
    return lines[0]


@pytest.fixture
def fleet(three_hosts: ThreeHosts, tmp_path: Path) -> Iterator[Fleet]:
    hosts = three_hosts
    shared = write_secret(tmp_path / "shared-password", PASSWORD)
    master = Side(tmp_path / "master", hosts.master)
    slave = Side(tmp_path / "slave", hosts.slave)
    spare = Side(tmp_path / "spare", hosts.slave2)
    src = tmp_path / "src"
    make_dataset(src, files=40, mib=1)
    fingerprints = []
    for side in (slave, spare):
        done = setup_slave(side, shared)
        assert done.returncode == 0, done.stdout + done.stderr
        fingerprints.append(printed_fingerprint(done.stdout))
    write_master_config(master, src)
    made = setup_master(master, shared, hosts.slave.address, fingerprints[0])
    assert made.returncode == 0, made.stdout + made.stderr
    added = master.run(
        "setup", "destination", "slave", "spare", "--slave", f"{hosts.slave2.address}:8000",
        "--fingerprint", fingerprints[1], "--password-file", str(shared), timeout=120,
    )  # fmt: skip
    assert added.returncode == 0, added.stdout + added.stderr
    yield Fleet(hosts, master, slave, spare, src, shared, tmp_path)


def restic_copies(host: Any, wanted: Callable[[int], bool] = lambda pid: True) -> List[int]:
    """Pids of `restic copy` processes in the host's namespace."""
    found = []
    for pid in host.pids():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"restic") and b"copy" in argv and wanted(pid):
            found.append(pid)
    return found


def holds_s3_keys(pid: int) -> bool:
    try:
        return b"AWS_ACCESS_KEY_ID=" in Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False


def wait_for(what: Callable[[], Any], timeout: float, message: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(message)


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def add_random(folder: Path, mib: int, name: str) -> None:
    """Incompressible new data, so a copy has something to carry for a while."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(mib):
        (folder / f"{name}-{i}.bin").write_bytes(os.urandom(1 << 20))


# ---------------------------------------------------------------- a slave down, then back


def test_a_second_slave_down_for_three_runs_is_caught_up_with_every_set_whole(fleet: Fleet):
    first = fleet.snapshot()
    assert "destination spare: 2 sets copied" in first.stdout, first.stdout
    fleet.hosts.slave2.link(False)
    for run in range(3):
        mutate_dataset(fleet.src, percent=10, seed=10 + run)
        started = time.monotonic()
        missed = fleet.snapshot()
        line = one_line_about(missed.stderr, "spare")
        assert "not copied: cannot reach the receiver at" in line, line
        assert fleet.hosts.slave2.address in line and "next run catches it up" in line
        assert time.monotonic() - started < 60
    assert len(fleet.complete()) == 5 and len(fleet.complete("primary")) == 5
    status = json.loads(fleet.master.run("status", "--json").stdout)
    assert any("destination spare" in p["text"] for p in status["problems"]), status

    fleet.hosts.slave2.link(True)
    mutate_dataset(fleet.src, percent=10, seed=20)
    back = fleet.snapshot()
    assert "destination spare: 4 sets copied" in back.stdout, back.stdout
    assert fleet.complete("spare") == fleet.complete() and len(fleet.complete()) == 6
    assert fleet.ids("spare") == fleet.complete(), "a set there is not whole"
    here = {s["id"]: s["parts"] for s in fleet.spare.sets()}
    there = {s["id"]: s["parts"] for s in fleet.slave.sets()}
    assert [p["name"] for p in here[fleet.complete()[2]]] == ["files"]
    assert {k: [p["name"] for p in v] for k, v in here.items()} == {
        k: [p["name"] for p in v] for k, v in there.items()
    }
    checked = fleet.spare.restic("check", "--read-data")
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # The master cannot delete there with its own credentials (append-only receiver).
    entry = yaml.safe_load(fleet.master.config.read_text())["destinations"][0]
    kept = repository_files(fleet.spare)
    oldest = fleet.spare.sets()[-1]["manifest_snapshot"]
    forgot = plain_restic_on(fleet.master, entry, "forget", oldest)
    assert "403" in forgot.stderr, forgot.stderr
    pruned = plain_restic_on(fleet.master, entry, "prune")
    assert pruned.returncode != 0 and "403" in pruned.stderr, pruned.stderr
    assert kept.items() <= repository_files(fleet.spare).items()
    assert len(fleet.spare.sets()) == 6


# ---------------------------------------------------------------- the store stalls mid-copy


class StoreOnMaster(SeaweedFS):
    """SeaweedFS inside the master's namespace (its loopback): the offsite store."""

    def __init__(self, base: Path, host: Any):
        super().__init__(base)
        self.host = host

    def _popen(self, argv: List[str], log: IO[bytes]) -> subprocess.Popen:
        return self.host.popen(argv, stdout=log, stderr=subprocess.STDOUT)

    def _writable(self) -> bool:
        # Asked from inside the namespace: its loopback is not this one.
        probe = (
            "import socket, sys, urllib.request; "
            "socket.create_connection(('127.0.0.1', int(sys.argv[2])), timeout=5).close(); "
            "print(urllib.request.urlopen(sys.argv[1], timeout=5).read())"
        )
        url = f"http://127.0.0.1:{self.ports['master']}/dir/assign"
        argv = ["python3", "-c", probe, url, str(self.ports["s3"])]
        return "fid" in self.host.run(argv).stdout


@pytest.fixture
def store(fleet: Fleet) -> Iterator[StoreOnMaster]:
    weed = StoreOnMaster(fleet.base / "store", fleet.hosts.master).start()
    try:
        yield weed
    finally:
        if weed.process is not None and weed.process.poll() is None:
            os.kill(weed.process.pid, signal.SIGCONT)
        weed.stop()


def add_offsite(fleet: Fleet, store: StoreOnMaster) -> None:
    keys = store.credential_files(fleet.base / "s3")
    added = fleet.master.run(
        "setup", "destination", "s3", "offsite", "--endpoint", store.endpoint,
        "--bucket", store.new_bucket(), "--access-key-id-file", keys["access_key_id_file"],
        "--secret-access-key-file", keys["secret_access_key_file"], timeout=120,
    )  # fmt: skip
    assert added.returncode == 0, added.stdout + added.stderr


def test_the_store_stalled_mid_copy_is_bounded_and_the_slaves_get_the_set(
    fleet: Fleet, store: StoreOnMaster
):
    add_offsite(fleet, store)
    fleet.snapshot()
    assert fleet.complete("offsite") == fleet.complete("spare") == fleet.complete()
    add_random(fleet.src / "new", 40, "a")
    stored = folder_size(store.base / "data")
    run = subprocess.Popen(
        fleet.master.argv(shipper_argv(fleet.master, "snapshot")),
        env=fleet.master.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pids = wait_for(
        lambda: restic_copies(fleet.hosts.master, holds_s3_keys), 240, "no copy to the store"
    )
    # mid-copy: data has started to reach the store
    wait_for(lambda: folder_size(store.base / "data") > stored + (2 << 20), 120, "no data came")
    os.kill(store.process.pid, signal.SIGSTOP)
    stopped = time.monotonic()
    out, err = run.communicate(timeout=300)
    took = time.monotonic() - stopped
    print(f"store stalled: the run ended {took:.1f}s later (network_timeout 5)\n{err}")
    assert run.returncode == 0, out + err
    assert pids and not restic_copies(fleet.hosts.master)
    line = one_line_about(err, "offsite")
    assert "not copied" in line and "next run catches it up" in line, line
    assert "object store" in line, line
    # network_timeout 5: restic's first retry after one stalled request (5 s), shipper gives
    # up 5 s later, 2 s of grace; it was 55 s while minio-go retried each request 10 times.
    assert took < 30, f"the run took {took:.0f}s after the store stalled"
    newest = fleet.complete()[0]
    assert fleet.complete("spare") == fleet.complete(), "the second slave missed the set"
    assert newest in [s["id"] for s in fleet.slave.sets()]
    # The stopped copy left no lock on the slave's repository (its exclusive check runs).
    checked = fleet.slave.restic("check")
    assert checked.returncode == 0, checked.stdout + checked.stderr

    os.kill(store.process.pid, signal.SIGCONT)
    assert newest not in fleet.ids("offsite"), "a half set is visible on the store"
    mutate_dataset(fleet.src, percent=5, seed=30)
    caught_up = fleet.snapshot()
    assert "destination offsite: 2 sets copied" in caught_up.stdout, caught_up.stdout
    assert fleet.complete("offsite") == fleet.complete() == fleet.ids("offsite")


# ---------------------------------------------------------------- a destination fills up


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "tiny", "size=8m") as disk:
        yield disk


def test_a_full_destination_is_one_line_the_others_get_the_set_and_no_half_set_shows(
    fleet: Fleet, tiny_disk: Path
):
    fleet.snapshot()
    fleet.add_destination({"name": "usb", "kind": "local", "url": str(tiny_disk / "repo")})
    entries = yaml.safe_load(fleet.master.config.read_text())["destinations"]
    assert [e["name"] for e in entries] == ["spare", "usb"]
    add_random(fleet.src / "new", 12, "b")
    started = time.monotonic()
    full = fleet.snapshot()
    took = time.monotonic() - started
    line = one_line_about(full.stderr, "usb")
    assert "not copied" in line and "no space left" in line, line
    assert "slave" not in line.split("not copied")[1], f"a local disk is not the slave: {line}"
    assert took < 120
    assert fleet.complete("spare") == fleet.complete(), full.stdout + full.stderr
    # Sets go oldest first, each one's manifest after its parts: the older sets that fitted
    # are there whole, the one that did not fit is not there at all.
    there = fleet.ids("usb")
    assert there == fleet.complete("usb"), "a half set is visible on the full destination"
    assert fleet.complete()[0] not in there, "the set that did not fit is visible"
    assert there == fleet.complete()[len(fleet.complete()) - len(there) :]

    subprocess.run(["mount", "-o", "remount,size=96m", str(tiny_disk)], check=True)
    again = fleet.snapshot()
    assert f"destination usb: {4 - len(there)} sets copied" in again.stdout, again.stdout
    assert fleet.complete("usb") == fleet.complete() == fleet.ids("usb")
    restored = fleet.base / "restored"
    done = fleet.master.run(
        "restore", fleet.complete()[1], "--destination", "usb", "--target", str(restored)
    )
    assert done.returncode == 0, done.stderr
    got = tree_digest(restored / fleet.src.relative_to("/"))
    assert got == tree_digest(fleet.src)


# ---------------------------------------------------------------- restic copy killed mid-set


def test_restic_copy_killed_mid_set_leaves_no_half_set_and_the_next_run_completes_it(
    fleet: Fleet,
):
    fleet.snapshot()
    add_random(fleet.src / "new", 16, "c")
    data = fleet.spare.repo_dir / "master" / "data"
    packs_before = sum(1 for p in data.rglob("*") if p.is_file())
    fleet.hosts.shape_to_slave2(
        "rate 40mbit burst 32kbit latency 400ms"
    )  # a few seconds of parts to copy
    run = subprocess.Popen(
        fleet.master.argv(shipper_argv(fleet.master, "snapshot")),
        env=fleet.master.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    parts_call = wait_for(lambda: restic_copies(fleet.hosts.master), 240, "no restic copy")[0]
    wait_for(
        lambda: sum(1 for p in data.rglob("*") if p.is_file()) > packs_before + 1,
        120,
        "no pack reached the second slave",
    )
    os.kill(parts_call, signal.SIGKILL)
    out, err = run.communicate(timeout=300)
    fleet.hosts.shape_to_slave2("")
    assert run.returncode == 0, out + err
    line = one_line_about(err, "spare")
    assert "not copied" in line and "signal 9" in line, line
    newest = fleet.complete()[0]
    assert newest in [s["id"] for s in fleet.slave.sets()]
    assert newest not in fleet.ids("spare"), "a half set is visible on the second slave"
    assert newest not in [s["id"] for s in fleet.spare.sets()], "the slave shows a half set"
    # The dead copy's locks are gone: the slaves' exclusive prune and check are not blocked.
    for side in (fleet.spare, fleet.slave):
        checked = side.restic("check")
        assert checked.returncode == 0, checked.stdout + checked.stderr

    mutate_dataset(fleet.src, percent=5, seed=40)
    done = fleet.snapshot()
    assert "destination spare: 2 sets copied" in done.stdout, done.stdout
    assert fleet.complete("spare") == fleet.complete() == fleet.ids("spare")
    checked = fleet.spare.restic("check", "--read-data")
    assert checked.returncode == 0, checked.stdout + checked.stderr
