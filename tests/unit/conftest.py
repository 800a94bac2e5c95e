"""The fast tier: pure logic, no servers, no restic; the whole folder runs in seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from shipper.core import config

MINIMAL = "repository:\n  url: /srv/repo\n"


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Any]:
    """A parsed config with its state folder under tmp_path; extra YAML appended."""

    def make(extra: str = "") -> config.Config:
        text = MINIMAL + f"state_dir: {tmp_path / 'state'}\n" + extra
        return config.parse(text, "unit.yml")

    return make
