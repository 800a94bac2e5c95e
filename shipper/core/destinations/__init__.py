"""Destinations: where sets go, one module per kind behind the Destination interface.

To add a kind (S3 is next): a module with a Destination subclass (its
restic repository arguments, probe, describe, setup hints), its settings in
core/schema.yaml, and one line in KINDS, keyed by the URL scheme restic uses.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Type

from shipper.core.destinations.base import Destination, Repository
from shipper.core.destinations.local import LocalPath
from shipper.core.destinations.rest import RestServer
from shipper.core.destinations.s3 import S3Bucket
from shipper.core.errors import ShipperError

# restic URL scheme -> kind; a URL without a known scheme is a local path.
KINDS: Dict[str, Type[Destination]] = {
    "rest": RestServer,
    "local": LocalPath,
    "s3": S3Bucket,
}

__all__ = [
    "Destination",
    "KINDS",
    "LocalPath",
    "Repository",
    "RestServer",
    "S3Bucket",
    "copies",
    "for_config",
    "named",
]


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


def _entry_destination(cfg: Any, entry: Any) -> Destination:
    if entry.kind == "s3":
        return S3Bucket(cfg, S3Bucket.url_for(entry.endpoint, entry.bucket), entry)
    if entry.kind == "local":
        return LocalPath(cfg, entry.url, entry=entry)
    return RestServer(cfg, entry.url, entry)


def copies(cfg: Any) -> List[Destination]:
    """The configured `destinations`: each gets whole sets copied from `repository`."""
    return [_entry_destination(cfg, entry) for entry in cfg.destinations]


def named(cfg: Any, name: Optional[str], remote: bool = False) -> Destination:
    """The destination called `name`; None or "primary" is `repository`."""
    if name in (None, "primary"):
        return for_config(cfg, remote)
    for destination in copies(cfg):
        if destination.name == name:
            return destination
    known = ", ".join(["primary", *(d.name for d in copies(cfg))])
    raise ShipperError(f"no destination named {name!r} in {cfg.source}; configured: {known}")
