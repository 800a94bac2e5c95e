"""Two test hosts on one machine: network namespaces joined by a veth pair.

The master and the slave each get their own namespace, loopback and an
address on a private /24 that exists only between them; nothing is routed
anywhere else. `two_hosts` is the pytest fixture.
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


@pytest.fixture
def two_hosts() -> Iterator[TwoHosts]:
    if not netns_available():
        pytest.skip("network namespaces need root and iproute2")
    hosts = TwoHosts().create()
    try:
        yield hosts
    finally:
        hosts.destroy()
