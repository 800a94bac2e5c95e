"""Test hosts on one machine: network namespaces joined by veth pairs.

The master and the slave each get their own namespace, loopback and an
address on a private /24 that exists only between them; nothing is routed
anywhere else. `two_hosts` is the pytest fixture; `three_hosts` adds a second
slave on its own link to the master (its own /24), so one link can be cut
while the other carries on.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from typing import Iterator, List, Sequence

import pytest


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def netns_available() -> bool:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    probe = f"shpprobe{uuid.uuid4().hex[:6]}"
    ok = _ip("netns", "add", probe, check=False).returncode == 0
    if ok:
        _ip("netns", "del", probe, check=False)
    return ok


class Host:
    def __init__(self, name: str, address: str, veth: str):
        self.name = name
        self.address = address
        self.veth = veth

    def cmd(self, argv: Sequence[str]) -> List[str]:
        """argv run inside this host's namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv: Sequence[str], **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(self.cmd(argv), **kw)

    def popen(self, argv: Sequence[str], **kw) -> subprocess.Popen:
        return subprocess.Popen(self.cmd(argv), **kw)

    def pids(self) -> List[int]:
        out = _ip("netns", "pids", self.name, check=False).stdout
        return [int(p) for p in out.split()]

    def kill_all(self) -> None:
        """Kill every process of this host (the 'master dies' fault)."""
        for _ in range(5):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)

    def link(self, up: bool) -> None:
        self.run(["ip", "link", "set", self.veth, "up" if up else "down"], check=True)

    def netem(self, spec: str) -> None:
        """e.g. 'loss 100%' or 'delay 200ms'; '' removes it."""
        if spec:
            self.run(
                ["tc", "qdisc", "replace", "dev", self.veth, "root", "netem", *spec.split()],
                check=True,
            )
        else:
            self.run(["tc", "qdisc", "del", "dev", self.veth, "root"], check=False)


class TwoHosts:
    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        subnet = 100 + int(tag, 16) % 150
        self.master = Host(f"shp{tag}m", f"10.213.{subnet}.1", f"vm{tag}")
        self.slave = Host(f"shp{tag}s", f"10.213.{subnet}.2", f"vs{tag}")

    def create(self) -> TwoHosts:
        for host in (self.master, self.slave):
            _ip("netns", "add", host.name)
            host.run(["ip", "link", "set", "lo", "up"], check=True)
        _ip(
            "link",
            "add",
            self.master.veth,
            "netns",
            self.master.name,
            "type",
            "veth",
            "peer",
            "name",
            self.slave.veth,
            "netns",
            self.slave.name,
        )
        for host in (self.master, self.slave):
            host.run(["ip", "addr", "add", f"{host.address}/24", "dev", host.veth], check=True)
            host.run(["ip", "link", "set", host.veth, "up"], check=True)
        return self

    def destroy(self) -> None:
        for host in (self.master, self.slave):
            host.kill_all()
            _ip("netns", "del", host.name, check=False)


class ThreeHosts(TwoHosts):
    """The master, the slave and `slave2`, each slave on its own veth pair to the master."""

    def __init__(self) -> None:
        super().__init__()
        tag = self.master.name[3:-1]
        subnet = 100 + int(tag, 16) % 150
        self.slave2 = Host(f"shp{tag}t", f"10.214.{subnet}.2", f"vt{tag}")
        self.master_to_slave2 = f"vn{tag}"  # the master's end of that pair

    def create(self) -> ThreeHosts:
        super().create()
        _ip("netns", "add", self.slave2.name)
        self.slave2.run(["ip", "link", "set", "lo", "up"], check=True)
        _ip(
            "link", "add", self.master_to_slave2, "netns", self.master.name, "type", "veth",
            "peer", "name", self.slave2.veth, "netns", self.slave2.name,
        )  # fmt: skip
        master_address = self.slave2.address.rsplit(".", 1)[0] + ".1/24"
        self.master.run(
            ["ip", "addr", "add", master_address, "dev", self.master_to_slave2], check=True
        )
        self.master.run(["ip", "link", "set", self.master_to_slave2, "up"], check=True)
        self.slave2.run(
            ["ip", "addr", "add", f"{self.slave2.address}/24", "dev", self.slave2.veth], check=True
        )
        self.slave2.run(["ip", "link", "set", self.slave2.veth, "up"], check=True)
        return self

    def shape_to_slave2(self, spec: str) -> None:
        """tc tbf (this kernel has no netem) on the master's end of the slave2 link, what the
        master sends, e.g. 'rate 40mbit burst 32kbit latency 400ms'; '' removes it."""
        dev = self.master_to_slave2
        if spec:
            argv = ["tc", "qdisc", "replace", "dev", dev, "root", "tbf", *spec.split()]
            self.master.run(argv, check=True)
        else:
            self.master.run(["tc", "qdisc", "del", "dev", dev, "root"], check=False)

    def destroy(self) -> None:
        self.slave2.kill_all()
        _ip("netns", "del", self.slave2.name, check=False)
        super().destroy()


@pytest.fixture
def three_hosts() -> Iterator[ThreeHosts]:
    if not netns_available():
        pytest.skip("network namespaces need root and iproute2")
    hosts = ThreeHosts()
    try:
        yield hosts.create()
    finally:
        hosts.destroy()


@pytest.fixture
def two_hosts() -> Iterator[TwoHosts]:
    if not netns_available():
        pytest.skip("network namespaces need root and iproute2")
    hosts = TwoHosts().create()
    try:
        yield hosts
    finally:
        hosts.destroy()
