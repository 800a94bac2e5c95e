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
            "unreachable_advice": f"check that its disk is mounted and destinations.{self.name}.url",
        }

    def probe(self) -> Optional[str]:
        """A folder that cannot be one (a file in its place, no parent: a disk not
        mounted) fails at once; restic would retry it for network_timeout."""
        folder = self.local_folder()
        if self.entry is None or folder is None:
            return None
        if folder.exists() and not folder.is_dir():
            return f"the destination folder {folder} is not a folder; check destinations.{self.name}.url"
        if not folder.exists() and not folder.parent.is_dir():
            return (
                f"the destination folder {folder} is missing and so is {folder.parent}: "
                f"is its disk mounted? check destinations.{self.name}.url"
            )
        return None

    def refuses_new_repository(self, copied_through: str, record: Path) -> Optional[str]:
        """A folder that held copies and now holds no repository is most often a disk that
        is not mounted: making a new repository would fill the disk below the mount point."""
        if self.entry is None or not copied_through:
            return None
        return (
            f"the destination folder {self.local_folder() or self.url} holds no repository, yet "
            f"sets up to {copied_through} were copied there: is its disk mounted? Mount it and "
            f"run again; to start the copy over in this folder, remove {record}"
        )

    def local_folder(self) -> Optional[Path]:
        url = self.url[len("local:") :] if self.url.startswith("local:") else self.url
        return Path(url) if url.startswith("/") else None
