"""The manifest: the master/slave contract reads back as it was written."""

from __future__ import annotations

import datetime as dt
import json
from typing import Optional

from shipper.core import manifest, sets
from shipper.core.manifest import Manifest, Part
from shipper.core.restic import Snapshot, parse_time

DOCUMENT = {
    "format": 1,
    "set": "20261125T163000Z",
    "status": "partial",
    "host": "master1",
    "machine": "master1.example",
    "started": "2026-11-25T16:30:00+00:00",
    "written": "2026-11-25T16:31:00+00:00",
    "versions": {"shipper": "0.1.0", "restic": "0.18.0", "mariadb": "10.11.6"},
    "paths": ["/srv/app", "/etc"],
    "exclude": ["*.tmp"],
    "volatile": [],
    "machine_specific": ["/etc/machine-id"],
    "set_dir": "/var/lib/shipper/set",
    "parts": [
        {
            "name": "mariadb:globals",
            "outcome": "ok",
            "snapshot": "aaa",
            "error": "",
            "bytes_added": 10,
            "details": {"engine": "mariadb", "database": None, "filename": "mariadb-globals.sql"},
        },
        {
            "name": "mariadb:shop",
            "outcome": "ok",
            "snapshot": "bbb",
            "error": "",
            "bytes_added": 20,
            "details": {
                "engine": "mariadb",
                "database": "shop",
                "filename": "mariadb-shop.sql",
                "server_version": "10.11.6-MariaDB",
                "bytes": 1234,
                "sha256": "ab" * 32,
            },
        },
        {
            "name": "postgresql:app",
            "outcome": "failed",
            "snapshot": None,
            "error": "dump of postgresql:app failed: no such database",
            "bytes_added": 0,
            "details": {"engine": "postgresql", "database": "app", "filename": "pg-app.sql"},
        },
        {
            "name": "files",
            "outcome": "ok",
            "snapshot": None,
            "error": "",
            "bytes_added": 0,
            "details": {"paths": ["/srv/app", "/etc"]},
        },
    ],
}


def snapshot(sid: str, part: str) -> Snapshot:
    return Snapshot(
        id=sid,
        short_id=sid[:8],
        time=dt.datetime(2026, 11, 25, 16, 30, tzinfo=dt.timezone.utc),
        hostname="master1",
        paths=("/srv/app",),
        tags=(f"{sets.SET_TAG}:{DOCUMENT['set']}", f"{sets.PART_TAG}:{part}"),
        summary={},
    )


def test_the_json_round_trip_is_exact() -> None:
    typed = Manifest.from_json(json.loads(json.dumps(DOCUMENT)))
    assert typed.to_json() == DOCUMENT
    assert list(json.loads(manifest.encode(typed))) == list(DOCUMENT)


def test_failed_parts_name_the_error() -> None:
    typed = Manifest.from_json(DOCUMENT)
    assert typed.failed_parts() == {
        "postgresql:app": "dump of postgresql:app failed: no such database"
    }


def test_dumps_are_the_stored_databases_globals_first() -> None:
    chosen = sets.SnapshotSet(DOCUMENT["set"], [snapshot("fff", "files")])
    dumps = Manifest.from_json(DOCUMENT).dumps(chosen)
    assert [(d.part, d.is_globals, d.step) for d in dumps] == [
        ("mariadb:globals", True, "globals:mariadb"),
        ("mariadb:shop", False, "database:mariadb:shop"),
    ]
    shop = dumps[1]
    assert (shop.bytes, shop.sha256, shop.server_version) == (1234, "ab" * 32, "10.11.6-MariaDB")


def test_missing_parts_are_stored_parts_without_their_snapshot() -> None:
    chosen = sets.SnapshotSet(DOCUMENT["set"], [snapshot("aaa", "mariadb:globals")])
    assert Manifest.from_json(DOCUMENT).missing_parts(chosen) == ["mariadb:shop", "files"]


def test_an_old_manifest_without_paths_says_so() -> None:
    old = {k: v for k, v in DOCUMENT.items() if k != "paths"}
    assert Manifest.from_json(old).paths is None
    assert Manifest.from_json(DOCUMENT).paths == ["/srv/app", "/etc"]


def test_digests_and_own_file() -> None:
    typed = Manifest.from_json(DOCUMENT)
    digests = {name: part.sha256 for name, part in typed.dump_parts().items()}
    assert digests == {"mariadb:globals": None, "mariadb:shop": "ab" * 32}
    assert typed.own_file() == "/var/lib/shipper/set/" + sets.MANIFEST_FILENAME
    assert typed.files_stored()
    assert Part.from_json({"name": "x"}).outcome == "?"


def test_a_sets_duration_runs_from_its_id_to_restics_last_backup_end() -> None:
    def snap(name: str, end: str) -> Snapshot:
        return Snapshot(
            id=name * 8,
            short_id=name * 8,
            time=parse_time("2026-11-25T16:30:00Z"),
            hostname="m",
            paths=("/srv",),
            tags=("shipper-set:20261125T163000Z",),
            summary={"backup_end": end} if end else {},
        )

    taken = sets.SnapshotSet("20261125T163000Z", [snap("a", "2026-11-25T16:30:04.5Z")])
    assert taken.duration == 4.5
    taken.snapshots.append(snap("b", "2026-11-25T16:30:12.250000001Z"))
    assert taken.duration == 12.2
    assert sets.SnapshotSet("20261125T163000Z", [snap("c", "")]).duration is None
    assert taken.to_json()["duration"] == 12.2


def test_diff_compares_postgresql_dumps_by_content_when_both_sets_have_it() -> None:
    from shipper.slave.diff import _dump_change

    def dump(sha: Optional[str], content: Optional[str]) -> Part:
        details = {"engine": "postgresql", "sha256": sha, "content_sha256": content}
        return Part("postgresql:app", "ok", details=details)

    # pg_dump's \restrict key: the stream's sha256 differs at every set, the content does not.
    assert _dump_change(dump("a" * 64, "c" * 64), dump("b" * 64, "c" * 64)) == "same"
    assert _dump_change(dump("a" * 64, "c" * 64), dump("b" * 64, "d" * 64)) == "changed"
    assert _dump_change(dump("a" * 64, None), dump("a" * 64, "c" * 64)) == "same"
    assert _dump_change(dump("a" * 64, None), dump(None, None)) == "unknown (no digest)"
