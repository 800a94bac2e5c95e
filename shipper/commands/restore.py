"""`shipper restore SET --target DIR`: a set's files under a folder."""

from __future__ import annotations

from typing import Any

from shipper.commands.context import Context
from shipper.core import sets
from shipper.core.progress import Progress
from shipper.slave import restore

DESCRIPTION = (
    "Restore the files of SET (an id, or `latest` for the newest complete set) "
    "under DIR: /srv/app/x lands at DIR/srv/app/x."
)


def register(p: Any, name: str) -> None:
    p.description = DESCRIPTION
    p.add_argument("set", metavar="SET")
    p.add_argument("--target", required=True, metavar="DIR")
    p.add_argument(
        "--path",
        action="append",
        default=[],
        metavar="P",
        help="only this path or glob, e.g. '/etc/*.conf' (repeatable; restic include patterns)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="list what would be written; change nothing"
    )
    p.add_argument("--json", action="store_true", help="the result as JSON")
    p.set_defaults(run=run)


def run(ctx: Context) -> int:
    progress = Progress()
    restic = ctx.restic(progress)  # one handle: restic's version is asked once per command
    chosen = sets.find(sets.group(restic.snapshots()), ctx.args.set)
    if ctx.args.dry_run:
        return preview(ctx, restic, chosen)
    progress.start(f"restore {chosen.id}")
    summary = restore.restore_files(restic, chosen, ctx.args.target, ctx.args.path)
    progress.finish()
    restored = summary.get("files_restored", summary.get("total_files", "?"))
    ctx.out.line(f"restored set {chosen.id} ({restored} files) under {ctx.args.target}")
    ctx.out.result({"set": chosen.id, "target": ctx.args.target, "summary": summary})
    return 0


def preview(ctx: Context, restic: Any, chosen: Any) -> int:
    items = restore.preview_files(restic, chosen, ctx.args.target, ctx.args.path)
    written = [(action, path) for action, path in items if action != "unchanged"]
    ctx.out.lines(f"would write {path} ({action})" for action, path in written)
    ctx.out.line(
        f"set {chosen.id}: {len(written)} items would be written under {ctx.args.target}, "
        f"{len(items) - len(written)} are there already"
    )
    ctx.out.result([{"path": path, "action": action} for action, path in items])
    return 0
