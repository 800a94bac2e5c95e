"""`shipper diff SET1 SET2`."""

from __future__ import annotations

from typing import Any

from shipper.commands.context import Context
from shipper.core import sets
from shipper.slave import diff


def register(p: Any, name: str) -> None:
    p.add_argument("first", metavar="SET1")
    p.add_argument("second", metavar="SET2")
    p.add_argument("--json", action="store_true", help="print the differences as JSON")
    p.set_defaults(run=run)


def run(ctx: Context) -> int:
    found = ctx.sets()
    first, second = sets.find(found, ctx.args.first), sets.find(found, ctx.args.second)
    result = diff.compare(ctx.restic(), first, second)
    ctx.out.result(result.to_json(), ["\n".join(diff.lines(result))])
    return 0
