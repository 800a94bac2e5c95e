"""`shipper setup destination slave|s3 NAME`: one more place every set goes, one command each.

Run where the config with `repository` lives (the master for push, a slave for
pull). Like `setup master`, everything is checked before anything is written
(the receiver's fingerprint and credential, or the bucket's keys), the config
entry goes in through core/config_edit (the operator's comments stay), and a
second run changes nothing. The repository on the new destination is created
by the first copy, with `repository`'s chunker parameters so copies deduplicate.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

from shipper.core import config, secrets
from shipper.core.config import Config, DestinationConfig, check_secret_file, read_secret
from shipper.core.config_edit import update_list_entry
from shipper.core.destinations import S3Bucket
from shipper.core.destinations.s3 import LOCK_NOTE, bucket_policy, object_lock_commands
from shipper.core.errors import ShipperError
from shipper.core.restic import Restic
from shipper.setup import provision

__all__ = ["LOCK_NOTE", "setup_s3_destination", "setup_slave_destination"]


@dataclass
class DestinationOptions:
    config_path: str
    name: str
    dry_run: bool = False


@dataclass
class SlaveDestinationOptions(DestinationOptions):
    slave: str = ""
    fingerprint: str = ""
    password_file: str = ""
    user: str = provision.DEFAULT_USER
    etc_dir: Optional[str] = None


@dataclass
class S3DestinationOptions(DestinationOptions):
    endpoint: str = ""
    bucket: str = ""
    region: Optional[str] = None
    access_key_id_file: str = ""
    secret_access_key_file: str = ""
    retention_days: int = 30


def _load(opts: DestinationOptions) -> Config:
    if not Path(opts.config_path).exists():
        raise ShipperError(
            f"{opts.config_path}: no such config file; run `shipper setup master` (or "
            "`shipper setup slave`) first, then add destinations"
        )
    if opts.name == "primary":
        raise ShipperError("the name 'primary' is `repository` itself; pick another name")
    return config.load(opts.config_path)


def _write_entry(opts: DestinationOptions, entry: Dict[str, Any], out: provision.Outcome) -> None:
    if update_list_entry(opts.config_path, "destinations", entry, dry_run=opts.dry_run):
        verb = "would write" if opts.dry_run else "wrote"
        out.changed(f"{verb} destinations.{opts.name} ({entry['kind']}) in {opts.config_path}")
        if not opts.dry_run:
            provision.wake_daemon()
    out.values["entry"] = entry


# ---------------------------------------------------------------- a second slave


def slave_address(text: str) -> str:
    """HOST[:PORT] from --slave, also taken as a rest:https:// URL (its path is ignored)."""
    for prefix in ("rest:", "https://"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    return text.split("/", 1)[0]


def setup_slave_destination(opts: SlaveDestinationOptions) -> provision.Outcome:
    cfg = _load(opts)
    shared = secrets.derive(secrets.read_shared(opts.password_file))
    _check_same_repository_password(cfg, shared.restic_password)
    master_like = provision.MasterOptions(
        config_path=opts.config_path,
        slave=slave_address(opts.slave),
        password_file=opts.password_file,
        fingerprint=opts.fingerprint,
        user=opts.user,
    )
    slave = provision.check_slave(master_like, shared.receiver_password)
    out = provision.Outcome()
    etc = Path(opts.etc_dir) if opts.etc_dir else Path(cfg.repository.password_file).parent
    cacert = str((etc / "tls" / f"{opts.name}.crt").absolute())
    credential = _receiver_password_file(cfg, etc, opts.name, shared.receiver_password)
    if opts.dry_run:
        if not _holds(credential, shared.receiver_password):
            out.changed(f"would write the receiver credential to {credential} (0600)")
        if not _same_certificate(cacert, slave.der):
            out.changed(f"would pin the certificate {slave.fingerprint} in {cacert}")
    else:
        if secrets.write_secret(credential, shared.receiver_password):
            out.changed(f"wrote the receiver credential to {credential} (0600)")
        if provision.write_certificate(cacert, slave.der):
            out.changed(f"pinned {opts.name}'s certificate {slave.fingerprint} in {cacert}")
    entry = {
        "name": opts.name,
        "kind": "slave",
        "url": provision.rest_url(slave.host, slave.port, opts.user),
        "cacert": cacert,
        "rest_user": opts.user,
        "rest_password_file": credential,
    }
    _write_entry(opts, entry, out)
    out.notes.append(_repository_note(slave.repository_exists, opts.name))
    out.values.update(fingerprint=slave.fingerprint, repository_exists=slave.repository_exists)
    return out


def _check_same_repository_password(cfg: Config, restic_password: str) -> None:
    """Copies are written with repository.password_file: the new slave must share it."""
    if read_secret(cfg.repository.password_file) != restic_password:
        raise ShipperError(
            f"--password-file is not the shared password this server was set up with (it does "
            f"not give the password in {cfg.repository.password_file}): copies are written with "
            "that password, so give the same file to `shipper setup slave` on the new slave and "
            "here. Nothing was written"
        )


def _receiver_password_file(cfg: Config, etc: Path, name: str, password: str) -> str:
    """The master's own receiver credential file when it holds the same password (it does
    when both slaves were set up with the same shared password and user), else one per name."""
    mine = cfg.repository.rest_password_file
    if mine and _holds(mine, password):
        return mine
    return str((etc / f"receiver-password-{name}").absolute())


def _holds(path: str, value: str) -> bool:
    try:
        return read_secret(path) == value
    except OSError:
        return False


def _same_certificate(path: str, der: bytes) -> bool:
    target = Path(path)
    return target.exists() and target.read_text() == ssl.DER_cert_to_PEM_cert(der)


def _repository_note(exists: bool, name: str) -> str:
    if exists:
        return f"{name} holds a repository already: the next copy adds the sets it lacks"
    return (
        f"{name} has no repository yet: the next set's copy (or `shipper copy`) creates it with "
        "repository's chunker parameters and copies every set"
    )


# ---------------------------------------------------------------- a bucket


def setup_s3_destination(opts: S3DestinationOptions) -> provision.Outcome:
    cfg = _load(opts)
    key_files = [
        ("--access-key-id-file", opts.access_key_id_file),
        ("--secret-access-key-file", opts.secret_access_key_file),
    ]
    for flag, path in key_files:
        problems = check_secret_file(path, flag)
        if problems:
            raise ShipperError(f"{problems[0]}. Nothing was written")
    entry = {
        "name": opts.name,
        "kind": "s3",
        "endpoint": opts.endpoint.rstrip("/"),
        "bucket": opts.bucket.strip("/"),
        "region": opts.region,
        "access_key_id_file": os.path.abspath(opts.access_key_id_file),
        "secret_access_key_file": os.path.abspath(opts.secret_access_key_file),
    }
    exists = probe_bucket(cfg, entry)
    out = provision.Outcome()
    _write_entry(opts, entry, out)
    if exists:
        out.notes.append("the bucket holds a repository already: the next copy adds what it lacks")
    else:
        out.notes.append(
            "no repository in the bucket yet: the next copy creates it (and the bucket, if "
            "missing, without Object Lock: create the bucket first with the commands below)"
        )
    out.values.update(
        repository_exists=exists,
        policy=bucket_policy(entry["bucket"]),
        commands=object_lock_commands(
            entry["endpoint"], entry["bucket"], opts.region, opts.retention_days
        ),
    )
    return out


def probe_bucket(cfg: Config, entry: Dict[str, Any]) -> bool:
    """Whether the bucket holds a restic repository; raises (one line) when the store cannot
    be reached or refuses the keys. Nothing is written on either side."""
    dest_cfg = DestinationConfig(**entry)
    bucket = S3Bucket(cfg, S3Bucket.url_for(entry["endpoint"], entry["bucket"]), dest_cfg)
    why = bucket.probe()
    if why:
        raise ShipperError(f"{why}. Nothing was written")
    restic = Restic(bucket.repository(), cache_dir=str(cfg.state / "cache"))
    try:
        return restic.exists()
    except ShipperError as exc:
        raise ShipperError(f"{str(exc).splitlines()[0]}. Nothing was written") from None
