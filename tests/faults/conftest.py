"""Shared by the fault tests: one empty repository, initialized once and copied per test.

`restic init` costs two key derivations (seconds on two cores); a copy costs
nothing, and every test still gets a repository of its own.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.shipperenv import ShipperEnv


@pytest.fixture(scope="session")
def blank_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = ShipperEnv(tmp_path_factory.mktemp("blank-repository"))
    env.run("init", check=True)
    return env.repo


@pytest.fixture
def fresh_repo(shipper_env: ShipperEnv, blank_repository: Path) -> ShipperEnv:
    """shipper_env with its (local) repository already initialized."""
    shutil.copytree(blank_repository, shipper_env.repo)
    return shipper_env
