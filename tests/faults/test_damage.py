"""Damage in the slave's repository: a corrupted pack file, a lost snapshot file.

A master takes two sets of files and a MariaDB database into a local
repository; each test damages a copy of it so that the newest set cannot be
read back whole. `shipper check` on the slave reports it and names the sets;
`shipper promote` refuses the damaged set and names the newest one that can
be read; promoting that one gives its files byte for byte and its database.
"""

from __future__ import annotations

import dataclasses
import shutil
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest
import yaml

from tests.faults.helpers import sets_json, snapshot_ok
from tests.shipperenv import ShipperEnv, make_dataset, tree_digest

pytestmark = pytest.mark.slow


class Site:
    def __init__(self, env: ShipperEnv, server: Any, database: str):
        self.env = env
        self.server = server
        self.database = database
        self.states: Dict[str, Any] = {}
        self.packs: Dict[str, set] = {}

    def packs_now(self) -> set:
        return {p.name for p in (self.env.repo / "data").rglob("*") if p.is_file()}

    def take(self) -> str:
        set_id = snapshot_ok(self.env)
        self.states[set_id] = (tree_digest(self.env.src), self.checksum(self.database))
        self.packs[set_id] = self.packs_now()
        return set_id

    def checksum(self, database: str) -> Any:
        return self.server.sql("CHECKSUM TABLE items", database)[0][1]

    def slave(self, base: Path) -> Slave:
        return Slave(self, base)


class Slave:
    """A slave whose repository is a copy of the master's, to damage at will."""

    def __init__(self, site: Site, base: Path):
        self.site = site
        self.repo = base / "repo"
        shutil.copytree(site.env.repo, self.repo)
        self.root = base / "root"
        self.config = base / "slave.yml"
        settings = yaml.safe_load(site.env.config_path.read_text())
        settings.update(role="slave", state_dir=str(base / "state"))
        settings["repository"].update(url=str(self.repo), local_path=str(self.repo))
        self.config.write_text(yaml.safe_dump(settings))

    def run(self, *args: str):
        return self.site.env.run("-c", str(self.config), *args)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, mariadb_server: Any) -> Iterator[Site]:
    env = ShipperEnv(tmp_path_factory.mktemp("damage"))
    database = f"dmg_{uuid.uuid4().hex[:6]}"
    mariadb_server.sql(f"CREATE DATABASE {database}")
    mariadb_server.sql(f"CREATE TABLE {database}.items (id INT PRIMARY KEY, name TEXT)")
    mariadb_server.sql("INSERT INTO items SELECT seq, MD5(seq) FROM seq_1_to_500", database)
    entry = dataclasses.asdict(mariadb_server.config(databases=[database]))
    env.write_config(databases={"enabled": True, "mariadb": [entry], "postgresql": []})
    env.run("init", check=True)
    make_dataset(env.src, files=40, mib=1)
    site = Site(env, mariadb_server, database)
    site.older = site.take()
    (env.src / "only-in-newer.bin").write_bytes(uuid.uuid4().bytes * 65536)  # 1 MiB, new data
    mariadb_server.sql("INSERT INTO items VALUES (9999, 'newer')", database)
    site.newer = site.take()
    yield site
    mariadb_server.sql(f"DROP DATABASE IF EXISTS {database}")


def assert_promotes_the_older_set(site: Site, slave: Slave) -> None:
    refused = slave.run("promote", "--dry-run", "--root", str(slave.root))
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
    offer = f"the newest set that can be read is {site.older}"
    assert offer in refused.stdout and f"--set {site.older}" in refused.stdout, refused.stdout
    done = slave.run("promote", "--yes", "--set", site.older, "--root", str(slave.root))
    assert done.returncode == 0, done.stdout + done.stderr
    files, checksum = site.states[site.older]
    assert tree_digest(slave.root / str(site.env.src).lstrip("/")) == files
    assert site.checksum(site.database) == checksum


def test_a_corrupted_pack_is_reported_and_its_set_refused(site: Site, tmp_path: Path):
    slave = site.slave(tmp_path)
    new_packs = site.packs[site.newer] - site.packs[site.older]
    pack = max((p for p in (slave.repo / "data").rglob("*") if p.name in new_packs),
               key=lambda p: p.stat().st_size)  # fmt: skip
    pack.chmod(0o600)
    with open(pack, "r+b") as handle:
        handle.seek(pack.stat().st_size // 2)
        handle.write(b"rot" * 100)

    checked = slave.run("check", "--read-data-subset", "100%")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert pack.name in checked.stderr, checked.stderr
    assert f"sets with data in damaged packs: {site.newer}" in checked.stderr
    assert f"the newest set that can be read is {site.older}" in checked.stderr
    refused = slave.run("promote", "--dry-run", "--root", str(slave.root))
    assert f"FAIL readable: set {site.newer} cannot be read back whole" in refused.stdout
    assert_promotes_the_older_set(site, slave)


def test_a_lost_snapshot_file_is_reported_and_its_set_refused(site: Site, tmp_path: Path):
    slave = site.slave(tmp_path)
    [newer] = [s for s in sets_json(site.env) if s["id"] == site.newer]
    part = next(p for p in newer["parts"] if p["name"] == f"mariadb:{site.database}")
    (slave.repo / "snapshots" / part["snapshot"]).unlink()

    checked = slave.run("check", "--read-data-subset", "none")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert (
        f"the newest complete set {site.newer} cannot be read: the snapshot of part(s) "
        f"mariadb:{site.database} is missing" in checked.stderr
    ), checked.stderr
    refused = slave.run("promote", "--dry-run", "--root", str(slave.root))
    assert f"FAIL parts: set {site.newer} lacks the snapshot of part(s) mariadb:" in refused.stdout
    assert_promotes_the_older_set(site, slave)
