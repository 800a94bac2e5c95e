"""`shipper init`: create the repository if it does not exist."""

from __future__ import annotations

from typing import Any

from shipper.commands.context import Context


def register(p: Any, name: str) -> None:
    p.set_defaults(run=run)


def run(ctx: Context) -> int:
    created = ctx.restic(remote=True).init()
    where = ctx.cfg.repository.url
    ctx.out.line(
        f"created the repository at {where}" if created else f"the repository at {where} exists"
    )
    return 0
