"""The README's first command: the main job on the embedded default, end to end.

Run from a folder only root can enter, as a clone in /root or under
`mktemp -d` is: PostgreSQL's own user must still reach its data.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.shipperenv import ROOT


def test_the_demo_runs_from_a_root_only_folder(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    env = {**os.environ, "SHIPPER_DEMO_DIR": str(private / "demo-run")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "OK: promoted in" in done.stdout, done.stdout[-3000:]
    assert "files, databases and logins equal the master's last set" in done.stdout
