"""`shipper restore-db SET [ENGINE:DB]`: load a set's databases, here or into another server."""

from __future__ import annotations

from typing import Any, List, Optional

from shipper.commands.context import Context, add_destination_argument
from shipper.core.manifest import Dump
from shipper.slave import restore_db
from shipper.slave.restore_db import Load

DESCRIPTION = (
    "Load the dumps of SET into the configured database server, or into another one "
    "with --to-*: ENGINE:DB (e.g. mariadb:shop), or every database of the set when none "
    "is named. A load that would replace a live database of the configured server under "
    "its own name is refused unless --replace is given."
)


def register(p: Any, name: str) -> None:
    add_destination_argument(p)
    p.description = DESCRIPTION
    p.add_argument("set", metavar="SET", help="a set id, or latest")
    p.add_argument("part", metavar="ENGINE:DB", nargs="?", help="one database (default: all)")
    p.add_argument(
        "--as",
        dest="as_name",
        metavar="NAME",
        help="load under this name; with several databases a pattern: --as '{db}_old'",
    )
    p.add_argument("--suffix", default="", metavar="S", help="load each database as DB + S")
    p.add_argument(
        "--only", action="append", default=[], metavar="NAME", help="ENGINE:DB or DB, globs fine"
    )
    p.add_argument("--exclude", action="append", default=[], metavar="NAME", help="as --only")
    p.add_argument(
        "--globals", action="store_true", help="load the engines' users, grants and roles too"
    )
    p.add_argument("--to-host", metavar="HOST", help="load into the server at HOST instead")
    p.add_argument("--to-port", type=int, metavar="PORT")
    p.add_argument("--to-socket", metavar="PATH", help="load into the server on this socket")
    p.add_argument("--to-user", metavar="USER")
    p.add_argument(
        "--to-password-file", metavar="FILE", help="the target's password (a root-only file)"
    )
    p.add_argument(
        "--replace", action="store_true", help="allow replacing live databases of this server"
    )
    p.add_argument(
        "--dry-run", action="store_true", help="say what would be loaded; change nothing"
    )
    p.add_argument("--json", action="store_true", help="the result as JSON")
    p.set_defaults(run=run)


def request(args: Any) -> restore_db.Request:
    to = restore_db.Server(
        args.to_host, args.to_port, args.to_socket, args.to_user, args.to_password_file
    )
    return restore_db.Request(
        args.part,
        args.only,
        args.exclude,
        args.as_name,
        args.suffix,
        args.globals,
        to,
        args.replace,
    )


def run(ctx: Context) -> int:
    restic = ctx.restic()
    chosen, manifest, dumps = restore_db.open_set(ctx.cfg, restic, ctx.args.set)
    try:
        return _run(ctx, restic, chosen, manifest, dumps)
    finally:
        manifest.close()


def _run(
    ctx: Context,
    restic: Any,
    chosen: Any,
    manifest: restore_db.ManifestOnce,
    dumps: List[Dump],
) -> int:
    loads = restore_db.plan(ctx.cfg, chosen, manifest.get, dumps, request(ctx.args))
    restore_db.refuse_live_replacements(loads, ctx.args.replace)
    results = []

    def report(load: Load, error: Optional[str], seconds: float) -> None:
        results.append({"load": load.describe(), "error": error, "seconds": round(seconds, 2)})
        if error:
            ctx.out.problem(f"shipper: error: {error}")
        else:
            ctx.out.line(f"loaded {load.describe()} from set {chosen.id} in {seconds:.1f}s")

    if ctx.args.dry_run:
        ctx.out.lines(f"would load {load.describe()} from set {chosen.id}" for load in loads)
        ctx.out.result({"set": chosen.id, "would_load": [x.describe() for x in loads]})
        return 0
    failed = restore_db.run(restic, loads, manifest, ctx.cfg.databases.parallel, report)
    ctx.out.result({"set": chosen.id, "loads": results, "failed": failed})
    if failed and len(loads) > 1:  # one failed load alone is its own one line
        ctx.out.problem(f"shipper: {failed} of {len(loads)} loads failed; the others are loaded")
    return 1 if failed else 0
