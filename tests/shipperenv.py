"""Fixtures for running shipper as a user would: real restic, real rest-server.

`shipper_env` gives a scratch workspace (password file, state dir, a source
tree, a config writer) and runs the `shipper` command as a subprocess.
`rest_server` starts restic's rest-server on a free loopback port.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
import yaml

from bench import dataset

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".tools" / "bin"
VENV_BIN = Path(sys.executable).parent
PASSWORD = "correct horse battery staple"


# tests/tools/restic: real restic whose `init` picks the cheapest key derivation
# (see that file). On for the test suite only (tests/conftest.py); benchmarks
# import this module too and keep restic's normal keys.
SUITE_TOOLS = ROOT / "tests" / "tools"
CHEAP_KEYS = False


def tool_path() -> str:
    first = [str(SUITE_TOOLS)] if CHEAP_KEYS else []
    return os.pathsep.join([*first, str(TOOLS), str(VENV_BIN), os.environ.get("PATH", "")])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float = 15, netns: Optional[str] = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if netns:
            probe = subprocess.run(
                ["ip", "netns", "exec", netns, "bash", "-c", f"exec 3<>/dev/tcp/{host}/{port}"],
                capture_output=True,
            )
            if probe.returncode == 0:
                return
        else:
            with socket.socket() as sock:
                if sock.connect_ex((host, port)) == 0:
                    return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def stop_process(process: Optional[subprocess.Popen], grace: float = 10) -> None:
    """SIGTERM, then SIGKILL after grace: a server blocked in I/O on a loaded
    machine must not fail the test that merely cleans it up."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def write_secret(path: Path, text: str = PASSWORD) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


class ShipperEnv:
    """A scratch master: source tree, secret, state dir, config, and the CLI."""

    def __init__(self, base: Path):
        self.base = base
        self.src = base / "src"
        self.state = base / "state"
        self.repo = base / "repo"
        self.password_file = write_secret(base / "secret")
        self.config_path = base / "shipper.yml"
        self.hooks = base / "hooks"
        self.src.mkdir(parents=True)
        self.settings: Dict[str, Any] = {
            "repository": {
                "url": str(self.repo),
                "password_file": str(self.password_file),
                "lock_wait": 5,
            },
            "paths": [str(self.src)],
            "state_dir": str(self.state),
            "databases": {"enabled": False},
            "hooks": {"dirs": [str(self.hooks)], "timeout": 30},
        }
        self.write_config()

    def write_config(self, **changes: Any) -> Path:
        for key, value in changes.items():
            if isinstance(value, dict) and isinstance(self.settings.get(key), dict):
                self.settings[key] = {**self.settings[key], **value}
            else:
                self.settings[key] = value
        self.config_path.write_text(yaml.safe_dump(self.settings, sort_keys=False))
        return self.config_path

    def env(self) -> Dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RESTIC_", "SHIPPER_"))}
        env["PATH"] = tool_path()
        env["SHIPPER_CONFIG"] = str(self.config_path)
        env["RESTIC_CACHE_DIR"] = str(self.base / "plain-restic-cache")
        return env

    def run(
        self, *args: str, check: bool = False, timeout: float = 300, **kw: Any
    ) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(VENV_BIN / "shipper"), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            **kw,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"shipper {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
        return result

    def popen(self, *args: str, **kw: Any) -> subprocess.Popen:
        return subprocess.Popen([str(VENV_BIN / "shipper"), *args], env=self.env(), **kw)

    def restic(
        self, *args: str, repo: Optional[str] = None, check: bool = True
    ) -> subprocess.CompletedProcess:
        """Plain restic on the same repository, as an operator without shipper would run it."""
        cmd = [
            str(TOOLS / "restic"),
            "-r",
            repo or str(self.repo),
            "--password-file",
            str(self.password_file),
            *args,
        ]
        result = subprocess.run(cmd, env=self.env(), capture_output=True, text=True, timeout=300)
        if check and result.returncode != 0:
            raise AssertionError(
                f"restic {' '.join(args)} exited {result.returncode}: {result.stderr}"
            )
        return result

    def make_dataset(self, files: int = 300, mib: int = 4, seed: int = 1) -> None:
        make_dataset(self.src, files=files, mib=mib, seed=seed)

    def mutate_dataset(self, percent: int = 10, seed: int = 2) -> None:
        mutate_dataset(self.src, percent, seed)


@contextlib.contextmanager
def tmpfs(folder: Path, options: str) -> Iterator[Path]:
    """A small filesystem of its own at `folder` (made here), e.g. options "size=8m": a disk
    that fills up for real."""
    folder.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", f"{options},mode=0700", "tmpfs", str(folder)]
    subprocess.run(mount, check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def make_dataset(target: Path, files: int, mib: int, seed: int = 1) -> None:
    """A deterministic server-like tree of about `files` files and `mib` MiB (bench/dataset.py)."""
    dataset.create(target, files=files, mib=mib, seed=seed)


def mutate_dataset(target: Path, percent: int = 10, seed: int = 2) -> None:
    """Change percent% of the tree's files: append, overwrite in place, delete, add."""
    dataset.mutate(target, percent, seed)


def tree_digest(root: Path, skip: Optional[List[str]] = None) -> Dict[str, str]:
    """Relative path -> content digest (and link target) of every file under root.

    Per path, so that a failing comparison names the paths that differ;
    permission bits are not part of it (dataset.digest(root) is the one
    value that also covers modes).
    """
    if not root.is_dir():
        return {}
    out = {}
    for entry in dataset.entries(root):
        if skip and any(entry.path == s or entry.path.startswith(s + "/") for s in skip):
            continue
        if entry.kind == "link":
            out[entry.path] = "link:" + entry.data
        elif entry.kind == "file":
            out[entry.path] = entry.data
        elif entry.kind == "dir":
            out[entry.path] = "dir"
    return out


@pytest.fixture
def shipper_env(tmp_path: Path) -> ShipperEnv:
    return ShipperEnv(tmp_path)


class RestServer:
    def __init__(
        self,
        data: Path,
        port: int,
        args: List[str],
        netns: Optional[str] = None,
        host: str = "127.0.0.1",
    ):
        self.data = data
        self.port = port
        self.host = host
        self.args = args
        self.netns = netns
        self.process: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        scheme = "https" if "--tls" in self.args else "http"
        return f"rest:{scheme}://{self.host}:{self.port}/"

    def start(self) -> RestServer:
        cmd = [
            str(TOOLS / "rest-server"),
            "--path",
            str(self.data),
            "--listen",
            f"{self.host}:{self.port}",
            *self.args,
        ]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for_port(self.host, self.port, netns=self.netns)
        return self

    def stop(self) -> None:
        stop_process(self.process)


@pytest.fixture
def rest_server(tmp_path: Path) -> Iterator[RestServer]:
    server = RestServer(tmp_path / "rest-data", free_port(), ["--no-auth"]).start()
    yield server
    server.stop()
