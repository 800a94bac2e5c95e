"""Per destination: prune by its own retention (only where deletion is allowed), check,
and copies that a hanging destination does not hold up. Real parts: rest-server,
SeaweedFS, restic.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import time
from pathlib import Path
from typing import Any, Dict, List

from shipper.core import config, destinations, sets
from shipper.core.destinations.base import Repository
from shipper.core.restic import Restic
from tests.seaweed import SeaweedFS
from tests.shipperenv import TOOLS, RestServer, ShipperEnv, free_port
from tests.test_destinations import offsite, set_ids

UTC = dt.timezone.utc
DROP_ALL_OLD = {"keep_within": "24h", "hourly": 0, "daily": 0, "weekly": 0}


def make_set(restic: Restic, when: dt.datetime, data_parts: int) -> str:
    """A complete set as `shipper snapshot` leaves it: data parts, then the manifest carrier."""
    set_id = when.astimezone(UTC).strftime(sets.ID_FORMAT)
    for n in range(data_parts):
        tags = [f"{sets.SET_TAG}:{set_id}", f"{sets.PART_TAG}:mariadb:db{n}"]
        restic.backup_bytes(f"dump {set_id} {n}\n".encode() * 50, f"db{n}.sql", tags, "master")
    tags = [
        f"{sets.SET_TAG}:{set_id}",
        f"{sets.PART_TAG}:{sets.FILES_PART}",
        f"{sets.PART_TAG}:{sets.MANIFEST_PART}",
        f"{sets.STATUS_TAG}:{sets.COMPLETE}",
    ]
    restic.backup_bytes(json.dumps({"set": set_id}).encode(), "manifest.json", tags, "master")
    return set_id


def plain_restic(env: ShipperEnv, url: str) -> Restic:
    repository = Repository(url, str(env.password_file))
    return Restic(repository, binary=str(TOOLS / "restic"), cache_dir=str(env.base / "rc"))


def snapshot_counts(env: ShipperEnv, destination: str) -> Dict[str, int]:
    """Set id -> how many snapshots of it the destination holds (restic's own listing)."""
    cfg = config.load(str(env.config_path))
    repository = destinations.named(cfg, destination).repository()
    restic = Restic(repository, binary=str(TOOLS / "restic"), cache_dir=str(env.base / "rc"))
    return {s.id: len(s.snapshots) for s in sets.group(restic.snapshots())}


def old_sets(env: ShipperEnv, url: str) -> Dict[str, str]:
    """Sets of an hour, three days and five days ago: (2, 3, 2) snapshots."""
    restic = plain_restic(env, url)
    now = dt.datetime.now(UTC)
    ages = {"recent": (dt.timedelta(hours=1), 1), "three": (dt.timedelta(days=3), 2)}
    ages["five"] = (dt.timedelta(days=5), 1)
    return {name: make_set(restic, now - age, parts) for name, (age, parts) in ages.items()}


def test_prune_per_destination_forgets_whole_sets_by_its_own_retention(
    shipper_env: ShipperEnv, seaweedfs: SeaweedFS
) -> None:
    env = shipper_env
    bucket = seaweedfs.new_bucket()
    env.run("init", check=True)
    env.write_config(
        role="slave",
        repository={"url": str(env.repo), "local_path": str(env.repo)},
        retention={"keep_within": "30d"},
        destinations=[
            {**offsite(seaweedfs, env.base / "creds", bucket), "retention": DROP_ALL_OLD}
        ],
    )
    made = old_sets(env, str(env.repo))
    assert "3 sets copied" in env.run("copy", check=True).stdout
    before = snapshot_counts(env, "offsite")
    assert before == {made["recent"]: 2, made["three"]: 3, made["five"]: 2}

    dry = env.run("prune", "--destination", "offsite", "--dry-run", check=True)
    assert (
        f"destination offsite: would forget {made['three']} (complete, 3 snapshots)" in dry.stdout
    )
    assert f"would forget {made['five']}" in dry.stdout and "nothing changed" in dry.stdout
    assert snapshot_counts(env, "offsite") == before

    pruned = json.loads(env.run("prune", "--destination", "offsite", "--json", check=True).stdout)
    assert (pruned["destination"], pruned["forget"], pruned["forgotten_snapshots"]) == (
        "offsite",
        2,
        5,
    )
    assert snapshot_counts(env, "offsite") == {made["recent"]: 2}
    # The repository keeps its own retention (30 days): all three stay there.
    assert snapshot_counts(env, "primary") == before
    kept = env.run("prune", "--dry-run", check=True).stdout
    assert "3 sets kept, 0 would be forgotten" in kept, kept
    # The next copy does not bring back what the destination's retention forgot.
    again = env.run("copy", check=True)
    assert "destination offsite: 0 sets copied" in again.stdout, again.stdout
    assert set_ids(env, "offsite") == [made["recent"]]


def test_the_master_never_deletes_from_a_destination(
    shipper_env: ShipperEnv, rest_server: Any, tmp_path: Path
) -> None:
    env = shipper_env
    spare = {"name": "spare", "kind": "slave", "url": rest_server.url + "spare/"}
    local = {"name": "nearby", "kind": "local", "url": str(tmp_path / "nearby")}
    for entry in (spare, local):
        entry["retention"] = DROP_ALL_OLD
    env.write_config(repository={"url": rest_server.url + "master/"}, destinations=[spare, local])
    env.run("init", check=True)
    made = old_sets(env, rest_server.url + "master/")
    pushed = env.run("copy", check=True)
    assert "destination spare: 3 sets copied" in pushed.stdout
    assert "destination nearby: 3 sets copied" in pushed.stdout
    for name in ("spare", "nearby"):
        refused = env.run("prune", "--destination", name, "--dry-run")
        assert refused.returncode != 0
        assert refused.stderr.count("\n") == 1 and "the master never deletes" in refused.stderr
        assert f"shipper prune --destination {name}" in refused.stderr
    # Pushing more sets, with a retention there that would drop two, deletes nothing.
    env.make_dataset(files=5, mib=1)
    env.run("snapshot", check=True)
    for name in ("spare", "nearby"):
        assert set(made.values()) < set(set_ids(env, name)), name
        assert len(set_ids(env, name)) == 4

    # On a slave the receiver of another slave is append-only: prune that slave itself.
    env.write_config(role="slave", repository={"local_path": str(rest_server.data / "master")})
    refused = env.run("prune", "--destination", "spare", "--dry-run")
    assert refused.returncode != 0 and "append-only" in refused.stderr
    allowed = env.run("prune", "--destination", "nearby", "--dry-run", check=True)
    assert "would be forgotten" in allowed.stdout


def test_check_per_destination_finds_a_missing_pack_there_only(
    shipper_env: ShipperEnv, rest_server: Any
) -> None:
    env = shipper_env
    env.make_dataset(files=20, mib=1)
    spare = {"name": "spare", "kind": "slave", "url": rest_server.url + "spare/"}
    env.write_config(repository={"url": rest_server.url + "master/"}, destinations=[spare])
    env.run("init", check=True)
    assert "destination spare: 1 sets copied" in env.run("snapshot", check=True).stdout
    assert env.run("check", "--destination", "spare").returncode == 0

    packs = sorted((rest_server.data / "spare" / "data").rglob("*"))
    victim = next(p for p in packs if p.is_file())
    victim.unlink()
    damaged = env.run("check", "--destination", "spare", "--read-data-subset", "none", "--json")
    assert damaged.returncode == 1, damaged.stdout
    outcome = json.loads(damaged.stdout)
    assert outcome["destination"] == "spare" and not outcome["ok"]
    assert any(victim.name[:8] in p for p in outcome["problems"]), outcome["problems"]
    text = env.run("check", "--destination", "spare", "--read-data-subset", "none")
    assert "(destination spare) has problems" in text.stderr and "Traceback" not in text.stderr
    # The repository itself is sound, and the destination's damage is not recorded as its own.
    assert env.run("check", "--read-data-subset", "none").returncode == 0
    damage = env.state / "damage.json"
    assert not damage.exists() or victim.name not in damage.read_text()


def test_a_hanging_destination_does_not_delay_the_other(
    shipper_env: ShipperEnv, rest_server: Any, tmp_path: Path
) -> None:
    env = shipper_env
    env.make_dataset(files=20, mib=2)
    stuck = RestServer(tmp_path / "stuck-data", free_port(), ["--no-auth"]).start()
    entries: List[Dict[str, Any]] = [
        {"name": "stuck", "kind": "slave", "url": stuck.url + "m/"},
        {"name": "quick", "kind": "slave", "url": rest_server.url + "quick/"},
    ]
    env.write_config(
        repository={"url": rest_server.url + "master/", "network_timeout": 5},
        destinations=entries,
    )
    env.run("init", check=True)
    assert stuck.process is not None
    os.kill(stuck.process.pid, signal.SIGSTOP)  # accepts connections, never answers
    try:
        started = time.time()
        result = env.run("snapshot", "--json", timeout=240)
        ended = time.time()
    finally:
        os.kill(stuck.process.pid, signal.SIGCONT)
        stuck.stop()
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    by_name = {d["destination"]: d for d in data["destinations"]}
    assert "cannot reach the receiver" in (by_name["stuck"]["error"] or "")
    assert by_name["quick"]["copied"] == [data["set_id"]] and not by_name["quick"]["error"]
    # When the last snapshot file landed on `quick`, against the run that waited out `stuck`.
    landed = max(p.stat().st_mtime for p in (rest_server.data / "quick" / "snapshots").iterdir())
    set_done = started + data["duration"]
    assert ended - started > 15, "the stuck destination did not hang: the test proves nothing"
    assert landed - set_done < 12, f"quick got the set {landed - set_done:.1f}s after it was taken"
    assert landed < ended - 5


def test_lock_aware_prune_keeps_locked_sets_and_says_so(
    shipper_env: ShipperEnv, seaweedfs: SeaweedFS
) -> None:
    """object_lock_days 4: the three-day-old set stays (locked), the five-day-old one goes;
    the bucket's real lock keeps every object version either way."""
    env = shipper_env
    bucket = seaweedfs.new_bucket()
    seaweedfs.create_locked_bucket(bucket, days=1)
    env.run("init", check=True)
    entry = offsite(seaweedfs, env.base / "creds", bucket)
    env.write_config(
        role="slave",
        repository={"url": str(env.repo), "local_path": str(env.repo)},
        destinations=[{**entry, "retention": DROP_ALL_OLD, "object_lock_days": 4}],
    )
    made = old_sets(env, str(env.repo))
    assert "3 sets copied" in env.run("copy", check=True).stdout
    versions = seaweedfs.object_versions(bucket)

    dry = env.run("prune", "--destination", "offsite", "--dry-run", check=True).stdout
    assert f"destination offsite: kept {made['three']}: object lock until " in dry, dry
    assert "(object_lock_days 4)" in dry and f"would forget {made['five']}" in dry
    assert f"would forget {made['three']}" not in dry

    done = env.run("prune", "--destination", "offsite", check=True).stdout
    assert f"kept {made['three']}: object lock until" in done and f"forgot {made['five']}" in done
    assert snapshot_counts(env, "offsite") == {made["recent"]: 2, made["three"]: 3}
    assert seaweedfs.object_versions(bucket) >= versions, "a locked object version was deleted"
