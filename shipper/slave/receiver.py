"""The slave's receiver: restic's rest-server, append-only, TLS, htpasswd.

`shipper receiver` runs rest-server in the foreground (exec, for the unit's
ExecStart). The master's repository lives at <repo_dir>/<rest_user>/
(--private-repos), so the master can reach its own repository only, and
--append-only lets it add snapshots but never delete or rewrite one:
forget and prune run on the slave, on the local path.

The receiver is started through systemd when systemd runs this machine, or
else as a detached process whose pid shipper records in its state folder.
This module also makes the self-signed certificate and computes and fetches
the fingerprints the master pins.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import http.client
import ipaddress
import os
import re
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, NoReturn, Optional, Tuple

from shipper.core import process
from shipper.core import state as state_files
from shipper.core.config import Config, check_secret_file
from shipper.core.errors import ShipperError

UNIT = "shipper-receiver.service"
BINARIES = ("rest-server", "restic-rest-server")
DEFAULT_PORT = 8000
CERT_DAYS = 3650
RENEW_BEFORE = 30 * 86400
STATE_FILE = state_files.RECEIVER
LOG_FILE = "receiver.log"
_ENTRY = "import sys; from shipper.cli import main; sys.exit(main())"


class ReceiverError(ShipperError):
    pass


class Unreachable(ReceiverError):
    pass


class FingerprintMismatch(ReceiverError):
    pass


# ---------------------------------------------------------------- rest-server


def binary() -> str:
    """rest-server's path: $SHIPPER_REST_SERVER, or rest-server / restic-rest-server on PATH."""
    explicit = os.environ.get("SHIPPER_REST_SERVER")
    candidates = [explicit] if explicit else list(BINARIES)
    for name in candidates:
        found = shutil.which(name)
        if found:
            return found
    raise ReceiverError(
        f"rest-server not found (looked for {' and '.join(candidates)} on PATH); "
        "install restic's rest-server 0.13 or newer on the slave"
    )


def argv(cfg: Config) -> List[str]:
    """The rest-server command line: no secret in it, only file paths."""
    rc = cfg.receiver
    return [
        binary(),
        "--path",
        rc.repo_dir,
        "--listen",
        rc.listen,
        "--append-only",
        "--private-repos",
        "--tls",
        "--tls-cert",
        rc.tls_cert,
        "--tls-key",
        rc.tls_key,
        "--htpasswd-file",
        rc.htpasswd,
    ]


def preflight(cfg: Config) -> List[str]:
    """What keeps the receiver from starting, as messages naming the fix."""
    rc = cfg.receiver
    problems = []
    if cfg.role != "slave":
        # A promoted server must never take pushes again: the old master may return.
        problems.append(
            f"{cfg.source}: role is {cfg.role}: only a slave runs the receiver "
            "(to make this server a slave again, run `shipper setup slave`)"
        )
    if not os.path.exists(rc.tls_cert):
        problems.append(
            f"receiver.tls_cert: {rc.tls_cert} does not exist; run `shipper setup slave`"
        )
    for key, path in (("receiver.tls_key", rc.tls_key), ("receiver.htpasswd", rc.htpasswd)):
        for problem in check_secret_file(path, f"{cfg.source}: {key}"):
            missing = "does not exist" in problem
            problems.append(problem + ("; run `shipper setup slave`" if missing else ""))
    if not os.path.isdir(rc.repo_dir):
        problems.append(
            f"receiver.repo_dir: {rc.repo_dir} is not a folder; run `shipper setup slave`"
        )
    return problems


def exec_foreground(cfg: Config) -> NoReturn:
    """Become rest-server (for systemd's ExecStart)."""
    problems = preflight(cfg)
    if problems:
        raise ReceiverError("the receiver cannot start: " + "; ".join(problems))
    process.become(argv(cfg))


