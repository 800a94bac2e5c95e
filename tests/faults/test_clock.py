"""The master's clock jumps back an hour between two runs (libfaketime, not the machine's clock).

Set ids sort by time and restic keeps the set's time on every snapshot
(`--time`), so ordering, `latest` and retention all read the same clock.
After a jump back the new id must still come after the last one, and
restic's times must agree with the ids.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path
from typing import List

import yaml

from shipper.core import sets
from tests.faults.helpers import restored_digest, sets_json
from tests.shipperenv import VENV_BIN, ShipperEnv, tree_digest

FAKETIME = shutil.which("faketime")


def snapshot_at(env: ShipperEnv, offset: str = "") -> str:
    """A set taken with the clock moved by `offset` (faketime's -f syntax, e.g. -1h)."""
    prefix: List[str] = [FAKETIME or "faketime", "-f", offset] if offset else []
    done = subprocess.run(
        [*prefix, str(VENV_BIN / "shipper"), "snapshot", "--json"],
        env=env.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["status"] == "complete"
    return data["set_id"]


def test_a_clock_that_jumps_back_keeps_ids_and_restic_times_in_order(
    fresh_repo: ShipperEnv, tmp_path: Path
):
    assert FAKETIME, "faketime is missing: run scripts/bootstrap (Debian package faketime)"
    env = fresh_repo
    (env.src / "state").write_text("first\n")
    first = snapshot_at(env)
    (env.src / "state").write_text("taken an hour 'earlier'\n")
    behind = snapshot_at(env, "-1h")
    behind_state = tree_digest(env.src)
    assert behind > first, f"{behind} sorts before {first}"
    assert sets.id_time(behind) == sets.id_time(first) + dt.timedelta(seconds=1)

    listed = sets_json(env)
    assert [s["id"] for s in listed] == [behind, first]
    assert restored_digest(env, "latest", tmp_path / "latest") == behind_state
    plain = tmp_path / "plain"
    env.restic("restore", "latest", "--target", str(plain))
    assert tree_digest(plain / env.src.relative_to("/")) == behind_state

    # restic's snapshot times are the ids' times, whatever the clock said.
    for snap in json.loads(env.restic("snapshots", "--json").stdout):
        set_id = next(t.split(":", 1)[1] for t in snap["tags"] if t.startswith("shipper-set:"))
        when = dt.datetime.fromisoformat(snap["time"][:19]).replace(tzinfo=dt.timezone.utc)
        if not snap["time"].endswith("Z"):
            when = dt.datetime.fromisoformat(snap["time"][:19] + snap["time"][-6:])
        assert when.astimezone(dt.timezone.utc) == sets.id_time(set_id), snap

    # The clock comes back: the next set is the newest again.
    (env.src / "state").write_text("third\n")
    third = snapshot_at(env)
    assert [s["id"] for s in sets_json(env)] == [third, behind, first]
    assert restored_digest(env, "latest", tmp_path / "third") == tree_digest(env.src)


def test_retention_sees_the_set_taken_after_the_jump_as_the_newest(fresh_repo: ShipperEnv):
    """prune judges by set time: the set taken under the clock set back is the newest it keeps."""
    env = fresh_repo
    (env.src / "f").write_text("x\n")
    first = snapshot_at(env)
    behind = snapshot_at(env, "-1h")
    slave = dict(env.settings, role="slave")
    slave["repository"] = {**env.settings["repository"], "local_path": str(env.repo)}
    view = env.base / "slave.yml"
    view.write_text(yaml.safe_dump(slave))
    plan = json.loads(env.run("-c", str(view), "prune", "--dry-run", "--json", check=True).stdout)
    decisions = {d["id"]: d for d in plan["sets"]}
    assert decisions[behind]["reasons"][0] == "newest complete set", decisions
    assert "newest complete set" not in decisions[first]["reasons"]
