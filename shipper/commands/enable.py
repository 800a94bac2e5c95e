"""`shipper enable` / `shipper disable`: the schedule on or off (enabled: in the config)."""

from __future__ import annotations

from typing import Any

from shipper.commands.context import Context
from shipper.core import config, config_edit
from shipper.setup import provision


def register(p: Any, name: str) -> None:
    p.set_defaults(run=run, enabled=name == "enable")


def run(ctx: Context) -> int:
    path = config.config_path(ctx.args.config)
    changed = config_edit.set_enabled(path, ctx.args.enabled)
    if changed:
        provision.wake_daemon()
    state = "on" if ctx.args.enabled else "off"
    ctx.out.line(f"schedule {state} ({path})" if changed else f"the schedule was already {state}")
    return 0
