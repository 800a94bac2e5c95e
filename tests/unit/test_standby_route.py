"""Promote's path from the standby record (slave/promote/standby.py): no restic, no servers."""

from __future__ import annotations

from pathlib import Path

from shipper.core import config, state
from shipper.core.manifest import Dump
from shipper.slave.promote import standby


def dump(part: str, sha: str) -> Dump:
    engine, _, database = part.partition(":")
    return Dump(part, engine, None if database == "globals" else database, "s", "f", 1, sha, "16")


LOADS = [dump("pg:globals", "g1"), dump("pg:app", "a1"), dump("pg:shop", "s1")]
SET = "20261203T120000Z"


def warm(folder: Path, enabled: bool = True) -> config.Config:
    text = f"repository: {{url: /r}}\nstate_dir: {folder}\nstandby: {{enabled: {str(enabled).lower()}}}\n"
    return config.parse(text)


def save(folder: Path, **fields: object) -> None:
    state.save_standby(folder, state.StandbyRecord(**fields))  # type: ignore[arg-type]


def test_no_record_is_cold(tmp_path: Path) -> None:
    assert standby.choose(warm(tmp_path), SET, "/", LOADS).kind == standby.COLD


def test_the_applied_set_skips_everything_another_root_is_cold(tmp_path: Path) -> None:
    save(tmp_path, set=SET, state=state.APPLIED, root="/", verified_at="t")
    route = standby.choose(warm(tmp_path), SET, "/", LOADS)
    assert route.kind == standby.STANDBY and len(route.skipped) == 3
    assert standby.choose(warm(tmp_path), SET, "/other", LOADS).kind == standby.COLD
    assert standby.choose(warm(tmp_path, False), SET, "/", LOADS).kind == standby.COLD


def test_behind_or_interrupted_skips_only_the_same_dumps(tmp_path: Path) -> None:
    dumps = {"pg:globals": "g1", "pg:app": "a0", "pg:shop": "s1"}
    save(tmp_path, set=SET, state=state.APPLYING, root="/", dumps=dumps)
    route = standby.choose(warm(tmp_path), SET, "/", LOADS)
    # globals load again after a reloaded database (its grants), so only shop is kept
    assert route.kind == standby.DELTA and route.skipped == ["pg:shop"]
    assert route.overwrite == "if-changed" and "applying" in route.note
    save(
        tmp_path,
        set="20261203T110000Z",
        state=state.APPLIED,
        root="/",
        dumps={**dumps, "pg:app": "a1"},
    )
    assert standby.choose(warm(tmp_path), SET, "/", LOADS).skipped == [
        "pg:globals",
        "pg:app",
        "pg:shop",
    ]


def test_status_names_a_failed_a_stuck_and_a_lagging_standby(tmp_path: Path) -> None:
    from shipper.notify import standby_view

    cfg = config.parse(f"repository: {{url: /r}}\nstate_dir: {tmp_path}\nrole: slave\n")
    newest = "20261203T110000Z"

    def judged(**fields: object) -> list:
        save(tmp_path, **fields)
        return standby_view.judge(cfg, newest)[1]

    [(level, text)] = judged(set=SET, state=state.FAILED, error="apply of set X failed: boom")
    assert level == standby_view.CRITICAL and "boom" in text
    [(level, text)] = judged(set=newest, state=state.APPLYING, started="2026-01-01T00:00:00+00:00")
    assert level == standby_view.WARNING and "did not finish" in text
    [(level, text)] = judged(set="20260101T000000Z", state=state.APPLIED, verified_at="t")
    assert level == standby_view.WARNING and "waited" in text
    assert judged(set=newest, state=state.APPLIED, verified_at="t") == []
    line = standby_view.line(standby_view.judge(cfg, newest)[0])
    assert line.startswith(f"standby:     at set {newest} (") and "verified at t" in line
