"""`shipper setup slave`, `shipper setup master`, `shipper enable` / `disable`.

Both setups take the same shared password file and derive every secret from
it (shipper.secrets). Each step compares before it writes, so running a setup
again changes only what differs and says what it changed. Setup master checks
everything on the slave side first (reachable, the certificate's fingerprint,
the credential) and writes nothing on the master when one of them fails.

The config file is edited as text, key by key, so the operator's comments and
other keys stay as they were.
"""

from __future__ import annotations

import os
import re
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from shipper.core import config, secrets, sets
from shipper.core.config import Config
from shipper.core.config_edit import KeyPath, set_enabled, update_config
from shipper.core.errors import ShipperError
from shipper.core.restic import Repository, Restic, WrongPassword
from shipper.master import snapshot
from shipper.slave import receiver

DEFAULT_ETC = "/etc/shipper"
DEFAULT_USER = "master"
DAEMON_UNIT = "shipper.service"
PRUNE_TIMER = "shipper-prune.timer"


@dataclass
class Outcome:
    """What a setup did: changes, notes for the operator, and values to print."""

    changes: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    values: Dict[str, Any] = field(default_factory=dict)

    def changed(self, what: str) -> None:
        self.changes.append(what)

    def to_json(self) -> Dict[str, Any]:
        return {"changes": self.changes, "notes": self.notes, **self.values}


def wake_daemon() -> None:
    """Have a running shipper.service read the config now (SIGHUP) instead of on its next tick."""
    if receiver.systemd_running():
        receiver.systemctl("try-reload-or-restart", DAEMON_UNIT)


def _existing(path: str) -> Optional[Config]:
    if not Path(path).exists():
        return None
    return config.load(path)


# ---------------------------------------------------------------- setup slave


@dataclass
class SlaveOptions:
    config_path: str
    password_file: str
    listen: Optional[str] = None
    repo_dir: Optional[str] = None
    etc_dir: Optional[str] = None
    state_dir: Optional[str] = None
    names: List[str] = field(default_factory=list)
    user: str = DEFAULT_USER
    service_manager: str = "auto"
    new_certificate: bool = False


SLAVE_HEADER = """\
# shipper on the slave, written by `shipper setup slave`. Running it again
# changes only the keys it owns (role, repository, receiver); the rest is
# yours: `shipper config generate` prints every key with its default.
"""


@dataclass(frozen=True)
class SlavePaths:
    listen: str
    repo_dir: str
    password_file: str
    tls_cert: str
    tls_key: str
    htpasswd: str


def _slave_paths(opts: SlaveOptions, old: Optional[Config]) -> SlavePaths:
    """Flags win; else what the config already says; else the defaults under --etc-dir."""
    etc = Path(opts.etc_dir or DEFAULT_ETC)
    repo_dir = opts.repo_dir or (old.receiver.repo_dir if old else "/var/lib/shipper/repo")
    return SlavePaths(
        listen=opts.listen or (old.receiver.listen if old else ":8000"),
        repo_dir=os.path.abspath(repo_dir),
        password_file=_pick(opts.etc_dir, old and old.repository.password_file, etc / "secret"),
        tls_cert=_pick(opts.etc_dir, old and old.receiver.tls_cert, etc / "tls" / "receiver.crt"),
        tls_key=_pick(opts.etc_dir, old and old.receiver.tls_key, etc / "tls" / "receiver.key"),
        htpasswd=_pick(opts.etc_dir, old and old.receiver.htpasswd, etc / "htpasswd"),
    )