def split_listen(listen: str) -> Tuple[str, int]:
    """':8000' -> ('', 8000); '[::1]:8000' -> ('::1', 8000)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ReceiverError(
            f"listen address {listen!r}: give ADDR:PORT, e.g. :8000 or 10.0.0.2:8000"
        )
    return host.strip("[]"), int(port)


def split_hostport(text: str, default_port: int = DEFAULT_PORT) -> Tuple[str, int]:
    """'slave', 'slave:8000', '10.0.0.2:8000', '[fe80::1]:8000' -> (host, port)."""
    match = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?|([^:\[\]]+)(?::(\d+))?|([0-9a-fA-F:]+)", text)
    if not match:
        raise ReceiverError(f"--slave {text!r}: give HOST or HOST:PORT (IPv6 as [ADDR]:PORT)")
    host = match.group(1) or match.group(3) or match.group(5)
    port = int(match.group(2) or match.group(4) or default_port)
    if not 0 < port < 65536:
        raise ReceiverError(f"--slave {text!r}: port {port} is out of range")
    return host, port


# ---------------------------------------------------------------- TLS


def make_certificate(key_path: str, cert_path: str, names: List[str]) -> None:
    """A new EC key and a self-signed certificate naming every host name and IP in names."""
    if shutil.which("openssl") is None:
        raise ReceiverError("openssl not found: install it to make the receiver's certificate")
    key, cert = Path(key_path), Path(cert_path)
    for folder in {key.parent, cert.parent}:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with tempfile.TemporaryDirectory(dir=key.parent, prefix=".shipper-tls-") as work:
        tmp_key, tmp_cert = Path(work) / "key", Path(work) / "cert"
        result = process.run(
            [
                "openssl", "req", "-x509", "-newkey", "ec",
                "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-days", str(CERT_DAYS), "-subj", f"/CN={_cn(names)}",
                "-addext", "subjectAltName=" + ",".join(_san(n) for n in names),
                # its own trust anchor on the master, whatever the distribution's openssl.cnf says
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-keyout", str(tmp_key), "-out", str(tmp_cert),
            ],
            text=True,
            umask=0o077,
        )  # fmt: skip
        if result.returncode != 0:
            raise ReceiverError(f"openssl could not make the certificate: {result.stderr.strip()}")
        os.chmod(tmp_key, 0o600)
        os.chmod(tmp_cert, 0o644)
        os.replace(tmp_key, key)
        os.replace(tmp_cert, cert)


def _cn(names: List[str]) -> str:
    name = next((n for n in names if not _is_ip(n)), names[0] if names else "shipper")
    return re.sub(r"[^A-Za-z0-9.-]", "-", name)[:64] or "shipper"


def _san(name: str) -> str:
    return f"IP:{name}" if _is_ip(name) else f"DNS:{name}"


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def normalize_name(name: str) -> str:
    if _is_ip(name):
        return str(ipaddress.ip_address(name))
    return name.lower().rstrip(".")


def certificate_names(cert: bytes) -> List[str]:
    """The subjectAltName entries of a DER or PEM certificate, normalized."""
    form = "PEM" if cert.lstrip().startswith(b"-----") else "DER"
    result = process.run(
        ["openssl", "x509", "-noout", "-inform", form, "-ext", "subjectAltName"], input=cert
    )
    if result.returncode != 0:
        raise ReceiverError(f"cannot read the certificate: {result.stderr.decode().strip()}")
    names = []
    for line in result.stdout.decode().splitlines()[1:]:
        for item in line.split(","):
            kind, _, value = item.strip().partition(":")
            if kind in ("DNS", "IP Address") and value:
                names.append(normalize_name(value))
    return names


def certificate_expires_soon(cert_path: str) -> bool:
    return not process.succeeds(
        ["openssl", "x509", "-noout", "-checkend", str(RENEW_BEFORE), "-in", cert_path]
    )


def fingerprint(der: bytes) -> str:
    """SHA-256 of the DER certificate, in openssl's colon hex form."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def file_fingerprint(cert_path: str) -> str:
    return fingerprint(ssl.PEM_cert_to_DER_cert(Path(cert_path).read_text()))


def normalize_fingerprint(text: str) -> str:
    """Accept 'AB:CD..', 'abcd..', 'SHA256:AB:..' or openssl's 'sha256 Fingerprint=AB:..'."""
    value = text.strip()
    value = re.sub(r"^(sha-?256( fingerprint)?\s*[=:]?\s*)", "", value, flags=re.IGNORECASE)
    digits = re.sub(r"[\s:]", "", value).upper()
    if not re.fullmatch(r"[0-9A-F]{64}", digits):
        raise ReceiverError(
            f"--fingerprint {text!r} is not a SHA-256 fingerprint: give the 64 hex digits "
            "(colons allowed) that `shipper setup slave` printed"
        )
    return ":".join(digits[i : i + 2] for i in range(0, 64, 2))


