"""Restoring by hand (issue 14): --version, a whole set's databases in one command,
loads into another server, and the refusal to overwrite a live database."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml

from shipper.databases.base import scratch_name
from tests.shipperenv import TOOLS, VENV_BIN, ShipperEnv

pytestmark = pytest.mark.timeout(300)


def test_version_names_shipper_restic_and_the_config_without_opening_the_repository(
    shipper_env: ShipperEnv,
) -> None:
    text = shipper_env.run("--version", check=True).stdout
    assert text.startswith("shipper 0.1.0\nrestic 0.18.") and str(shipper_env.config_path) in text
    data = json.loads(shipper_env.run("--version", "--json", check=True).stdout)
    assert data["restic"].startswith("0.18.") and data["config_exists"] is True
    assert not shipper_env.repo.exists()  # no repository was opened (or made)


def _entry(server: Any, names: List[str]) -> Dict[str, Any]:
    return {**dataclasses.asdict(server.config()), "databases": names}


@pytest.fixture(scope="module")
def many(tmp_path_factory: Any, mariadb_server: Any, postgresql_server: Any) -> Any:
    """A set of 20 small databases: 18 MariaDB, 2 PostgreSQL; then each changes to 'now'.

    Made once for the module; the test that replaces a live database runs last.
    """
    shipper_env = ShipperEnv(tmp_path_factory.mktemp("many"))
    tag = uuid.uuid4().hex[:6]
    maria = [f"m{i:02d}_{tag}" for i in range(18)]
    pg = [f"p{i:02d}_{tag}" for i in range(2)]
    for name in maria:
        mariadb_server.sql(f"CREATE DATABASE {name}")
        mariadb_server.sql(f"CREATE TABLE {name}.t (v TEXT); INSERT INTO {name}.t VALUES ('then')")
    for name in pg:
        postgresql_server.sql(f"CREATE DATABASE {name}")
        postgresql_server.sql("CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('then')", name)
    shipper_env.write_config(
        databases={
            "enabled": True,
            "parallel": 2,
            "mariadb": [_entry(mariadb_server, maria)],
            "postgresql": [_entry(postgresql_server, pg)],
        }
    )
    shipper_env.run("init", check=True)
    set_id = json.loads(shipper_env.run("snapshot", "--json", check=True).stdout)["set_id"]
    for name in maria:
        mariadb_server.sql(f"UPDATE {name}.t SET v = 'now'")
    for name in pg:
        postgresql_server.sql("UPDATE t SET v = 'now'", name)
    yield shipper_env, set_id, maria, pg
    for name in maria:
        mariadb_server.sql(f"DROP DATABASE IF EXISTS {name}; DROP DATABASE IF EXISTS {name}_then")
    for name in pg:
        postgresql_server.sql(f"DROP DATABASE IF EXISTS {name}")
        postgresql_server.sql(f"DROP DATABASE IF EXISTS {name}_then")


def test_a_set_of_20_databases_loads_in_one_command_under_a_suffix(
    many: Any, mariadb_server: Any, postgresql_server: Any
) -> None:
    env, set_id, maria, pg = many
    dry = env.run("restore-db", set_id, "--suffix", "_then", "--exclude", "p01_*", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("would load") == 19 and f"mariadb:{maria[0]} into {maria[0]}_then" in (
        dry.stdout
    )
    assert not mariadb_server.sql(f"SHOW DATABASES LIKE '{maria[0]}_then'")

    done = env.run("restore-db", set_id, "--suffix", "_then", "--globals", check=True)
    assert done.stdout.count("loaded") == 20 + 4  # each engine's globals, before and after
    for name in maria:
        assert mariadb_server.sql(f"SELECT v FROM {name}_then.t") == [("then",)]
        assert mariadb_server.sql(f"SELECT v FROM {name}.t") == [("now",)]
    for name in pg:
        assert postgresql_server.sql("SELECT v FROM t", f"{name}_then") == [("then",)]


def test_a_set_loads_into_another_server_under_the_same_names(
    many: Any, mariadb_server: Any, make_mariadb_server: Any
) -> None:
    env, set_id, maria, _ = many
    scratch = make_mariadb_server()
    to = ["--to-host", scratch.bind, "--to-port", str(scratch.port), "--to-user", "root"]
    to += ["--to-password-file", str(scratch.password_file)]
    done = env.run("restore-db", set_id, "--only", "mariadb:*", *to, check=True)
    assert done.stdout.count("loaded") == 18 and f"{scratch.bind}:{scratch.port}" in done.stdout
    for name in maria:
        assert scratch.sql(f"SELECT v FROM {name}.t") == [("then",)]
    assert mariadb_server.sql(f"SELECT v FROM {maria[1]}.t") == [("now",)]

    spanning = env.run("restore-db", set_id, *to)
    assert spanning.returncode == 1 and "pick one engine" in spanning.stderr

    scratch.password_file.chmod(0o644)
    loose = env.run("restore-db", set_id, "--only", "mariadb:*", *to)
    assert loose.returncode == 1 and "chmod 600" in loose.stderr


def _counted(env: ShipperEnv, log: Path, config: Path, *args: str) -> List[List[str]]:
    """Run shipper with every restic call logged; the calls' subcommands and arguments."""
    wrapper = log.with_suffix(".sh")
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {TOOLS / "restic"} "$@"\n')
    wrapper.chmod(0o700)
    run_env = {**env.env(), "SHIPPER_RESTIC": str(wrapper), "SHIPPER_CONFIG": str(config)}
    done = subprocess.run(
        [str(VENV_BIN / "shipper"), *args], env=run_env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    calls = [line.split() for line in log.read_text().splitlines()]
    log.unlink()
    return [call[call.index("dump") :] if "dump" in call else call for call in calls]


def test_restore_db_of_a_set_id_reads_its_manifest_once_and_lists_nothing(
    many: Any, mariadb_server: Any, tmp_path: Any
) -> None:
    """One restic process besides the dumps (a key derivation each): the manifest, found
    by its tags where the master wrote it, names every dump's snapshot."""
    env, set_id, maria, _ = many
    log = tmp_path / "calls.log"
    only = ["--only", maria[2], "--only", maria[3], "--suffix", "_id"]
    calls = _counted(env, log, env.config_path, "restore-db", set_id, *only)
    assert not [c for c in calls if "snapshots" in c]
    dumps = [c for c in calls if c[0] == "dump"]
    assert len(dumps) == 3 and dumps[0][1] == "latest" and dumps[0][2].endswith("manifest.json")
    assert f"shipper-set:{set_id},shipper-part:manifest" in dumps[0]
    assert all(len(c[1]) == 64 for c in dumps[1:])  # the snapshots the manifest names
    for name in maria[2:4]:
        assert mariadb_server.sql(f"SELECT v FROM {name}_id.t") == [("then",)]
        mariadb_server.sql(f"DROP DATABASE {name}_id")

    # `latest` lists the sets (the newest complete one is judged by all their tags).
    calls = _counted(env, log, env.config_path, "restore-db", "latest", *only)
    assert len([c for c in calls if "snapshots" in c]) == 1
    for name in maria[2:4]:
        mariadb_server.sql(f"DROP DATABASE {name}_id")


def test_restore_db_of_an_unknown_set_id_says_so_in_one_line(many: Any) -> None:
    env, *_ = many
    unknown = env.run("restore-db", "20991231T000000Z", "--suffix", "_u")
    assert unknown.returncode == 1 and "no set '20991231T000000Z'" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1 and "Traceback" not in unknown.stderr


def test_restore_db_lists_the_sets_when_the_manifest_is_not_where_this_machine_puts_it(
    many: Any, mariadb_server: Any, tmp_path: Any
) -> None:
    """A slave whose state_dir differs from the master's: the guessed manifest path
    (and the amended manifest's) miss, and the listing finds it."""
    env, set_id, maria, _ = many
    settings = yaml.safe_load(env.config_path.read_text())
    settings["state_dir"] = str(tmp_path / "elsewhere")
    config = tmp_path / "slave.yml"
    config.write_text(yaml.safe_dump(settings))
    log = tmp_path / "calls.log"
    calls = _counted(
        env, log, config, "restore-db", set_id, f"mariadb:{maria[4]}", "--as", f"{maria[4]}_x"
    )
    assert [c[0] for c in calls if c[0] == "dump"].count("dump") == 4  # 2 misses, manifest, load
    assert len([c for c in calls if "snapshots" in c]) == 1
    assert mariadb_server.sql(f"SELECT v FROM {maria[4]}_x.t") == [("then",)]
    mariadb_server.sql(f"DROP DATABASE {maria[4]}_x")


def test_replacing_a_live_database_is_refused_without_replace(
    many: Any, mariadb_server: Any
) -> None:
    env, set_id, maria, _ = many
    refused = env.run("restore-db", set_id, "--only", f"mariadb:{maria[0]}", "--only", maria[1])
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert f"would replace the live database {maria[0]}" in refused.stderr
    assert "--replace" in refused.stderr and "nothing was loaded" in refused.stderr
    assert mariadb_server.sql(f"SELECT v FROM {maria[0]}.t") == [("now",)]
    assert mariadb_server.sql(f"SELECT v FROM {maria[1]}.t") == [("now",)]

    env.run("restore-db", set_id, f"mariadb:{maria[0]}", "--replace", check=True)
    assert mariadb_server.sql(f"SELECT v FROM {maria[0]}.t") == [("then",)]


def test_restore_takes_a_glob_and_its_dry_run_lists_what_it_would_write(
    shipper_env: ShipperEnv, tmp_path: Any
) -> None:
    env = shipper_env
    (env.src / "etc").mkdir()
    for name in ("a.conf", "b.conf", "c.txt"):
        (env.src / "etc" / name).write_text(name)
    env.run("init", check=True)
    set_id = json.loads(env.run("snapshot", "--json", check=True).stdout)["set_id"]
    target = tmp_path / "out"
    pattern = f"{env.src}/etc/*.conf"

    dry = env.run("restore", set_id, "--target", str(target), "--path", pattern, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would write {target}{env.src}/etc/a.conf" in dry.stdout
    assert "b.conf" in dry.stdout and "c.txt" not in dry.stdout
    assert not target.exists()

    env.run("restore", set_id, "--target", str(target), "--path", pattern, check=True)
    restored = sorted(p.name for p in (target / str(env.src)[1:] / "etc").iterdir())
    assert restored == ["a.conf", "b.conf"]

    none = env.run("restore", set_id, "--target", str(target), "--path", "/nowhere/*.x")
    assert none.returncode == 1 and "nothing in set" in none.stderr
    assert "Traceback" not in none.stderr


def test_restore_of_latest_a_prefix_and_an_unknown_id(
    shipper_env: ShipperEnv, tmp_path: Any
) -> None:
    """A full set id goes to restic directly; everything else, and a miss, lists the sets."""
    env = shipper_env
    (env.src / "f").write_text("x")
    env.run("init", check=True)
    set_id = json.loads(env.run("snapshot", "--json", check=True).stdout)["set_id"]
    for ref in ("latest", set_id[:8]):
        done = env.run("restore", ref, "--target", str(tmp_path / ref), check=True)
        assert f"restored set {set_id}" in done.stdout
        assert (tmp_path / ref / str(env.src)[1:] / "f").read_text() == "x"
    unknown = env.run("restore", "20991231T000000Z", "--target", str(tmp_path / "u"))
    assert unknown.returncode == 1 and "no set '20991231T000000Z'" in unknown.stderr


def test_a_killed_load_leaves_nothing_under_a_new_name_and_a_replaced_database_whole(
    shipper_env: ShipperEnv, mariadb_server: Any
) -> None:
    """restore-db killed mid-stream (SIGKILL): a database it was creating does not
    exist, one it was replacing (--replace) still holds all its old rows."""
    env = shipper_env
    name = f"big_{uuid.uuid4().hex[:6]}"
    mariadb_server.sql(f"CREATE DATABASE {name}")
    mariadb_server.sql(f"CREATE TABLE {name}.t (id INT PRIMARY KEY, body VARCHAR(200))")
    rows = 400000
    mariadb_server.sql(
        f"INSERT INTO t SELECT seq, CONCAT(SHA2(seq, 256), MD5(seq)) FROM seq_1_to_{rows}", name
    )
    entry = {**dataclasses.asdict(mariadb_server.config()), "databases": [name]}
    env.write_config(databases={"enabled": True, "mariadb": [entry], "postgresql": []})
    env.run("init", check=True)
    set_id = json.loads(env.run("snapshot", "--json", check=True).stdout)["set_id"]
    mariadb_server.sql(f"DELETE FROM {name}.t WHERE id > 10")  # 'now': 10 rows
    try:
        for args in (["--as", f"{name}_new"], ["--replace"]):
            loading = env.popen("restore-db", set_id, f"mariadb:{name}", *args)
            _wait_for_a_load_under_way(mariadb_server, loading)
            loading.kill()
            loading.wait()
            time.sleep(0.5)  # the client dies with shipper (SIGTERM)
            assert not mariadb_server.sql(f"SHOW DATABASES LIKE '{name}\\_new'")
            assert mariadb_server.sql(f"SELECT COUNT(*) FROM {name}.t") == [(10,)]
        # A re-run after the kills loads whole (the scratch left behind is dropped first).
        env.run("restore-db", set_id, f"mariadb:{name}", "--as", f"{name}_new", check=True)
        assert mariadb_server.sql(f"SELECT COUNT(*) FROM {name}_new.t") == [(rows,)]
    finally:
        for db in (name, f"{name}_new", scratch_name("load", name)):
            mariadb_server.sql(f"DROP DATABASE IF EXISTS {db}")


def _wait_for_a_load_under_way(server: Any, loading: subprocess.Popen) -> None:
    """Until the loader made the table in its scratch database (the rows stream next)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert loading.poll() is None, "the load ended before it could be killed"
        found = server.sql(
            "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA LIKE 'shipper\\_load\\_%'"
        )
        if found:
            return
        time.sleep(0.02)
    raise AssertionError("no load under way after 60 s")