def setup_slave(opts: SlaveOptions) -> Outcome:
    shared = secrets.derive(secrets.read_shared(opts.password_file))
    _check_user(opts.user)
    old = _existing(opts.config_path)
    paths = _slave_paths(opts, old)
    listen_host, port = receiver.split_listen(paths.listen)
    rest_server = receiver.binary()
    manager = receiver.resolve_manager(opts.service_manager)
    local = os.path.join(paths.repo_dir, opts.user)
    _check_existing_repository(local, shared.restic_password, paths.password_file)
    out = Outcome()
    _slave_files(opts, paths, shared, out)
    _slave_config(opts, paths, local, out)
    cfg = config.load(opts.config_path)
    message = receiver.start(cfg, manager, restart=bool(out.changes))
    if message.startswith(("started", "restarted")):
        out.changed(message)
    else:
        out.notes.append(message)
    _enable_prune_timer(manager, out)
    _note_config_path(manager, opts.config_path, out)
    out.values.update(
        fingerprint=receiver.file_fingerprint(paths.tls_cert),
        rest_server=rest_server,
        names=receiver.certificate_names(Path(paths.tls_cert).read_bytes()),
        repository=local,
        port=port,
    )
    return out


def _check_existing_repository(local: str, restic_password: str, beside: str) -> None:
    """A repository already here must open with the password derived now, before any write."""
    if not os.path.exists(os.path.join(local, "config")):
        return
    folder = os.path.dirname(beside) if os.path.isdir(os.path.dirname(beside)) else None
    with tempfile.NamedTemporaryFile("w", prefix=".shipper-check-", dir=folder) as handle:
        handle.write(restic_password + "\n")
        handle.flush()
        try:
            Restic(Repository(local, handle.name)).exists()
        except WrongPassword:
            raise ShipperError(
                f"the repository {local} was made with another shared password: give the "
                "password file used the first time (or add a key for the new password with "
                "`restic key add`). Nothing was written"
            ) from None


def _slave_files(
    opts: SlaveOptions, paths: SlavePaths, shared: secrets.Derived, out: Outcome
) -> None:
    """The repository folder, the secrets and the certificate, each only if it differs."""
    if not os.path.isdir(paths.repo_dir):
        os.makedirs(paths.repo_dir, mode=0o700)
        out.changed(f"created the repository folder {paths.repo_dir}")
    if secrets.write_secret(paths.password_file, shared.restic_password):
        out.changed(f"wrote the repository password to {paths.password_file} (0600)")
    if secrets.write_htpasswd(paths.htpasswd, opts.user, shared.receiver_password):
        out.changed(
            f"wrote the receiver's htpasswd entry for {opts.user!r} to {paths.htpasswd} (0600)"
        )
    listen_host, _ = receiver.split_listen(paths.listen)
    wanted = [receiver.normalize_name(n) for n in opts.names]
    if _specific(listen_host):
        wanted.append(receiver.normalize_name(listen_host))
    if _certificate_needed(paths.tls_cert, paths.tls_key, wanted, opts.new_certificate):
        names = _unique(wanted + receiver.local_names(listen_host))
        receiver.make_certificate(paths.tls_key, paths.tls_cert, names)
        out.changed(
            f"made a new TLS key and self-signed certificate {paths.tls_cert} for "
            f"{', '.join(names)}"
        )


def _slave_config(opts: SlaveOptions, paths: SlavePaths, local: str, out: Outcome) -> None:
    values: Dict[KeyPath, Any] = {
        ("role",): "slave",
        ("repository", "url"): local,
        ("repository", "password_file"): paths.password_file,
        ("repository", "local_path"): local,
        ("receiver", "listen"): paths.listen,
        ("receiver", "repo_dir"): paths.repo_dir,
        ("receiver", "tls_cert"): paths.tls_cert,
        ("receiver", "tls_key"): paths.tls_key,
        ("receiver", "htpasswd"): paths.htpasswd,
    }
    if opts.state_dir:
        values[("state_dir",)] = os.path.abspath(opts.state_dir)
    if update_config(opts.config_path, values, SLAVE_HEADER):
        out.changed(f"wrote {opts.config_path}")


def _check_user(user: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9@._-]+", user):
        raise ShipperError(
            f"--user {user!r}: use letters, digits and @ . _ - only (rest-server's rule)"
        )


def _pick(etc_flag: Optional[str], existing: Any, default: Path) -> str:
    """--etc-dir wins; else what the config already says; else the default."""
    if etc_flag or not existing:
        return str(default.absolute())
    return str(existing)


def _specific(host: str) -> bool:
    return host not in ("", "0.0.0.0", "::")