def fetch_certificate(host: str, port: int, timeout: float = 10) -> bytes:
    """The DER certificate the receiver presents (not verified: the caller pins it)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
        with sock, context.wrap_socket(sock, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as exc:
        raise Unreachable(
            f"cannot reach the receiver at {_hostport(host, port)}: {_reason(exc)}; check that the "
            f"slave is up, that `shipper setup slave` ran there and its receiver runs "
            f"(`shipper receiver status` on the slave), and that port {port} is open. Nothing was written"
        ) from None
    if not der:
        raise Unreachable(f"the receiver at {_hostport(host, port)} presented no certificate")
    return der


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout):
        return "no answer (timed out)"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or exc}); is it a shipper receiver?"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def probe_repository(host: str, port: int, user: str, password: str, cert_der: bytes) -> bool:
    """Whether the receiver holds user's repository; raises on a refused credential.

    The connection trusts only the pinned certificate and checks the host
    name against it, as restic will.
    """
    context = ssl.create_default_context(cadata=ssl.DER_cert_to_PEM_cert(cert_der))
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    conn = http.client.HTTPSConnection(host, port, context=context, timeout=15)
    try:
        conn.request("HEAD", f"/{user}/config", headers={"Authorization": f"Basic {token}"})
        status = conn.getresponse().status
    except ssl.SSLCertVerificationError as exc:
        raise ReceiverError(
            f"the receiver's certificate does not verify for {host}: {exc.verify_message}"
        ) from None
    except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
        raise Unreachable(
            f"the receiver at {_hostport(host, port)} failed: {_reason(exc)}"
        ) from None
    finally:
        conn.close()
    if status in (401, 403):
        raise ReceiverError(
            f"the receiver at {_hostport(host, port)} refused the credential (HTTP {status}): the "
            "password file differs from the one given to `shipper setup slave` (or the slave "
            f"was set up for another user than {user!r}); give the same file on both servers. "
            "Nothing was written"
        )
    if status not in (200, 404):
        raise ReceiverError(f"the receiver at {_hostport(host, port)} answered HTTP {status}")
    return status == 200


def local_names(listen_host: str = "") -> List[str]:
    """Names the master may use for this machine: host names and every address."""
    names = [socket.gethostname(), socket.getfqdn(), "localhost", "127.0.0.1", "::1"]
    if listen_host and listen_host not in ("0.0.0.0", "::"):
        names.append(listen_host)
    names.extend(_addresses())
    out: List[str] = []
    for name in names:
        if name and normalize_name(name) not in out:
            out.append(normalize_name(name))
    return out


def _addresses() -> List[str]:
    text = process.capture(["ip", "-o", "addr", "show"])
    found = re.findall(r"\binet6?\s+([0-9a-fA-F.:]+)/\d+\s+(?:brd\s+\S+\s+)?scope\s+(\w+)", text)
    return [address for address, scope in found if scope != "link"]


# ---------------------------------------------------------------- running it


def systemd_running() -> bool:
    """systemd manages this machine (sd_booted, and it is PID 1: not so in containers)."""
    try:
        comm = Path("/proc/1/comm").read_text().strip()
    except OSError:
        return False
    return os.path.isdir("/run/systemd/system") and comm == "systemd"


def resolve_manager(choice: str) -> str:
    """auto, systemd or none -> systemd or process."""
    if choice == "systemd" or (choice == "auto" and systemd_running()):
        if not systemd_running():
            raise ReceiverError("--service-manager systemd: systemd does not run this machine")
        return "systemd"
    return "process"


def systemctl(*args: str) -> None:
    result = process.run(["systemctl", *args], text=True)
    if result.returncode != 0:
        unit = args[-1]
        raise ReceiverError(
            f"systemctl {' '.join(args)} failed: {result.stderr.strip()}; see `journalctl -u {unit}`"
        )


def _read_state(cfg: Config) -> state_files.ReceiverState:
    return state_files.receiver_state(cfg.state)


def _write_state(cfg: Config, state: state_files.ReceiverState) -> None:
    state_files.save_receiver_state(cfg.state, state)


def _cmdline(pid: int) -> Optional[List[str]]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part] or None


def _our_pid(cfg: Config) -> Optional[int]:
    """The recorded receiver pid, if that process is still a rest-server."""
    pid = _read_state(cfg).pid
    if pid is None:
        return None
    command = _cmdline(pid)
    if not command or os.path.basename(command[0]) not in BINARIES:
        return None
    return pid


def start(cfg: Config, manager: Optional[str] = None, restart: bool = False) -> str:
    """Start (or restart, or leave running) the receiver; a line saying what happened.

    manager: systemd or process; by default the one recorded by setup.
    """
    problems = preflight(cfg)
    if problems:
        raise ReceiverError("the receiver cannot start: " + "; ".join(problems))
    manager = manager or _manager(_read_state(cfg))
    if manager == "systemd":
        return _start_systemd(cfg, restart)
    return _start_process(cfg, restart)


def _start_systemd(cfg: Config, restart: bool) -> str:
    active = process.succeeds(["systemctl", "is-active", "--quiet", UNIT])
    systemctl("enable", UNIT)
    systemctl("restart" if restart or not active else "start", UNIT)
    _write_state(cfg, state_files.ReceiverState(manager="systemd", unit=UNIT))
    wait_listening(cfg, None)
    if active and not restart:
        return f"the receiver runs ({UNIT}, enabled)"
    return f"{'restarted' if active else 'started'} the receiver ({UNIT}, enabled at boot)"


def _start_process(cfg: Config, restart: bool) -> str:
    pid = _our_pid(cfg)
    wanted = argv(cfg)
    if pid and not restart and _cmdline(pid) == wanted:
        return f"the receiver runs (pid {pid})"
    if pid:
        _terminate(pid)
    log_path = cfg.state / LOG_FILE
    log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as log:
        # Not die-with-parent: this receiver outlives `shipper receiver start`.
        child = process.spawn(
            [sys.executable, "-c", _ENTRY, "-c", os.path.abspath(cfg.source), "receiver"],
            die_with_parent=False,
            stdin=process.DEVNULL,
            stdout=log,
            stderr=process.STDOUT,
            cwd="/",
            start_new_session=True,
            close_fds=True,
        )
    _write_state(
        cfg, state_files.ReceiverState(manager="process", pid=child.pid, log=str(log_path))
    )
    wait_listening(cfg, child)
    verb = "restarted" if pid else "started"
    return (
        f"{verb} the receiver (pid {child.pid}, log {log_path}); systemd does not run this "
        "machine, so nothing starts it at boot: run `shipper receiver start` after a reboot"
    )


def wait_listening(cfg: Config, child: Optional[process.Popen], timeout: float = 15) -> None:
    host, port = split_listen(cfg.receiver.listen)
    host = host if host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child is not None and child.poll() is not None:
            raise ReceiverError(f"the receiver exited at once: {_log_tail(cfg)}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        time.sleep(0.1)
    raise ReceiverError(f"the receiver does not listen on {cfg.receiver.listen}: {_log_tail(cfg)}")


def _log_tail(cfg: Config) -> str:
    try:
        lines = (cfg.state / LOG_FILE).read_text(errors="replace").strip().splitlines()
    except OSError:
        lines = []
    return " / ".join(lines[-3:]) or "no output; see `journalctl -u shipper-receiver`"


def _terminate(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _cmdline(pid) is not None:
        _reap(pid)
        time.sleep(0.05)
    if _cmdline(pid) is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _reap(pid)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _manager(state: state_files.ReceiverState) -> str:
    """Who runs the receiver: as recorded by setup, else systemd if it runs this machine."""
    recorded = state.manager
    if recorded in ("systemd", "process"):
        return recorded
    return "systemd" if systemd_running() else "process"


def stop(cfg: Config, for_good: bool = False) -> str:
    """Stop the receiver; for_good also keeps systemd from starting it at boot."""
    state = _read_state(cfg)
    if _manager(state) == "systemd":
        systemctl("disable" if for_good else "stop", *(["--now"] if for_good else []), UNIT)
        return f"stopped the receiver ({UNIT}{', disabled' if for_good else ''})"
    pid = _our_pid(cfg)
    if pid is None:
        return "the receiver was not running"
    _terminate(pid)
    _write_state(cfg, dataclasses.replace(state, pid=None))
    return f"stopped the receiver (pid {pid})"


def stop_for_good(cfg: Config) -> str:
    """For promote: no more pushes from the old master, not even after a reboot."""
    return stop(cfg, for_good=True)


def status(cfg: Config) -> Dict[str, Any]:
    manager = _manager(_read_state(cfg))
    if manager == "systemd":
        running = process.succeeds(["systemctl", "is-active", "--quiet", UNIT])
        pid = None
    else:
        pid = _our_pid(cfg)
        running = pid is not None
    fp = None
    with contextlib.suppress(OSError, ValueError):
        fp = file_fingerprint(cfg.receiver.tls_cert)
    return {
        "running": running,
        "manager": manager,
        "pid": pid,
        "listen": cfg.receiver.listen,
        "repo_dir": cfg.receiver.repo_dir,
        "fingerprint": fp,
    }
