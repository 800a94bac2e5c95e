"""`shipper restore SET --target DIR`: a set's files under a folder."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Dict, Tuple, TypeVar

from shipper.commands.context import Context, add_destination_argument
from shipper.core import sets
from shipper.core.progress import Progress
from shipper.core.restic import NoSnapshotFound, Restic
from shipper.slave import restore

T = TypeVar("T")

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
    if ctx.args.dry_run:
        return preview(ctx, restic)
    progress.start(f"restore {ctx.args.set}")
    source, summary = _restore(ctx, restic)
    progress.finish()
    restored = summary.get("files_restored", summary.get("total_files", 0))
    ctx.out.line(f"restored set {source.set_id} ({restored} files) under {ctx.args.target}")
    ctx.out.result({"set": source.set_id, "target": ctx.args.target, "summary": summary})
    return 0


def _restore(ctx: Context, restic: Restic) -> Tuple[restore.FilesSource, Dict[str, Any]]:
    args = ctx.args
    return _on_files(
        ctx, restic, lambda source: restore.restore_files(restic, source, args.target, args.path)
    )


def _on_files(
    ctx: Context, restic: Restic, action: Callable[[restore.FilesSource], T]
) -> Tuple[restore.FilesSource, T]:
    """Run action on the set's files part. A full set id goes straight to restic (one
    process); `latest`, a prefix, or an id restic finds no files part for lists the sets."""
    if sets.is_set_id(ctx.args.set):
        source = restore.files_source_by_id(ctx.args.set)
        with contextlib.suppress(NoSnapshotFound):
            return source, action(source)
    source = restore.files_source(sets.find(sets.group(restic.snapshots()), ctx.args.set))
    return source, action(source)


def preview(ctx: Context, restic: Restic) -> int:
    args = ctx.args
    source, items = _on_files(
        ctx, restic, lambda source: restore.preview_files(restic, source, args.target, args.path)
    )
    written = [(action, path) for action, path in items if action != "unchanged"]
    ctx.out.lines(f"would write {path} ({action})" for action, path in written)
    ctx.out.line(
        f"set {source.set_id}: {len(written)} items would be written under {args.target}, "
        f"{len(items) - len(written)} are there already"
    )
    ctx.out.result([{"path": path, "action": action} for action, path in items])
    return 0
