"""`shipper snapshot`: take one set now, inside the notification lifecycle."""

from __future__ import annotations

from typing import Any, List

from shipper import notify
from shipper.commands.context import EXIT_PARTIAL, Context
from shipper.core import copies, sets
from shipper.core.errors import ShipperError
from shipper.core.progress import Progress, human_bytes
from shipper.master import snapshot
from shipper.notify import status


def register(p: Any, name: str) -> None:
    p.add_argument(
        "--dry-run", action="store_true", help="show what would be backed up; write nothing"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(run=run)


def run(ctx: Context) -> int:
    cfg = ctx.cfg
    if ctx.args.dry_run:
        planned = snapshot.plan(cfg)
        ctx.out.result(planned, plan_lines(planned))
        return 0
    progress = Progress()
    # Manual and scheduled runs alike: webhooks, emails and metrics come from here.
    with notify.lifecycle(cfg) as taken:
        unreachable = status.receiver_unreachable(cfg)
        if unreachable:
            raise ShipperError(unreachable)
        taken.result = snapshot.take(cfg, ctx.restic(progress), announce=progress.start)
    result = taken.result
    progress.finish()
    new = copies.NewSet(result.set_id, result.previous_set, result.snapshots)
    copied = copies.copy_all(cfg, ctx.restic(), new) if result.status != sets.INCOMPLETE else []
    # Each destination's gauges; a stale one is told once. A destination the copy just
    # reached holds the new set: only the others are listed.
    reached = {c.destination: result.set_id for c in copied if not c.error}
    notify.check_destinations(cfg, known=reached)
    data = {**result.to_json(), "destinations": [c.to_json() for c in copied]}
    lines = [summary_line(result), *vanished_lines(result)]
    ctx.out.result(data, lines + [c.line() for c in copied if not c.error])
    for failed in (c for c in copied if c.error):
        ctx.out.problem(failed.line())
    for problem in problems(result):
        ctx.out.problem(problem)
    return 0 if result.status == sets.COMPLETE else EXIT_PARTIAL


def plan_lines(planned: dict) -> List[str]:
    lines = [f"would take a set into {planned['repository']}:"]
    lines.append("  files: " + " ".join(planned["paths"]))
    if planned["exclude"]:
        lines.append("  excluding: " + " ".join(planned["exclude"]))
    lines += [f"  database: {item}" for item in planned["databases"]]
    lines += [f"  pre-snapshot hook: {hook}" for hook in planned["hooks"]]
    return lines


def summary_line(result: snapshot.SetResult) -> str:
    return (
        f"set {result.set_id}: {result.status}, {len(result.parts)} parts, "
        f"files new {result.files_new}, changed {result.files_changed}, "
        f"added {human_bytes(result.bytes_added)}, {result.duration:.1f}s"
    )


def vanished_lines(result: snapshot.SetResult) -> List[str]:
    """Files deleted while the set was taken, and unreadable ones in volatile folders: not failures."""
    lines = []
    if result.vanished:
        shown = ", ".join(result.vanished_paths[:5])
        more = " …" if result.vanished > 5 else ""
        lines.append(f"{result.vanished} files vanished while the set was taken: {shown}{more}")
    if result.noted:
        lines.append(f"{result.noted} unreadable files in volatile folders (noted):")
        lines += [f"  {label}" for label in result.noted_paths[:5]]
    return lines


def problems(result: snapshot.SetResult) -> List[str]:
    out = [f"shipper: part {part.name} {part.outcome}: {part.error}" for part in result.failures]
    if result.unreadable:
        out.append("shipper: unreadable files (not in the set):")
        out += [f"  {item}" for item in result.unreadable[:20]]
    if result.status != sets.COMPLETE:
        out.append(
            f"shipper: set {result.set_id} is partial: fix what failed above, and the next set "
            "takes those parts again; promote keeps using the newest complete set"
        )
    return out
