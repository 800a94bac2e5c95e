"""`shipper unlock`: remove stale restic locks."""

from __future__ import annotations

from typing import Any

from shipper.commands.context import Context


def register(p: Any, name: str) -> None:
    p.set_defaults(run=run)


def run(ctx: Context) -> int:
    ctx.restic().unlock_stale()
    ctx.out.line("stale locks removed")
    return 0
