"""The network between master and slave breaks in the middle of an upload.

Two network namespaces joined by a veth pair (tests/netns.py): the slave runs
a real rest-server, the master runs shipper and restic. The link is rate
limited so that an upload takes seconds, then cut: the veth goes down, or
netem drops every packet (a stalled connection that sends no error at all).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml

from tests.faults.helpers import clean_failure, dir_size
from tests.shipperenv import (
    VENV_BIN,
    RestServer,
    ShipperEnv,
    make_dataset,
    tree_digest,
    wait_for_port,
)

pytestmark = [pytest.mark.slow, pytest.mark.netns]

NETWORK_TIMEOUT = 5
PORT = 8000


# This kernel has no netem; tbf is there. A bucket smaller than a full packet
# drops every data packet, while the link stays up: a stalled connection.
BLACKHOLE = "rate 1kbit burst 100 limit 100"


def shape(host: Any, spec: str) -> None:
    """tc tbf on the host's end of the link; '' removes it."""
    if spec:
        tc = ["tc", "qdisc", "replace", "dev", host.veth, "root", "tbf", *spec.split()]
        host.run(tc, check=True)
    else:
        host.run(["tc", "qdisc", "del", "dev", host.veth, "root"], check=False)


def shipper_in(host: Any, env: ShipperEnv, *args: str, timeout: float = 120):
    return host.run([str(VENV_BIN / "shipper"), *args], env=env.env(), timeout=timeout)


def wait_for_growth(folder: Path, minimum: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while dir_size(folder) < minimum:
        assert time.monotonic() < deadline, f"nothing arrived in {folder}"
        time.sleep(0.05)


@pytest.mark.parametrize("cut", ["link down", "packets dropped"])
def test_cut_mid_upload_fails_in_bounded_time_and_the_next_run_succeeds(
    two_hosts: Any, shipper_env: ShipperEnv, blank_repository: Path, tmp_path: Path, cut: str
):
    master, slave = two_hosts.master, two_hosts.slave
    env = shipper_env
    data = tmp_path / "slave-repo"
    server = RestServer(
        data, PORT, ["--no-auth", "--append-only"], netns=slave.name, host=slave.address
    ).start()
    try:
        url = server.url + "master/"
        env.write_config(repository={"url": url, "network_timeout": NETWORK_TIMEOUT})
        shutil.copytree(blank_repository, data / "master")  # restic init, done once
        make_dataset(env.src, files=40, mib=1)
        (env.src / "big.bin").write_bytes(os.urandom(8 << 20))
        shape(master, "rate 16mbit burst 32kb latency 400ms")  # 8 MiB take about 4 s
        run = subprocess.Popen(
            master.cmd([str(VENV_BIN / "shipper"), "snapshot"]),
            env=env.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for_growth(data / "master" / "data", 1 << 20)
        clock = time.monotonic()
        if cut == "link down":
            master.link(False)
        else:
            shape(master, BLACKHOLE)
        out, err = run.communicate(timeout=120)
        took = time.monotonic() - clock
        print(f"{cut}: failed after {took:.1f}s: {err.strip()}")
        clean_failure(subprocess.CompletedProcess(run.args, run.returncode, out, err))
        assert f"{slave.address}:{PORT}" in err and "receiver" in err, err
        assert took < 4 * NETWORK_TIMEOUT + 10, f"the run hung for {took:.0f}s after the cut"
        assert all(s["status"] == "incomplete" for s in local_sets(env, data))

        # The link returns: the next run succeeds, the repository is sound, the restore exact.
        master.link(True)
        shape(master, "")
        wait_for_port(slave.address, PORT, netns=master.name)  # the link is back when it answers
        done = shipper_in(master, env, "snapshot", "--json")
        assert done.returncode == 0, done.stderr
        listed = local_sets(env, data)
        assert [s["status"] for s in listed if s["status"] != "incomplete"] == ["complete"]
        checked = env.restic("check", repo=str(data / "master"), check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        target = tmp_path / "restored"
        env.restic("restore", "latest", "--target", str(target), repo=str(data / "master"))
        assert tree_digest(target / env.src.relative_to("/")) == tree_digest(env.src)
    finally:
        server.stop()


def local_sets(env: ShipperEnv, data: Path) -> List[Dict[str, Any]]:
    """The sets as the slave sees them, on its local disk."""
    settings = {**env.settings, "repository": {**env.settings["repository"]}}
    settings["repository"]["url"] = str(data / "master")
    view = env.base / "slave-view.yml"
    view.write_text(yaml.safe_dump(settings))
    return json.loads(env.run("-c", str(view), "sets", "--json", check=True).stdout)