def _unique(names: List[str]) -> List[str]:
    out: List[str] = []
    for name in names:
        if name and name not in out:
            out.append(name)
    return out


def _certificate_needed(cert: str, key: str, names: List[str], force: bool) -> bool:
    if force or not (os.path.exists(cert) and os.path.exists(key)):
        return True
    try:
        present = receiver.certificate_names(Path(cert).read_bytes())
    except ShipperError:
        return True
    missing = [name for name in names if receiver.normalize_name(name) not in present]
    return bool(missing) or receiver.certificate_expires_soon(cert)


def _note_config_path(manager: str, path: str, out: Outcome) -> None:
    if manager == "systemd" and os.path.abspath(path) != config.DEFAULT_PATH:
        out.notes.append(
            f"the systemd units read {config.DEFAULT_PATH}, not {path}: point them at it with "
            f"`systemctl edit` (Environment=SHIPPER_CONFIG={os.path.abspath(path)})"
        )


def _enable_prune_timer(manager: str, out: Outcome) -> None:
    if manager == "systemd":
        receiver.systemctl("enable", "--now", PRUNE_TIMER)
        out.notes.append(f"retention runs from {PRUNE_TIMER} (`shipper prune`)")
    else:
        out.notes.append(
            "systemd does not run this machine: run `shipper prune` daily yourself (cron) "
            "to apply the retention policy"
        )


# ---------------------------------------------------------------- setup master


@dataclass
class MasterOptions:
    config_path: str
    slave: str
    password_file: str
    fingerprint: str
    etc_dir: Optional[str] = None
    state_dir: Optional[str] = None
    user: str = DEFAULT_USER
    service_manager: str = "auto"
    first_set: bool = True


MASTER_HEADER = """\
# shipper on the master, written by `shipper setup master`. Running it again
# changes only the keys it owns (role, repository, enabled); the rest is
# yours: `shipper config generate` prints every key with its default.
#
# The file paths each set holds; add yours, e.g. [/etc, /srv, /var/www].
paths: []
enabled: false
"""


@dataclass
class SlaveCheck:
    host: str
    port: int
    der: bytes
    fingerprint: str
    repository_exists: bool


def check_slave(opts: MasterOptions, receiver_password: str) -> SlaveCheck:
    """Everything about the slave, before anything is written here."""
    wanted = receiver.normalize_fingerprint(opts.fingerprint)
    host, port = receiver.split_hostport(opts.slave)
    der = receiver.fetch_certificate(host, port)
    found = receiver.fingerprint(der)
    where = f"{host}:{port}"
    if found != wanted:
        raise receiver.FingerprintMismatch(
            f"the receiver at {where} presents a certificate with SHA-256 fingerprint {found}, "
            f"not the {wanted} given with --fingerprint: check the fingerprint `shipper setup slave` "
            "printed (and that --slave names the slave, not another machine). Nothing was written"
        )
    names = receiver.certificate_names(der)
    if receiver.normalize_name(host) not in names:
        raise receiver.ReceiverError(
            f"the slave's certificate names {', '.join(names)}, not {host}: give --slave one of "
            f"those, or run `shipper setup slave --name {host} --new-certificate` on the slave "
            "(its fingerprint changes). Nothing was written"
        )
    exists = receiver.probe_repository(host, port, opts.user, receiver_password, der)
    return SlaveCheck(host, port, der, found, exists)


def rest_url(host: str, port: int, user: str) -> str:
    bracketed = f"[{host}]" if ":" in host else host
    return f"rest:https://{bracketed}:{port}/{user}/"


def setup_master(opts: MasterOptions, announce: Optional[Callable[[str], None]] = None) -> Outcome:
    shared = secrets.derive(secrets.read_shared(opts.password_file))
    _check_user(opts.user)
    old = _existing(opts.config_path)
    manager = receiver.resolve_manager(opts.service_manager)
    slave = check_slave(opts, shared.receiver_password)
    out = Outcome()
    _master_files_and_config(opts, old, slave, shared, out)
    cfg = config.load(opts.config_path)
    restic = Restic.for_config(cfg, remote=True)
    if not slave.repository_exists and restic.init():
        out.changed(f"created the repository at {cfg.repository.url}")
    _first_set(cfg, restic, opts, out, announce)
    _enable_schedule(cfg, opts, manager, out)
    return out


