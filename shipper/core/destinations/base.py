"""What a destination is: where sets go, and how restic opens it."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from shipper.core.config import read_secret


@dataclass(frozen=True)
class Repository:
    """Where a repository is and how restic opens it: the arguments every restic call gets."""

    url: str
    password_file: str
    cacert: Optional[str] = None
    rest_user: Optional[str] = None
    rest_password_file: Optional[str] = None
    lock_wait: int = 120
    network_timeout: int = 180
    # (environment variable, root-only file): read into the environment of restic's own
    # child only (S3 credentials), never onto a command line or into shipper's environment.
    secret_env_files: Tuple[Tuple[str, str], ...] = ()
    options: Tuple[str, ...] = ()  # restic -o settings (not secrets)
    what: str = "receiver"  # for error texts: "cannot reach the <what> at ..."
    unreachable_advice: str = ""  # what to do then; empty: the slave's receiver advice
    full_advice: str = ""  # what to do when it has no space left; empty: the slave's advice

    def secret_env(self) -> Dict[str, str]:
        return {name: read_secret(path) for name, path in self.secret_env_files}

    def location(self) -> str:
        """The URL with the transport credential in it: a secret."""
        if not (self.rest_user and self.url.startswith("rest:")):
            return self.url
        scheme, _, rest = self.url[len("rest:") :].partition("://")
        user = urllib.parse.quote(self.rest_user, safe="")
        password = urllib.parse.quote(read_secret(self.rest_password_file or ""), safe="")
        return f"rest:{scheme}://{user}:{password}@{rest}"

    @property
    def display(self) -> str:
        return self.url


class Destination:
    """One place sets go. A kind answers the questions below that concern it.

    cfg is the loaded config (core.config.Config); url the repository URL or path.
    """

    kind = ""

    def __init__(self, cfg: Any, url: str, entry: Any = None):
        self.cfg = cfg
        self.url = url
        self.entry = entry  # core.config.DestinationConfig; None for `repository`
        self.name = entry.name if entry is not None else "primary"

    def repository(self) -> Repository:
        """The restic repository arguments (URL, password and transport credentials)."""
        raise NotImplementedError

    def probe(self) -> Optional[str]:
        """Why the destination cannot be reached now, in a sentence; None when it can."""
        return None

    def describe(self) -> str:
        return self.url

    def setup_hints(self) -> List[str]:
        """What an operator does when probe() fails."""
        return []

    def refuses_new_repository(self, copied_through: str, record: Path) -> Optional[str]:
        """Why no repository may be made here now that sets up to `copied_through` (empty:
        none) were copied before, by `record`; None lets a copy start the destination over."""
        return None

    def local_folder(self) -> Optional[Path]:
        """The repository as a folder on this machine, if it is one."""
        return None
