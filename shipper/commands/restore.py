"""`shipper restore SET --target DIR`: a set's files under a folder."""

from __future__ import annotations

from typing import Any

from shipper.commands.context import Context, add_destination_argument
from shipper.core import sets
from shipper.core.progress import Progress
from shipper.slave import restore

DESCRIPTION = (
    "Restore the files of SET (an id, or `latest` for the newest complete set) "
    "under DIR: /srv/app/x lands at DIR/srv/app/x."
)


def register(p: Any, name: str) -> None:
    add_destination_argument(p)
    p.description = DESCRIPTION
    p.add_argument("set", metavar="SET")
    p.add_argument("--target", required=True, metavar="DIR")
    p.add_argument(
        "--path", action="append", default=[], metavar="P", help="only this path (repeatable)"
    )
    p.set_defaults(run=run)


def run(ctx: Context) -> int:
    chosen = sets.find(ctx.sets(), ctx.args.set)
    progress = Progress()
    progress.start(f"restore {chosen.id}")
    summary = restore.restore_files(ctx.restic(progress), chosen, ctx.args.target, ctx.args.path)
    progress.finish()
    restored = summary.get("files_restored", summary.get("total_files", "?"))
    ctx.out.line(f"restored set {chosen.id} ({restored} files) under {ctx.args.target}")
    return 0
