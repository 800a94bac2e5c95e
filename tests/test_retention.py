"""Retention on the slave: the policy on fake sets, and `shipper prune` on a real repository."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
from pathlib import Path
from typing import List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipper.core import sets
from shipper.core.restic import Repository, Restic, Snapshot
from shipper.slave import retention
from shipper.slave.retention import Policy
from tests.shipperenv import TOOLS, ShipperEnv

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 11, 25, 16, 40, tzinfo=UTC)


# ---------------------------------------------------------------- fake sets


def fake_set(when: dt.datetime, status: str = sets.COMPLETE, parts: int = 2) -> sets.SnapshotSet:
    """A set as restic would list it: `parts` data parts, plus the manifest carrier if committed."""
    set_id = when.astimezone(UTC).strftime(sets.ID_FORMAT)
    snaps = []
    for n in range(parts):
        tags = (f"{sets.SET_TAG}:{set_id}", f"{sets.PART_TAG}:db{n}")
        snaps.append(Snapshot(f"{set_id}-{n}", f"s{n}", when, "master", (), tags, {}))
    if status != sets.INCOMPLETE:
        tags = (
            f"{sets.SET_TAG}:{set_id}",
            f"{sets.PART_TAG}:{sets.FILES_PART}",
            f"{sets.PART_TAG}:{sets.MANIFEST_PART}",
            f"{sets.STATUS_TAG}:{status}",
        )
        snaps.append(Snapshot(f"{set_id}-m", "m", when, "master", (), tags, {}))
    return sets.SnapshotSet(set_id, snaps)


def kept_ids(plan: retention.Plan) -> List[str]:
    return [s.id for s in plan.kept]


def every(minutes: int, span: dt.timedelta, status: str = sets.COMPLETE) -> List[sets.SnapshotSet]:
    out, when = [], NOW
    while when > NOW - span:
        out.append(fake_set(when, status, parts=0))
        when -= dt.timedelta(minutes=minutes)
    return out


# ---------------------------------------------------------------- the policy


def test_default_policy_on_100_days_of_quarter_hourly_sets():
    found = every(15, dt.timedelta(days=100))
    clock = time.monotonic()
    plan = retention.plan(found, Policy(), NOW, tz=UTC)
    elapsed = time.monotonic() - clock
    kept = [s.time for s in plan.kept]
    age = [NOW - t for t in kept]
    # every set of the last 48 hours
    assert sum(1 for a in age if a < dt.timedelta(hours=48)) == 48 * 4
    # one an hour for the rest of the first 7 days (168 hourly buckets, counted from now)
    hourly = [t for t, a in zip(kept, age) if dt.timedelta(hours=48) <= a < dt.timedelta(days=7)]
    assert len({t.strftime("%Y%m%d%H") for t in hourly}) == len(hourly) == 7 * 24 - 48
    # one a day to 30 days, one a week to 12 weeks, nothing older
    daily = [t for t, a in zip(kept, age) if dt.timedelta(days=7) < a < dt.timedelta(days=29)]
    assert len({t.date() for t in daily}) == len(daily)
    assert len(daily) >= 21
    assert max(age) < dt.timedelta(weeks=12)
    weekly = [t for t, a in zip(kept, age) if a > dt.timedelta(days=31)]
    assert len({t.isocalendar()[:2] for t in weekly}) == len(weekly) >= 6
    assert len(plan.dropped) == len(found) - len(kept)
    assert elapsed < 2, f"planning 9600 sets took {elapsed:.2f}s"


def test_whole_sets_only_and_manifest_carriers_first():
    found = [fake_set(NOW - dt.timedelta(days=d), parts=3) for d in range(0, 60, 3)]
    found.append(fake_set(NOW - dt.timedelta(days=50), sets.INCOMPLETE, parts=2))
    plan = retention.plan(found, Policy("1d", 0, 3, 0), NOW, tz=UTC)
    first, rest = plan.forget_batches()
    dropped_ids = {snap.id for s in plan.dropped for snap in s.snapshots}
    kept_snaps = {snap.id for s in plan.kept for snap in s.snapshots}
    assert set(first) | set(rest) == dropped_ids
    assert not dropped_ids & kept_snaps
    assert all(i.endswith("-m") for i in first) and not any(i.endswith("-m") for i in rest)
    assert len(plan.kept) == 3


def test_newest_complete_set_is_kept_however_old():
    old = NOW - dt.timedelta(days=400)
    found = [
        fake_set(old + dt.timedelta(hours=2), sets.PARTIAL),
        fake_set(old + dt.timedelta(hours=1), sets.INCOMPLETE),
        fake_set(old),
        fake_set(old - dt.timedelta(days=1)),
    ]
    plan = retention.plan(found, Policy("1h", 0, 0, 0), NOW, tz=UTC)
    assert kept_ids(plan) == [found[2].id]
    assert plan.decisions[2].reasons == ["newest complete set"]


def test_newest_partial_set_is_kept_when_no_set_is_complete():
    found = [fake_set(NOW - dt.timedelta(days=d), sets.PARTIAL) for d in (10, 11)]
    plan = retention.plan(found, Policy("1h", 0, 0, 0), NOW, tz=UTC)
    assert kept_ids(plan) == [found[0].id]


def test_incomplete_sets_go_only_when_they_cannot_still_be_running():
    found = [
        fake_set(NOW - dt.timedelta(hours=1), sets.INCOMPLETE),
        fake_set(NOW - dt.timedelta(hours=7), sets.INCOMPLETE),
        fake_set(NOW - dt.timedelta(hours=8)),
    ]
    plan = retention.plan(found, Policy("2h", 24, 0, 0), NOW, tz=UTC)
    assert kept_ids(plan) == [found[0].id, found[2].id]
    # a long lock wait means a run may legitimately be older: 2 x 5 h
    patient = retention.plan(found, Policy("2h", 24, 0, 0, lock_wait=5 * 3600), NOW, tz=UTC)
    assert kept_ids(patient) == [s.id for s in found]
    # inside keep_within an incomplete set stays, for a look at what failed
    within = retention.plan(found, Policy("48h", 0, 0, 0), NOW, tz=UTC)
    assert kept_ids(within) == [s.id for s in found]


def test_a_bucket_keeps_its_complete_set_rather_than_a_newer_partial_one():
    day = (NOW - dt.timedelta(days=2)).replace(hour=12, minute=0)
    found = [
        fake_set(NOW - dt.timedelta(hours=2)),
        fake_set(day, sets.PARTIAL),
        fake_set(day - dt.timedelta(hours=1)),
        fake_set(day - dt.timedelta(days=1)),
    ]
    plan = retention.plan(found, Policy("1h", 0, 2, 0), NOW, tz=UTC)
    assert kept_ids(plan) == [found[0].id, found[2].id]


def test_empty_buckets_do_not_count_as_restic_does():
    found = [fake_set(NOW - dt.timedelta(hours=h)) for h in (3, 8, 13, 18)]
    plan = retention.plan(found, Policy("1h", 2, 0, 0), NOW, tz=UTC)
    assert kept_ids(plan) == [found[0].id, found[1].id]


def test_buckets_follow_the_time_zone():
    tz = dt.timezone(dt.timedelta(hours=5))
    # 20:30 and 18:30 UTC: one day in UTC, two days at UTC+5
    found = [
        fake_set(NOW.replace(hour=20, minute=30) - dt.timedelta(days=3)),
        fake_set(NOW.replace(hour=18, minute=30) - dt.timedelta(days=3)),
    ]
    assert len(retention.plan(found, Policy("1h", 0, 5, 0), NOW, tz=UTC).kept) == 1
    assert len(retention.plan(found, Policy("1h", 0, 5, 0), NOW, tz=tz).kept) == 2


def test_durations_are_calendar_durations():
    march = dt.datetime(2024, 3, 31, 12, tzinfo=UTC)
    assert retention.subtract(march, "1m") == dt.datetime(2024, 2, 29, 12, tzinfo=UTC)
    assert retention.subtract(march, "1y2m") == dt.datetime(2023, 1, 31, 12, tzinfo=UTC)
    assert retention.subtract(march, "2d12h") == dt.datetime(2024, 3, 29, 0, tzinfo=UTC)
    assert retention.subtract(march, "48h") == dt.datetime(2024, 3, 29, 12, tzinfo=UTC)
    with pytest.raises(ValueError):
        retention.parse_duration("2 days")


statuses = st.sampled_from([sets.COMPLETE, sets.PARTIAL, sets.INCOMPLETE])


@settings(max_examples=200, deadline=None)
@given(
    ages=st.lists(
        st.tuples(st.integers(0, 24 * 120), statuses),
        min_size=1,
        max_size=40,
        unique_by=lambda t: t[0],
    ),
    policy=st.builds(
        Policy,
        st.sampled_from(["1h", "6h", "48h", "7d"]),
        st.integers(0, 30),
        st.integers(0, 10),
        st.integers(0, 5),
    ),
)
def test_policy_invariants(ages, policy):
    found = [fake_set(NOW - dt.timedelta(hours=h), status) for h, status in ages]
    plan = retention.plan(found, policy, NOW, tz=UTC)
    kept = set(kept_ids(plan))
    newest = sets.newest(sets.group(s for f in found for s in f.snapshots))
    if newest is not None:
        assert newest.id in kept
    cutoff = retention.subtract(NOW, policy.keep_within)
    for item in found:
        if item.time >= cutoff and item.status != sets.INCOMPLETE:
            assert item.id in kept
        if item.status == sets.INCOMPLETE and NOW - item.time < policy.stale_after:
            assert item.id in kept
    first, rest = plan.forget_batches()
    assert sorted(first + rest) == sorted(s.id for d in plan.dropped for s in d.snapshots)


# ---------------------------------------------------------------- a real repository


def _make_set(restic: Restic, when: dt.datetime, status: str, data_parts: int) -> str:
    """A set as `shipper snapshot` leaves it: data parts, then the files part carrying the manifest."""
    set_id = when.astimezone(UTC).strftime(sets.ID_FORMAT)
    for n in range(data_parts):
        tags = [f"{sets.SET_TAG}:{set_id}", f"{sets.PART_TAG}:mariadb:db{n}"]
        restic.backup_bytes(f"dump {set_id} {n}\n".encode() * 50, f"db{n}.sql", tags, "master")
    if status != sets.INCOMPLETE:
        tags = [
            f"{sets.SET_TAG}:{set_id}",
            f"{sets.PART_TAG}:{sets.FILES_PART}",
            f"{sets.PART_TAG}:{sets.MANIFEST_PART}",
            f"{sets.STATUS_TAG}:{status}",
        ]
        restic.backup_bytes(json.dumps({"set": set_id}).encode(), "manifest.json", tags, "master")
    return set_id


def _snapshot_sets(restic: Restic) -> dict:
    return {s.id: len(s.snapshots) for s in sets.group(restic.snapshots())}


@pytest.mark.slow
def test_prune_on_a_real_repository_forgets_whole_sets(shipper_env: ShipperEnv, tmp_path: Path):
    env = shipper_env
    env.write_config(
        role="slave",
        repository={"url": str(env.repo), "local_path": str(env.repo), "lock_wait": 30},
        retention={"keep_within": "24h", "hourly": 0, "daily": 2, "weekly": 0},
    )
    env.run("init", check=True)
    restic = Restic(
        Repository(str(env.repo), str(env.password_file)),
        binary=str(TOOLS / "restic"),
        cache_dir=str(tmp_path / "cache"),
    )
    now = dt.datetime.now().astimezone()
    three_days = (now - dt.timedelta(days=3)).replace(hour=10, minute=0, second=0)
    parts = {"A": 1, "B": 1, "C": 1, "D": 0, "E": 1, "F": 0}
    times = {
        "A": now - dt.timedelta(hours=1),
        "B": now - dt.timedelta(hours=2),
        "C": three_days,
        "D": three_days + dt.timedelta(minutes=30),
        "E": now - dt.timedelta(days=5),
        "F": now - dt.timedelta(days=10),
    }
    status = {"B": sets.INCOMPLETE, "E": sets.INCOMPLETE, "F": sets.PARTIAL}
    made = {n: _make_set(restic, times[n], status.get(n, sets.COMPLETE), parts[n]) for n in parts}
    before = {made[n]: parts[n] + (status.get(n) != sets.INCOMPLETE) for n in parts}

    dry = env.run("prune", "--dry-run", check=True)
    for name in "CEF":
        assert f"would forget {made[name]}" in dry.stdout
    assert "dry run: nothing changed" in dry.stdout
    assert _snapshot_sets(restic) == before

    # A master backup holds a shared lock: prune waits for it (lock_wait), then goes on.
    holder = subprocess.Popen(
        [str(TOOLS / "restic"), "-r", str(env.repo), "--password-file", str(env.password_file),
         "backup", "--stdin-filename", "slow", "--stdin-from-command", "--", "sh", "-c",
         "sleep 4; echo done"],
        env=env.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(2)
    assert holder.poll() is None
    result = env.run("prune", "--json", check=True)
    assert holder.poll() == 0, "prune went on while the backup held its lock"
    data = json.loads(result.stdout)
    assert data["forget"] == 3 and data["forgotten_snapshots"] == 4 and data["pruned"]
    left = restic.snapshots()
    after = {s.id: len(s.snapshots) for s in sets.group(left)}
    assert after == {made[n]: before[made[n]] for n in "ABD"}
    # the snapshot without a set tag (not shipper's) is left alone
    assert len(left) == sum(after.values()) + 1
    env.restic("check")


def test_prune_refuses_a_remote_repository(shipper_env: ShipperEnv):
    env = shipper_env
    env.write_config(repository={"url": "rest:https://127.0.0.1:1/master/"})
    result = env.run("prune", "--dry-run")
    assert result.returncode == 1
    assert "append-only" in result.stderr and "Traceback" not in result.stderr
