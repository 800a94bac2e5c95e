"""`shipper prune`: forget whole sets by the retention policy, then restic prune."""

from __future__ import annotations

from typing import Any, List

from shipper.commands.context import Context
from shipper.core import destinations
from shipper.core.progress import Progress
from shipper.slave import retention

DESCRIPTION = (
    "Keep every set of retention.keep_within, then hourly/daily/weekly ones and "
    "always the newest complete set; forget every snapshot of the other sets and prune. "
    "Runs on the local repository (the receiver is append-only). With --destination NAME: "
    "that destination, by its own retention, on the slave that holds its credentials "
    "(the master never deletes); on a bucket with Object Lock (object_lock_days) no set "
    "younger than the lock is forgotten."
)


def register(p: Any, name: str) -> None:
    p.description = DESCRIPTION
    p.add_argument(
        "--destination",
        metavar="NAME",
        help="prune this destination from `destinations` by its own retention (default: repository)",
    )
    p.add_argument("--dry-run", action="store_true", help="list what would go; change nothing")
    p.add_argument("--json", action="store_true", help="print the plan and outcome as JSON")
    p.set_defaults(run=run)


def run(ctx: Context) -> int:
    name = ctx.args.destination
    dest = destinations.named(ctx.cfg, name) if name not in (None, "primary") else None
    progress = Progress()
    result = retention.prune(
        ctx.cfg,
        ctx.restic(progress),
        dry_run=ctx.args.dry_run,
        announce=progress.start,
        dest=dest,
    )
    progress.finish()
    ctx.out.result(result.to_json(), outcome_lines(result))
    return 0


def outcome_lines(result: Any) -> List[str]:
    plan = result.plan
    verb = "would forget" if result.dry_run else "forgot"
    where = "" if result.destination == "primary" else f"destination {result.destination}: "
    lines = [
        f"{where}{verb} {decision.set.id} ({decision.set.status}, {len(decision.set.snapshots)} snapshots)"
        for decision in plan.decisions
        if not decision.keep
    ]
    lines += [
        f"{where}kept {decision.set.id}: {decision.reasons[0]}"
        for decision in plan.decisions
        if decision.only_locked
    ]
    first, rest = plan.forget_batches()
    summary = f"{where}{len(plan.kept)} sets kept, {len(plan.dropped)} "
    if result.dry_run:
        lines.append(
            summary
            + f"would be forgotten ({len(first) + len(rest)} snapshots); dry run: nothing changed"
        )
    else:
        lines.append(
            summary
            + f"forgotten ({result.forgotten_snapshots} snapshots), pruned in {result.duration:.1f}s"
        )
    return lines