def _master_files_and_config(
    opts: MasterOptions,
    old: Optional[Config],
    slave: SlaveCheck,
    shared: secrets.Derived,
    out: Outcome,
) -> None:
    etc = Path(opts.etc_dir or DEFAULT_ETC)
    repo = old.repository if old else None
    password_file = _pick(opts.etc_dir, repo and repo.password_file, etc / "secret")
    rest_password_file = _pick(
        opts.etc_dir, repo and repo.rest_password_file, etc / "receiver-password"
    )
    cacert = _pick(opts.etc_dir, repo and repo.cacert, etc / "tls" / "slave.crt")
    if secrets.write_secret(password_file, shared.restic_password):
        out.changed(f"wrote the repository password to {password_file} (0600)")
    if secrets.write_secret(rest_password_file, shared.receiver_password):
        out.changed(f"wrote the receiver credential to {rest_password_file} (0600)")
    if write_certificate(cacert, slave.der):
        out.changed(f"pinned the slave's certificate {slave.fingerprint} in {cacert}")
    values: Dict[KeyPath, Any] = {
        ("role",): "master",
        ("repository", "url"): rest_url(slave.host, slave.port, opts.user),
        ("repository", "password_file"): password_file,
        ("repository", "cacert"): cacert,
        ("repository", "rest_user"): opts.user,
        ("repository", "rest_password_file"): rest_password_file,
    }
    if opts.state_dir:
        values[("state_dir",)] = os.path.abspath(opts.state_dir)
    if update_config(opts.config_path, values, MASTER_HEADER):
        out.changed(f"wrote {opts.config_path}")


def write_certificate(path: str, der: bytes) -> bool:
    pem = ssl.DER_cert_to_PEM_cert(der)
    target = Path(path)
    if target.exists() and target.read_text() == pem:
        return False
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(pem)
    os.chmod(tmp, 0o644)
    os.replace(tmp, target)
    return True


def _first_set(
    cfg: Config,
    restic: Restic,
    opts: MasterOptions,
    out: Outcome,
    announce: Optional[Callable[[str], None]],
) -> None:
    newest = sets.newest(sets.group(restic.snapshots()))
    if newest is not None:
        out.notes.append(f"the repository holds sets already (newest complete: {newest.id})")
        out.values["set"] = {"id": newest.id, "status": newest.status, "taken": False}
        return
    if not opts.first_set:
        out.notes.append("no first set taken (--no-first-set)")
        return
    result = snapshot.take(cfg, restic, announce=announce)
    out.changed(f"took the first set {result.set_id}: {result.status}")
    out.values["set"] = {"id": result.set_id, "status": result.status, "taken": True}
    if result.failures:
        out.notes.append(
            "; ".join(f"part {p.name} {p.outcome}: {p.error}" for p in result.failures)
        )


def _enable_schedule(cfg: Config, opts: MasterOptions, manager: str, out: Outcome) -> None:
    if set_enabled(opts.config_path, True):
        out.changed("enabled the schedule (enabled: true)")
    _note_config_path(manager, opts.config_path, out)
    if manager == "systemd":
        receiver.systemctl("enable", "--now", DAEMON_UNIT)
        wake_daemon()
        out.notes.append(f"sets are taken by {DAEMON_UNIT} on the schedule {cfg.schedule!r}")
    else:
        out.notes.append(
            "systemd does not run this machine: start `shipper daemon` yourself to take sets "
            f"on the schedule {cfg.schedule!r}"
        )


def config_path_for(explicit: Optional[str], etc_dir: Optional[str]) -> str:
    """-c, $SHIPPER_CONFIG, or shipper.yml in --etc-dir (default /etc/shipper)."""
    chosen = explicit or os.environ.get("SHIPPER_CONFIG")
    if chosen:
        return chosen
    return os.path.join(etc_dir or DEFAULT_ETC, "shipper.yml")
