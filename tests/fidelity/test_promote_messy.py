"""The whole job on messy servers: one `shipper promote` of a messy master onto an older slave.

The master is a default install of both engines holding every kind of object
(tests/fidelity/mariadb + postgresql builders) and a messy tree
(filetree.build_master); the slave's servers and root already hold older,
different versions of all of it. One set is taken with `shipper snapshot`
and put in place with `shipper promote`, the real CLI; then files, both
engines' databases and accounts are compared exhaustively. Only what
docs/fidelity.md lists may differ.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from pathlib import Path
from typing import Any, Callable, Dict

import pytest
import yaml

from tests.fidelity import filetree
from tests.fidelity import postgresql_messy as pg
from tests.fidelity import test_mariadb_fidelity as maria
from tests.fidelity.test_files import KNOWN, OUTSIDE, PROTECTED
from tests.shipperenv import VENV_BIN, ShipperEnv

pytestmark = pytest.mark.slow


def databases_entry(mariadb: Any, postgresql: Any, **maria_selection: Any) -> Dict[str, Any]:
    return {
        "enabled": True,
        "mariadb": [dataclasses.asdict(mariadb.config(**maria_selection))],
        "postgresql": [dataclasses.asdict(postgresql.config())],
    }


def slave_config(env: ShipperEnv, folder: Path, databases: Dict[str, Any]) -> Path:
    """The slave's config: role slave, the repository by local path, its own servers."""
    folder.mkdir()
    settings = json.loads(json.dumps(env.settings))
    settings.update(role="slave", state_dir=str(folder / "state"), databases=databases)
    settings["repository"]["local_path"] = settings["repository"]["url"]
    config = folder / "shipper.yml"
    config.write_text(yaml.safe_dump(settings, sort_keys=False, allow_unicode=True))
    return config


def test_promote_of_a_messy_master_onto_an_older_slave_is_exact(
    tmp_path: Path,
    make_mariadb_server: Callable[..., Any],
    make_postgresql_server: Callable[..., Any],
) -> None:
    env = ShipperEnv(tmp_path / "master")
    maria_master = make_mariadb_server(default_install=True)
    maria_slave = make_mariadb_server(default_install=True)
    pg_master, pg_slave = make_postgresql_server(), make_postgresql_server()
    icu = pg.has_icu(pg_master)
    maria.build_master(maria_master)
    maria.build_slave(maria_slave)
    pg.build_master(pg_master, icu)
    pg.build_slave(pg_slave, icu)
    top = os.fsencode(str(tmp_path / "m"))
    roles = filetree.build_master(top)

    env.write_config(
        paths=[os.fsdecode(roles["data"]), os.fsdecode(roles["etc"])],
        machine_specific=[os.fsdecode(roles["ms"]), os.fsdecode(roles["hostname"])],
        databases=databases_entry(maria_master, pg_master, databases=maria.DATABASES),
    )
    env.run("init", check=True)
    taken = json.loads(env.run("snapshot", "--json", check=True).stdout)
    assert taken["status"] == "complete", taken
    master_tree = filetree.walk(top)

    root = tmp_path / "root"
    slave_top = os.fsencode(str(root)) + top
    filetree.older_slave(slave_top, os.fsencode(str(tmp_path / "elsewhere")))
    config = slave_config(env, tmp_path / "slave", databases_entry(maria_slave, pg_slave))
    done = subprocess.run(
        [str(VENV_BIN / "shipper"), "promote", "--yes", "--root", str(root)],
        env={**env.env(), "SHIPPER_CONFIG": str(config)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr

    skip = PROTECTED + OUTSIDE
    kept = {
        tree: {
            rel: item
            for rel, item in walked.items()
            if not any(rel == s or rel.startswith(s + b"/") for s in skip)
        }
        for tree, walked in (("master", master_tree), ("slave", filetree.walk(slave_top)))
    }
    found = filetree.differences(kept["master"], kept["slave"])
    assert [d for d in found if (d[0], d[1]) not in KNOWN] == []

    maria.assert_exact_but_documented(maria_master, maria_slave)
    pg.settle_documented(pg_master, pg_slave)
    databases = [pg.SHOP, pg.LATIN, pg.PLAIN, pg.TEMPLATE] + ([pg.ICU] if icu else [])
    differing = pg.differences(pg_master, pg_slave, databases)
    assert not differing, "\n\n".join(f"{aspect}:\n{diff}" for aspect, diff in differing.items())
