"""An S3-compatible bucket (Ceph RGW, SeaweedFS, a cloud provider): the offsite copy.

The access key id and secret live in root-only files named by the config;
restic gets them in its own environment (AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY), never on a command line.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any, Dict, List, Optional, Tuple

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
            full_advice="raise the bucket's quota or free space in the store",
            # Without a region restic asks the store for the bucket's location first, and a
            # missing bucket then reads as a network error retried for network_timeout.
            # minio-go retries each request 10 times, each up to network_timeout, before
            # restic's own retry (which shipper cuts at network_timeout) even starts: a
            # stalled store held a copy 11x network_timeout. One attempt; restic retries.
            options=(f"s3.region={entry.region or DEFAULT_REGION}", "s3.retries=1"),
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


# ---------------------------------------------------------------- what `setup destination s3` prints

LOCK_NOTE = (
    "Delete stays in the policy because restic removes its own lock file (locks/) at the end "
    "of every command; without it each copy fails or leaves a lock behind. What protects the "
    "sets is Object Lock: with default COMPLIANCE retention a delete (or forget/prune with "
    "these keys) only adds a delete marker, and every object version stays until its "
    "retention ends. The keys need no s3:CreateBucket: create the bucket with the commands "
    "below."
)


def _bucket_and_prefix(bucket: str) -> Tuple[str, str]:
    name, _, prefix = bucket.strip("/").partition("/")
    return name, prefix


def bucket_policy(bucket: str) -> Dict[str, Any]:
    """Least privilege for restic on bucket[/prefix]: list the prefix; get, put, delete in it."""
    name, prefix = _bucket_and_prefix(bucket)
    listing: Dict[str, Any] = {
        "Sid": "ShipperList",
        "Effect": "Allow",
        # No s3:GetBucketLocation: shipper always gives restic the region. No
        # s3:CreateBucket: the bucket is made beforehand, with Object Lock.
        "Action": ["s3:ListBucket"],
        "Resource": [f"arn:aws:s3:::{name}"],
    }
    if prefix:
        listing["Condition"] = {"StringLike": {"s3:prefix": [f"{prefix}/*", prefix]}}
    objects = {
        "Sid": "ShipperObjects",
        "Effect": "Allow",
        "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
        "Resource": [f"arn:aws:s3:::{name}/{prefix + '/' if prefix else ''}*"],
    }
    return {"Version": "2012-10-17", "Statement": [listing, objects]}


def object_lock_commands(endpoint: str, bucket: str, region: Optional[str], days: int) -> List[str]:
    """aws CLI commands: the bucket with Object Lock, its default retention, and a lifecycle
    rule that removes deleted (noncurrent) versions and bare delete markers once unlocked."""
    name, prefix = _bucket_and_prefix(bucket)
    aws = f"aws --endpoint-url {endpoint} s3api"
    create = f"{aws} create-bucket --bucket {name} --object-lock-enabled-for-bucket"
    if region and region != DEFAULT_REGION:
        create += f" --create-bucket-configuration LocationConstraint={region}"
    retention = {
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": days}},
    }
    rule = {
        "ID": "shipper-expire-deleted-versions",
        "Status": "Enabled",
        "Filter": {"Prefix": f"{prefix}/" if prefix else ""},
        "NoncurrentVersionExpiration": {"NoncurrentDays": days + 1},
        "Expiration": {"ExpiredObjectDeleteMarker": True},
    }
    return [
        create,
        f"{aws} put-object-lock-configuration --bucket {name} "
        f"--object-lock-configuration '{json.dumps(retention, separators=(',', ':'))}'",
        f"{aws} put-bucket-lifecycle-configuration --bucket {name} "
        f"--lifecycle-configuration '{json.dumps({'Rules': [rule]}, separators=(',', ':'))}'",
    ]
