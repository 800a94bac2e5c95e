"""Destinations: where sets go, one module per kind behind the Destination interface.

To add a kind (S3 is next): a module with a Destination subclass (its
restic repository arguments, probe, describe, setup hints), its settings in
core/schema.yaml, and one line in KINDS, keyed by the URL scheme restic uses.
"""

from __future__ import annotations

from typing import Any, Dict, Type

from shipper.core.destinations.base import Destination, Repository
from shipper.core.destinations.local import LocalPath
from shipper.core.destinations.rest import RestServer

# restic URL scheme -> kind; a URL without a known scheme is a local path.
KINDS: Dict[str, Type[Destination]] = {
    "rest": RestServer,
    "local": LocalPath,
}

__all__ = ["Destination", "KINDS", "LocalPath", "Repository", "RestServer", "for_config"]


def for_config(cfg: Any, remote: bool = False) -> Destination:
    """The configured destination; a slave reads its local copy unless `remote`."""
    repo = cfg.repository
    if repo.local_path and cfg.role == "slave" and not remote:
        return LocalPath(cfg, repo.local_path, own_copy=True)
    scheme, colon, _ = repo.url.partition(":")
    if not colon:
        return LocalPath(cfg, repo.url)
    # Another restic URL (sftp:, s3:, ...) until it has a kind: passed to restic as it is.
    return KINDS.get(scheme, RestServer)(cfg, repo.url)
