"""`shipper status`: a report, and a Nagios-style check (exit 0/1/2/3)."""

from __future__ import annotations

from typing import Any

from shipper.commands.context import Context
from shipper.core import config
from shipper.notify import status
from shipper.notify.levels import UNKNOWN

DESCRIPTION = (
    "Role, schedule and next run, the newest complete set and its age against "
    "max_age, the last run, the repository and the receiver. Exit 0 OK, 1 WARNING, "
    "2 CRITICAL, 3 UNKNOWN (the Nagios plugin convention): WARNING once the newest "
    "complete set is older than two thirds of notify.max_age, CRITICAL past it."
)


def register(p: Any, name: str) -> None:
    p.description = DESCRIPTION
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.add_argument(
        "--warning",
        type=int,
        metavar="SECONDS",
        help="WARNING past this age (default 2/3 of max_age)",
    )
    p.add_argument(
        "--critical", type=int, metavar="SECONDS", help="CRITICAL past this age (default max_age)"
    )
    p.set_defaults(run=run)


def run(ctx: Context) -> int:
    try:
        report = status.gather(ctx.cfg, None, ctx.args.warning, ctx.args.critical)
    except config.ConfigError as exc:
        problem = "; ".join(exc.problems)
        unknown = {"status": "UNKNOWN", "exit_code": UNKNOWN, "problems": [problem]}
        ctx.out.result(unknown, [f"SHIPPER UNKNOWN: {problem}"])
        return UNKNOWN
    ctx.out.result(
        report.to_json(), [status.summary_line(report), "\n".join(status.detail_lines(report))]
    )
    return report.level
