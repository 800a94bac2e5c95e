"""`shipper standby apply`: apply the newest complete set to this warm standby now."""

from __future__ import annotations

from typing import Any

from shipper.commands.context import Context
from shipper.core.lock import host_lock
from shipper.slave import standby

DESCRIPTION = (
    "On a slave with standby.enabled: put the newest complete set in place (files, databases) "
    "and verify it, so promote only checks, runs the hooks and flips the role. The slave's "
    "daemon runs this after each new set; a set already applied is not applied again."
)


def register(p: Any, name: str) -> None:
    p.description = DESCRIPTION
    p.add_argument("action", choices=["apply"], help="apply: one apply now")
    p.add_argument("--json", action="store_true", help="print the standby record as JSON")
    p.set_defaults(run=run)


def run(ctx: Context) -> int:
    out = ctx.out
    with host_lock(ctx.cfg.state, "standby apply"):
        record = standby.apply_newest(ctx.cfg, ctx.restic(), out.line)
    out.result(
        standby.record_json(record),
        [
            f"standby at set {record.set}: applied and verified at {record.verified_at} "
            f"({record.seconds:.1f}s, {len(record.dumps)} dumps in place, "
            f"{record.files_checked} files read back)"
        ],
    )
    return 0
