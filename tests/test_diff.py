"""shipper diff SET1 SET2: paths added, removed, changed; databases whose dumps differ."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any

from shipper.core.manifest import Manifest
from shipper.slave import diff
from tests.shipperenv import ShipperEnv


def take(env: ShipperEnv) -> str:
    done = env.run("snapshot", "--json", check=True)
    time.sleep(1.1)  # set ids have a one-second grain
    return json.loads(done.stdout)["set_id"]


def test_diff_of_two_sets_names_files_and_databases(
    shipper_env: ShipperEnv, mariadb_server: Any
) -> None:
    env = shipper_env
    env.run("init", check=True)
    mariadb_server.sql("DROP DATABASE IF EXISTS diffshop; CREATE DATABASE diffshop")
    mariadb_server.sql(
        "CREATE TABLE t (id INT PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'one')", "diffshop"
    )
    server = {**dataclasses.asdict(mariadb_server.config()), "databases": ["diffshop"]}
    env.write_config(databases={"enabled": True, "mariadb": [server], "postgresql": []})
    for name in ("same", "changed", "removed", "mode"):
        (env.src / name).write_text(name + "\n")
    first = take(env)
    (env.src / "changed").write_text("changed now\n")
    (env.src / "removed").unlink()
    (env.src / "added").write_text("new\n")
    os.chmod(env.src / "mode", 0o600)
    mariadb_server.sql("UPDATE t SET v = 'uno' WHERE id = 1", "diffshop")
    second = take(env)

    result = json.loads(env.run("diff", first, second, "--json", check=True).stdout)
    src = str(env.src)
    assert result["added"] == [f"{src}/added"] and result["removed"] == [f"{src}/removed"]
    assert result["changed"] == [f"{src}/changed"] and result["metadata"] == [f"{src}/mode"]
    assert result["databases"] == {"mariadb:diffshop": "changed", "mariadb:globals": "same"}
    assert not any(
        "shipper-manifest.json" in p for key in ("added", "changed") for p in result[key]
    )

    text = env.run("diff", first, second, check=True).stdout
    assert "files added: 1" in text and "mariadb:diffshop: changed" in text


def test_databases_added_and_removed_between_manifests() -> None:
    def manifest(**dumps: str) -> Manifest:
        parts = [
            {
                "name": n.replace("_", ":"),
                "outcome": "ok",
                "details": {"engine": "mariadb", "sha256": d},
            }
            for n, d in dumps.items()
        ]
        return Manifest.from_json(
            {"parts": [*parts, {"name": "files", "outcome": "ok", "details": {}}]}
        )

    first = manifest(mariadb_a="1", mariadb_b="2")
    second = manifest(mariadb_b="3", mariadb_c="4")
    assert diff._databases(first, second) == {
        "mariadb:a": "removed",
        "mariadb:b": "changed",
        "mariadb:c": "added",
    }
