"""`shipper config validate|generate`."""

from __future__ import annotations

import os
import sys
from typing import Any

from shipper.commands.context import Context
from shipper.core import config


def register(p: Any, name: str) -> None:
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    validate = actions.add_parser(
        "validate", help="check the config file; print OK or every problem"
    )
    validate.set_defaults(run=run_validate)
    generate = actions.add_parser("generate", help="print a commented config made from the schema")
    generate.set_defaults(run=run_generate)


def run_validate(ctx: Context) -> int:
    cfg = ctx.cfg
    problems = config.secret_problems(cfg)
    for path in cfg.paths:
        if not os.path.exists(path):
            print(f"shipper: warning: {cfg.source}: paths: {path} does not exist", file=sys.stderr)
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1
    ctx.out.line(f"{cfg.source}: OK")
    if cfg.databases.enabled:
        from shipper import databases  # the database drivers, only when databases are on

        lists = {"mariadb": cfg.databases.mariadb, "postgresql": cfg.databases.postgresql}
        detected = [name for name, servers in lists.items() if servers is None]
        for line in databases.detect_local(detected):
            ctx.out.line(f"databases, autodetected: {line}")
    return 0


def run_generate(ctx: Context) -> int:
    sys.stdout.write(config.generate())
    return 0
