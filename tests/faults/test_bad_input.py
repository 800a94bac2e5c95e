"""Bad input to restore and promote: one line naming what is wrong, a non-zero exit, nothing changed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Dict, Tuple

import yaml

from tests.faults.helpers import clean_failure, snapshot_ok
from tests.shipperenv import VENV_BIN, ShipperEnv


def state_of(folder: Path) -> Dict[str, bytes]:
    """Every file under folder and its bytes: what "nothing changed" compares (the host lock aside)."""
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>"
        for p in sorted(folder.rglob("*"))
        if p.name != "lock"
    }


def test_restore_into_a_file_or_below_one_is_refused(fresh_repo: ShipperEnv, tmp_path: Path):
    env = fresh_repo
    (env.src / "a.txt").write_text("a\n")
    snapshot_ok(env)
    target = tmp_path / "a-file"
    target.write_text("not a folder\n")
    for given in (target, target / "sub"):
        failed = env.run("restore", "latest", "--target", str(given))
        err = clean_failure(failed)
        assert len(err.strip().splitlines()) == 1, err
        assert str(given) in err and "not a folder" in err, err
        assert target.read_text() == "not a folder\n"


def slave_of(env: ShipperEnv, base: Path) -> Tuple[Path, Path]:
    """A slave's config (the master's repository by local path) and its state folder."""
    settings = json.loads(json.dumps(env.settings))
    settings.update(role="slave", state_dir=str(base / "slave-state"))
    settings["repository"]["local_path"] = settings["repository"]["url"]
    config = base / "slave.yml"
    config.write_text(yaml.safe_dump(settings, sort_keys=False))
    return config, base / "slave-state"


def test_promote_with_a_file_as_root_fails_preflight_before_anything_changes(
    fresh_repo: ShipperEnv, tmp_path: Path
):
    env = fresh_repo
    (env.src / "a.txt").write_text("a\n")
    snapshot_ok(env)
    config, state = slave_of(env, tmp_path)
    state.mkdir()
    root = tmp_path / "root-file"
    root.write_text("a file\n")
    before = state_of(tmp_path)
    for given, args in ((root, ["--dry-run"]), (root, ["--yes"]), (root / "sub", ["--yes"])):
        failed = subprocess.run(
            [str(VENV_BIN / "shipper"), "promote", "--root", str(given), *args],
            env={**env.env(), "SHIPPER_CONFIG": str(config)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        clean_failure(failed)
        assert f"FAIL root: --root {given}" in failed.stdout, failed.stdout
        assert "receiver" not in failed.stdout.split("FAIL root")[1], "the plan ran"
        assert state_of(tmp_path) == before  # no journal, the receiver untouched, role slave
