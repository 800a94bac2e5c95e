"""The one shared secret and what shipper derives from it.

The operator gives the same password file to `shipper setup` on both servers
(the HotSync model). shipper never stores or sends that password: it derives
two unrelated values from it, the restic repository password and the
receiver (rest-server) credential, and keeps each in its own root-only file.
Knowing one derived value tells nothing about the other or the shared password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import List

from shipper.core.config import check_secret_file, read_secret
from shipper.core.errors import ShipperError
from shipper.core.files import replace_file

RESTIC_PURPOSE = b"shipper restic repository"
RECEIVER_PURPOSE = b"shipper receiver"
MINIMUM_LENGTH = 12


@dataclass(frozen=True)
class Derived:
    restic_password: str
    receiver_password: str

    def __repr__(self) -> str:
        return "Derived(<secret>)"


def derive_one(shared: str, purpose: bytes) -> str:
    return hmac.new(shared.encode(), purpose, hashlib.sha256).hexdigest()


def derive(shared: str) -> Derived:
    return Derived(derive_one(shared, RESTIC_PURPOSE), derive_one(shared, RECEIVER_PURPOSE))


def read_shared(path: str) -> str:
    """The shared password from --password-file: a root-only file, long enough."""
    problems = check_secret_file(path, "--password-file")
    if problems:
        raise ShipperError(problems[0])
    try:
        value = read_secret(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ShipperError(f"--password-file: cannot read {path}: {exc}") from None
    if len(value) < MINIMUM_LENGTH:
        raise ShipperError(
            f"--password-file {path}: the shared password (its first line) has {len(value)} "
            f"characters; use at least {MINIMUM_LENGTH}, e.g. `openssl rand -base64 32 > {path}`, "
            "and give the same file on both servers"
        )
    return value


def write_secret(path: str, value: str) -> bool:
    """Put value in a 0600 file (parents 0700); False when it already held it."""
    target = Path(path)
    if _holds(target, value):
        return False
    _write_private(target, value + "\n")
    return True


def _holds(target: Path, value: str) -> bool:
    if check_secret_file(str(target), ""):
        return False
    try:
        return read_secret(str(target)) == value
    except (OSError, UnicodeDecodeError):
        return False


def _write_private(target: Path, text: str) -> None:
    replace_file(target, text, sync=True)


# ---------------------------------------------------------------- htpasswd


def htpasswd_entry(user: str, password: str) -> str:
    """One htpasswd line in the {SHA} form rest-server reads.

    rest-server 0.13 checks only bcrypt and {SHA} entries. The credential is a
    256-bit derived value, not a word a person chose, so a slow hash would add
    no strength; {SHA} needs no extra package and no password on a command line.
    """
    digest = base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()
    return f"{user}:{{SHA}}{digest}"


def htpasswd_verifies(line: str, user: str, password: str) -> bool:
    return hmac.compare_digest(line.strip(), htpasswd_entry(user, password))


def write_htpasswd(path: str, user: str, password: str) -> bool:
    """Make user's entry match password, keeping other users' lines; False if it did."""
    target = Path(path)
    lines: List[str] = []
    if target.exists():
        lines = target.read_text().splitlines()
    ours = [line for line in lines if line.split(":", 1)[0] == user]
    current = len(ours) == 1 and htpasswd_verifies(ours[0], user, password)
    if current and not check_secret_file(path, ""):
        return False
    kept = [line for line in lines if line.split(":", 1)[0] != user]
    _write_private(target, "\n".join([*kept, htpasswd_entry(user, password)]) + "\n")
    return True
