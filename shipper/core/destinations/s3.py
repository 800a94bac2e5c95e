"""An S3-compatible bucket (Ceph RGW, SeaweedFS, a cloud provider): the offsite copy.

The access key id and secret live in root-only files named by the config;
restic gets them in its own environment (AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY), never on a command line.
"""

from __future__ import annotations

import urllib.parse
from typing import List, Optional

from shipper.core.destinations.base import Destination, Repository
from shipper.core.destinations.rest import port_answers

DEFAULT_REGION = "us-east-1"


class S3Bucket(Destination):
    kind = "s3"

    @classmethod
    def url_for(cls, endpoint: str, bucket: str) -> str:
        return f"s3:{endpoint.rstrip('/')}/{bucket.strip('/')}"

    def repository(self) -> Repository:
        repo = self.cfg.repository
        entry = self.entry
        env = (
            ("AWS_ACCESS_KEY_ID", entry.access_key_id_file),
            ("AWS_SECRET_ACCESS_KEY", entry.secret_access_key_file),
        )
        return Repository(
            url=self.url,
            password_file=repo.password_file,
            lock_wait=repo.lock_wait,
            network_timeout=repo.network_timeout,
            secret_env_files=env,
            what="object store",
            unreachable_advice=f"check the store, the bucket and destinations.{self.name} (endpoint, key files)",
            # Without a region restic asks the store for the bucket's location first, and a
            # missing bucket then reads as a network error retried for network_timeout.
            options=(f"s3.region={entry.region or DEFAULT_REGION}",),
        )

    def probe(self) -> Optional[str]:
        parts = urllib.parse.urlsplit(self.entry.endpoint)
        if not parts.hostname:
            return None
        port = parts.port or (443 if parts.scheme == "https" else 80)
        why = port_answers(parts.hostname, port)
        if why is None:
            return None
        return f"cannot reach the object store at {parts.hostname}:{port} ({why}); check the store and destinations.{self.name}.endpoint"

    def setup_hints(self) -> List[str]:
        return [f"check the bucket {self.entry.bucket} at {self.entry.endpoint}"]
