"""`shipper copy`: catch every configured destination up with the repository.

On a slave it reads its own local copy, so the offsite credentials live on the
slave and the master never holds them (pull, as PBS sync jobs do); on the
master it is what `snapshot` runs after each set (push).
"""

from __future__ import annotations

from typing import Any

from shipper.commands.context import Context
from shipper.core import copies
from shipper.core.errors import ShipperError

DESCRIPTION = (
    "Copy every whole set the destinations under `destinations:` lack, with restic copy: "
    "parts first, each set's manifest last, so a set is whole there or absent; all "
    "destinations at once, one that fails does not stop the others (exit 1 names it). "
    "On a slave it reads its own local copy (pull: the offsite keys stay off the master); "
    "the master runs it after each set. It never forgets or prunes."
)


def register(p: Any, name: str) -> None:
    p.description = DESCRIPTION
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(run=run)


def run(ctx: Context) -> int:
    if not ctx.cfg.destinations:
        raise ShipperError(f"no destinations in {ctx.cfg.source}; add them under `destinations:`")
    done = copies.copy_all(ctx.cfg, ctx.restic())
    ctx.out.result([c.to_json() for c in done], [c.line() for c in done if not c.error])
    for failed in (c for c in done if c.error):
        ctx.out.problem(failed.line())
    return 1 if any(c.error for c in done) else 0
