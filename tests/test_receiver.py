"""The receiver: derived secrets, htpasswd, TLS, and a real append-only rest-server.

The real tests set up a slave and a master on loopback with the real CLI
(`shipper setup slave`, `shipper setup master`), then prove that the master
adds sets through the receiver but cannot forget or prune anything.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import stat
import subprocess
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
import yaml

from shipper.core import secrets
from shipper.slave import receiver
from tests.shipperenv import (
    PASSWORD,
    TOOLS,
    VENV_BIN,
    free_port,
    make_dataset,
    mutate_dataset,
    tool_path,
    tree_digest,
    write_secret,
)

# ---------------------------------------------------------------- helpers shared with the e2e test


class Side:
    """One server's scratch folders and its shipper CLI (inside a namespace when given a host)."""

    def __init__(self, base: Path, host: Any = None):
        self.base = base
        self.host = host
        self.etc = base / "etc"
        self.state = base / "state"
        self.repo_dir = base / "repo"
        self.config = base / "shipper.yml"
        base.mkdir(parents=True, exist_ok=True)

    def env(self) -> Dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RESTIC_", "SHIPPER_"))}
        env["PATH"] = tool_path()
        env["RESTIC_CACHE_DIR"] = str(self.base / "plain-restic-cache")
        return env

    def argv(self, argv: List[str]) -> List[str]:
        return self.host.cmd(argv) if self.host is not None else argv

    def run(
        self, *args: str, check: bool = False, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        argv = self.argv([str(VENV_BIN / "shipper"), "-c", str(self.config), *args])
        result = subprocess.run(
            argv, env=self.env(), capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"shipper {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
        return result

    def restic(self, *args: str, repo: Optional[str] = None) -> subprocess.CompletedProcess:
        """Plain restic as an operator would run it with this side's config and secrets."""
        cfg = yaml.safe_load(self.config.read_text())["repository"]
        argv = [str(TOOLS / "restic"), "--password-file", cfg["password_file"]]
        if repo is None and cfg.get("rest_user"):
            argv += [
                "--repository-file",
                str(self._repository_file(cfg)),
                "--cacert",
                cfg["cacert"],
            ]
        else:
            argv += ["-r", repo or cfg.get("local_path") or cfg["url"]]
        return subprocess.run(
            self.argv(argv + list(args)),
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )

    def _repository_file(self, cfg: Dict[str, Any]) -> Path:
        password = secrets.read_secret(cfg["rest_password_file"])
        url = cfg["url"].replace("rest:https://", f"rest:https://{cfg['rest_user']}:{password}@")
        return write_secret(self.base / "plain-restic-repository", url)

    def sets(self) -> List[Dict[str, Any]]:
        return json.loads(self.run("sets", "--json", check=True).stdout)


def setup_slave(slave: Side, password_file: Path, *extra: str) -> subprocess.CompletedProcess:
    return slave.run(
        "setup", "slave", "--password-file", str(password_file), "--etc-dir", str(slave.etc),
        "--state-dir", str(slave.state), "--repo-dir", str(slave.repo_dir),
        "--service-manager", "none", *extra,
    )  # fmt: skip


def setup_master(
    master: Side, password_file: Path, slave: str, fingerprint: str, *extra: str
) -> subprocess.CompletedProcess:
    return master.run(
        "setup", "master", "--slave", slave, "--password-file", str(password_file),
        "--fingerprint", fingerprint, "--etc-dir", str(master.etc), "--state-dir",
        str(master.state), "--service-manager", "none", *extra,
        timeout=300,
    )  # fmt: skip


def printed_fingerprint(output: str) -> str:
    match = re.search(r"SHA-256 fingerprint: ([0-9A-F:]{95})", output)
    assert match, output
    return match.group(1)


def write_master_config(master: Side, src: Path) -> None:
    """The operator's own config before setup: paths and comments that setup must keep."""
    master.config.write_text(
        "# the operator's master config\n"
        f"paths: [{src}]   # what the sets hold\n"
        "databases:\n  enabled: false\n"
        "repository:\n  url: /not/yet\n  lock_wait: 5\n  network_timeout: 5\n"
        "hooks:\n  dirs: []\n"
    )


def slave_digest(slave: Side) -> Dict[str, str]:
    """Everything on the slave that a master must not be able to change."""
    digest = {f"repo/{k}": v for k, v in tree_digest(slave.repo_dir).items()}
    digest.update({f"etc/{k}": v for k, v in tree_digest(slave.etc).items()})
    digest["config"] = slave.config.read_text()
    return digest


def repository_files(slave: Side, user: str = "master") -> Dict[str, str]:
    """The repository's data, snapshot and key files: a master may add some, never remove one."""
    root = slave.repo_dir / user
    return {
        k: v for k, v in tree_digest(root).items() if k.startswith(("data/", "snapshots/", "keys/"))
    }


# ---------------------------------------------------------------- secrets


def test_derived_secrets_are_distinct_and_stable():
    one = secrets.derive(PASSWORD)
    assert one == secrets.derive(PASSWORD)
    assert one.restic_password != one.receiver_password
    assert PASSWORD not in (one.restic_password, one.receiver_password)
    assert re.fullmatch(r"[0-9a-f]{64}", one.restic_password)
    assert secrets.derive(PASSWORD + "x").restic_password != one.restic_password
    assert "secret" in repr(one) and one.restic_password not in repr(one)


def test_shared_password_file_must_be_private_and_long(tmp_path: Path):
    loose = write_secret(tmp_path / "loose", PASSWORD)
    loose.chmod(0o644)
    with pytest.raises(secrets.ShipperError, match="chmod 600"):
        secrets.read_shared(str(loose))
    short = write_secret(tmp_path / "short", "abc")
    with pytest.raises(secrets.ShipperError, match="at least 12"):
        secrets.read_shared(str(short))
    with pytest.raises(secrets.ShipperError, match="does not exist"):
        secrets.read_shared(str(tmp_path / "missing"))
    assert secrets.read_shared(str(write_secret(tmp_path / "ok", PASSWORD))) == PASSWORD


def test_secret_files_are_0600_and_rewritten_only_when_they_differ(tmp_path: Path):
    path = tmp_path / "etc" / "secret"
    assert secrets.write_secret(str(path), "value-1")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert not secrets.write_secret(str(path), "value-1")
    path.chmod(0o644)
    assert secrets.write_secret(str(path), "value-1")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secrets.write_secret(str(path), "value-2")
    assert path.read_text() == "value-2\n"


def test_htpasswd_keeps_other_users_and_replaces_ours(tmp_path: Path):
    path = tmp_path / "htpasswd"
    path.write_text("other:{SHA}abc=\nmaster:{SHA}stale=\n")
    assert secrets.write_htpasswd(str(path), "master", "pw-1")
    lines = path.read_text().splitlines()
    assert lines[0] == "other:{SHA}abc=" and len(lines) == 2
    assert secrets.htpasswd_verifies(lines[1], "master", "pw-1")
    assert not secrets.write_htpasswd(str(path), "master", "pw-1")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # the {SHA} form rest-server reads: base64 of SHA-1
    assert secrets.htpasswd_entry("u", "password") == "u:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="


# ---------------------------------------------------------------- TLS and addresses


def test_certificate_fingerprint_and_names_match_openssl(tmp_path: Path):
    key, cert = tmp_path / "tls" / "r.key", tmp_path / "tls" / "r.crt"
    receiver.make_certificate(str(key), str(cert), ["slave.example", "10.1.2.3", "::1"])
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    out = subprocess.run(
        ["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(cert)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert out.strip().split("=", 1)[1] == receiver.file_fingerprint(str(cert))
    assert receiver.certificate_names(cert.read_bytes()) == ["slave.example", "10.1.2.3", "::1"]
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    assert receiver.certificate_names(der) == ["slave.example", "10.1.2.3", "::1"]
    assert not receiver.certificate_expires_soon(str(cert))


@pytest.mark.parametrize(
    "given",
    [
        "AB:" * 31 + "CD",
        ("ab" * 31 + "cd"),
        "SHA256:" + "AB:" * 31 + "CD",
        "sha256 Fingerprint=" + "AB:" * 31 + "CD",
    ],
)
def test_fingerprint_forms(given: str):
    assert receiver.normalize_fingerprint(given) == "AB:" * 31 + "CD"


def test_fingerprint_that_is_not_one():
    with pytest.raises(receiver.ReceiverError, match="64 hex digits"):
        receiver.normalize_fingerprint("AB:CD")


@pytest.mark.parametrize(
    "text,expected",
    [
        ("slave", ("slave", 8000)),
        ("slave.example:9000", ("slave.example", 9000)),
        ("10.0.0.2:8443", ("10.0.0.2", 8443)),
        ("[fd00::2]:8000", ("fd00::2", 8000)),
        ("fd00::2", ("fd00::2", 8000)),
    ],
)
def test_slave_addresses(text: str, expected: tuple):
    assert receiver.split_hostport(text) == expected


def test_listen_addresses():
    assert receiver.split_listen(":8000") == ("", 8000)
    assert receiver.split_listen("[::1]:8443") == ("::1", 8443)
    with pytest.raises(receiver.ReceiverError, match="ADDR:PORT"):
        receiver.split_listen("8000")


# ---------------------------------------------------------------- a real receiver on loopback


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Dict[str, Any]]:
    """A slave with its receiver on loopback and a master set up against it."""
    shared = write_secret(tmp_path / "shared-password", PASSWORD)
    slave, master = Side(tmp_path / "slave"), Side(tmp_path / "master")
    port = free_port()
    src = tmp_path / "src"
    make_dataset(src, files=60, mib=1)
    try:
        done = setup_slave(slave, shared, "--listen", f"127.0.0.1:{port}")
        assert done.returncode == 0, done.stderr
        fingerprint = printed_fingerprint(done.stdout)
        write_master_config(master, src)
        made = setup_master(master, shared, f"127.0.0.1:{port}", fingerprint)
        assert made.returncode == 0, made.stdout + made.stderr
        yield {"slave": slave, "master": master, "src": src, "port": port, "shared": shared,
               "fingerprint": fingerprint}  # fmt: skip
    finally:
        slave.run("receiver", "stop")


@pytest.mark.slow
def test_master_adds_sets_but_cannot_forget_or_prune(pair: Dict[str, Any]):
    slave, master = pair["slave"], pair["master"]
    mutate_dataset(pair["src"], percent=20)
    assert json.loads(master.run("snapshot", "--json", check=True).stdout)["status"] == "complete"
    found = slave.sets()
    assert [s["status"] for s in found] == ["complete", "complete"]
    first = found[-1]["manifest_snapshot"]

    # forget through the receiver: refused (restic itself exits 0 here, so look at the repository)
    forgot = master.restic("forget", first)
    assert "403" in forgot.stderr
    assert [s["id"] for s in slave.sets()] == [s["id"] for s in found]

    # prune through the receiver, with something to delete (forgotten on the slave, not pruned)
    assert slave.restic("forget", first).returncode == 0
    kept = repository_files(slave)
    pruned = master.restic("prune")
    assert pruned.returncode != 0 and "403" in pruned.stderr, pruned.stderr
    after = repository_files(slave)
    assert kept.items() <= after.items(), "the master deleted or rewrote repository files"

    # the slave prunes on its local path; the repository stays sound and the master goes on
    assert slave.run("prune", check=True).returncode == 0
    checked = slave.restic("check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    mutate_dataset(pair["src"], percent=5, seed=3)
    assert json.loads(master.run("snapshot", "--json", check=True).stdout)["status"] == "complete"


@pytest.mark.slow
def test_receiver_start_stop_status_and_a_changed_listen_address(pair: Dict[str, Any]):
    slave = pair["slave"]
    status = json.loads(slave.run("receiver", "status", "--json", check=True).stdout)
    assert status["running"] and status["fingerprint"] == pair["fingerprint"]
    pid = status["pid"]

    again = setup_slave(slave, pair["shared"], "--json")
    assert json.loads(again.stdout)["changes"] == []
    assert json.loads(slave.run("receiver", "status", "--json").stdout)["pid"] == pid

    assert "stopped the receiver" in slave.run("receiver", "stop", check=True).stdout
    stopped = slave.run("receiver", "status")
    assert stopped.returncode == 3 and "stopped" in stopped.stdout
    assert "started the receiver" in slave.run("receiver", "start", check=True).stdout

    port = free_port()
    moved = setup_slave(slave, pair["shared"], "--listen", f"127.0.0.1:{port}", "--json")
    assert moved.returncode == 0, moved.stderr
    changes = json.loads(moved.stdout)["changes"]
    assert any("restarted the receiver" in c for c in changes), changes
    assert not any("certificate" in c for c in changes), "the certificate must not change"
    moved_to = setup_master(
        pair["master"], pair["shared"], f"127.0.0.1:{port}", pair["fingerprint"]
    )
    assert moved_to.returncode == 0, moved_to.stderr
    assert f"127.0.0.1:{port}" in pair["master"].config.read_text()


def test_receiver_refuses_to_run_without_its_files(tmp_path: Path):
    slave = Side(tmp_path / "slave")
    slave.config.write_text(
        yaml.safe_dump(
            {
                "role": "slave",
                "state_dir": str(slave.state),
                "repository": {"url": str(slave.repo_dir / "master")},
                "receiver": {
                    "listen": f"127.0.0.1:{free_port()}",
                    "repo_dir": str(slave.repo_dir),
                    "tls_cert": str(slave.etc / "c.crt"),
                    "tls_key": str(slave.etc / "c.key"),
                    "htpasswd": str(slave.etc / "htpasswd"),
                },
            }
        )
    )
    result = slave.run("receiver")
    assert result.returncode == 1
    assert "run `shipper setup slave`" in result.stderr and "Traceback" not in result.stderr
