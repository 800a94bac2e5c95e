"""`shipper --version`: shipper's version, restic's, and the config file in use.

Fast on purpose: it runs `restic version` only, never opens the repository,
and does not read the config file (it only says which one would be used).
"""

from __future__ import annotations

import json
import os
from typing import Dict, Optional

from shipper import __version__
from shipper.core import config
from shipper.core.restic import ResticError, installed_version


def report(config_arg: Optional[str]) -> Dict[str, object]:
    path = config.config_path(config_arg)
    try:
        restic: Optional[str] = installed_version()
        problem = ""
    except ResticError as exc:
        restic, problem = None, str(exc)
    return {
        "shipper": __version__,
        "restic": restic,
        "restic_problem": problem,
        "config": path,
        "config_exists": os.path.isfile(path),
    }


def text(data: Dict[str, object]) -> str:
    restic = data["restic"] or f"not usable ({data['restic_problem']})"
    where = "" if data["config_exists"] else " (missing)"
    return f"shipper {data['shipper']}\nrestic {restic}\nconfig {data['config']}{where}"


def run(config_arg: Optional[str], as_json: bool) -> int:
    data = report(config_arg)
    print(json.dumps(data, indent=2) if as_json else text(data))
    return 0
