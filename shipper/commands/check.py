"""`shipper check`: restic check of the repository, problems printed and emailed."""

from __future__ import annotations

from typing import Any

from shipper.commands.context import Context, add_destination_argument
from shipper.slave import check

DESCRIPTION = (
    "Run restic check on the repository (on a slave: its local path), reading "
    "back check.read_data_subset of the data packs. Problems are printed and emailed; "
    "the exit is 1 when there are any. shipper-check.timer runs this weekly. "
    "--destination NAME checks that destination instead (restic check and the sets there)."
)


def register(p: Any, name: str) -> None:
    p.description = DESCRIPTION
    p.add_argument(
        "--read-data-subset",
        metavar="SUBSET",
        help="how much data to read back: 5%%, 1/10, 500M, or none (default check.read_data_subset)",
    )
    add_destination_argument(p)
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")
    p.set_defaults(run=run)


def run(ctx: Context) -> int:
    subset = ctx.args.read_data_subset or ctx.cfg.check.read_data_subset
    if subset == "none":
        subset = None
    restic = ctx.restic()
    name = ctx.args.destination or "primary"
    report = check.verify(ctx.cfg, restic, subset, name)
    where = restic.repository.display
    outcome = {
        "ok": report.ok,
        "destination": name,
        "repository": where,
        "read_data_subset": subset,
        "problems": report.problems,
        "summary": report.summary,
    }
    if report.ok:
        read = f", read back {subset} of the data" if subset else ", structure only"
        ctx.out.result(outcome, [f"{where}: no problems found{read}"])
        return 0
    ctx.out.result(outcome)
    label = "" if name == "primary" else f" (destination {name})"
    ctx.out.problem(f"shipper: the repository {where}{label} has problems:")
    for problem in report.problems:
        ctx.out.problem(f"  {problem}")
    return 1
