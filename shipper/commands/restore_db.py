"""`shipper restore-db SET ENGINE:DB`: load one database of a set into this server."""

from __future__ import annotations

import time
from typing import Any

from shipper.commands.context import Context, add_destination_argument
from shipper.core import sets
from shipper.slave import restore

DESCRIPTION = (
    "Load the dump of ENGINE:DB (e.g. mariadb:shop) from SET into the local server, "
    "replacing DB, or as a new database with --as."
)


def register(p: Any, name: str) -> None:
    add_destination_argument(p)
    p.description = DESCRIPTION
    p.add_argument("set", metavar="SET", help="a set id, or latest")
    p.add_argument("part", metavar="ENGINE:DB")
    p.add_argument(
        "--as", dest="as_name", metavar="NEWNAME", help="load under this name; DB stays as it is"
    )
    p.add_argument(
        "--globals", action="store_true", help="load the engine's users, grants and roles first"
    )
    p.add_argument(
        "--dry-run", action="store_true", help="say what would be loaded; change nothing"
    )
    p.set_defaults(run=run)


def run(ctx: Context) -> int:
    restic = ctx.restic()
    chosen = sets.find(ctx.sets(), ctx.args.set)
    loads = restore.database_plan(restic, chosen, ctx.args.part, ctx.args.globals)
    for load in loads:
        target = ctx.args.as_name if ctx.args.as_name and not load.is_globals else load.database
        what = (
            f"{load.engine} users and grants" if load.is_globals else f"{load.part} into {target}"
        )
        if ctx.args.dry_run:
            ctx.out.line(f"would load {what} from set {chosen.id}")
            continue
        clock = time.monotonic()
        restore.restore_database(ctx.cfg, restic, load, ctx.args.as_name)
        ctx.out.line(f"loaded {what} from set {chosen.id} in {time.monotonic() - clock:.1f}s")
    return 0
