"""A repository in a folder on this machine: the slave reading its own copy, or a local path."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

from shipper.core.destinations.base import Destination, Repository


class LocalPath(Destination):
    kind = "local"

    def __init__(self, cfg: Any, url: str, own_copy: bool = False, entry: Any = None):
        super().__init__(cfg, url, entry)
        self.own_copy = own_copy  # the slave's local_path: no transport settings apply

    def repository(self) -> Repository:
        repo = self.cfg.repository
        return Repository(
            url=self.url,
            password_file=repo.password_file,
            cacert=None if self.own_copy or self.entry else repo.cacert,
            rest_user=None if self.own_copy or self.entry else repo.rest_user,
            rest_password_file=repo.rest_password_file,
            lock_wait=repo.lock_wait,
            network_timeout=repo.network_timeout,
            **(self._destination_texts() if self.entry else {}),
        )

    def _destination_texts(self) -> Dict[str, str]:
        return {
            "what": "destination folder",
            "full_advice": "free space on its disk (shipper only adds to a copy; "
            "forget and prune there with restic)",
        }

    def local_folder(self) -> Optional[Path]:
        url = self.url[len("local:") :] if self.url.startswith("local:") else self.url
        return Path(url) if url.startswith("/") else None
