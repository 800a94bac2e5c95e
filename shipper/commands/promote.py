"""`shipper promote`: preflight, plan, confirmation, the steps, the report."""

from __future__ import annotations

import contextlib
from typing import Any

from shipper.commands.context import Context, confirm
from shipper.core.errors import ShipperError
from shipper.core.lock import host_lock
from shipper.core.progress import Progress
from shipper.slave.promote import report as text
from shipper.slave.promote.model import Options
from shipper.slave.promote.steps import Promotion

DESCRIPTION = (
    "Check, show the plan, then restore the newest complete set (or --set) in place, "
    "load its databases, run the post-restore hooks and make this server the master. "
    "Interrupted, it resumes where it stopped when run again."
)
PREFLIGHT_FAILED = "preflight failed: fix what it names (FAIL), then run promote again"


def register(p: Any, name: str) -> None:
    p.description = DESCRIPTION
    p.add_argument(
        "--set",
        dest="set_ref",
        metavar="SET",
        help="the set to promote (default: the newest complete)",
    )
    p.add_argument("--dry-run", action="store_true", help="check and show the plan; change nothing")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument(
        "--root", default="/", metavar="DIR", help="restore under DIR instead of / (default /)"
    )
    p.add_argument(
        "--allow-partial",
        action="store_true",
        help="promote a partial set without its failed parts",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="go on on a master, or with another database major version",
    )
    p.add_argument(
        "--json", action="store_true", help="print the plan (--dry-run) or the report as JSON"
    )
    p.set_defaults(run=run)


def run(ctx: Context) -> int:
    args, out = ctx.args, ctx.out
    options = Options(args.set_ref, args.root, args.allow_partial, args.force)
    lock = contextlib.nullcontext() if args.dry_run else host_lock(ctx.cfg.state, "promote")
    with lock:
        job = Promotion(ctx.cfg, ctx.restic(), options)
        out.line("preflight:")
        job.preflight(lambda check: out.line(text.check_line(check)))
        if not job.ready:
            raise ShipperError(PREFLIGHT_FAILED)
        plan = job.plan(lambda check: out.line(text.check_line(check)))
        if not job.ready:
            raise ShipperError(PREFLIGHT_FAILED)
        if args.dry_run:
            out.result(plan.to_json(), [*text.plan_lines(plan), "dry run: nothing was changed"])
            return 0
        out.lines(text.plan_lines(plan))
        confirm(args.yes, f"promote set {plan.set_id} on this server")
        progress = Progress()
        job.restic.progress = progress

        def on_step(name: str, status: str) -> None:
            if status == "running":
                if name == "files":  # the only step with restic progress; databases load meanwhile
                    progress.start(name)
                return
            progress.finish()
            out.line(f"  {name}: {status}")

        report = job.run(on_step)
        progress.finish()
    out.result(report.to_json(), ["\n".join(text.report_lines(report))])
    return 0 if report.outcome == "promoted" else 1
