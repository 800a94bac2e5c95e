"""`shipper receiver [run|start|stop|status]`: the slave's rest-server."""

from __future__ import annotations

from typing import Any, Dict, List

from shipper.commands.context import Context
from shipper.slave import receiver

DESCRIPTION = (
    "With no ACTION, run rest-server in the foreground (--append-only, TLS, "
    "htpasswd, --private-repos), as shipper-receiver.service does. start/stop go through "
    "systemd when it manages the receiver, else through the recorded pid."
)


def register(p: Any, name: str) -> None:
    p.description = DESCRIPTION
    p.add_argument("action", nargs="?", default="run", choices=["run", "start", "stop", "status"])
    p.add_argument("--json", action="store_true", help="status as JSON")
    p.set_defaults(run=run)


def run(ctx: Context) -> int:
    cfg, action = ctx.cfg, ctx.args.action
    if action == "run":
        receiver.exec_foreground(cfg)
    if action == "start":
        ctx.out.line(receiver.start(cfg))
    elif action == "stop":
        ctx.out.line(receiver.stop(cfg))
    else:
        state = receiver.status(cfg)
        ctx.out.result(state, status_lines(state))
        return 0 if state["running"] else 3
    return 0


def status_lines(state: Dict[str, Any]) -> List[str]:
    running = f"running (pid {state['pid']})" if state["pid"] else "running"
    return [
        f"receiver: {running if state['running'] else 'stopped'} [{state['manager']}]",
        f"  listen {state['listen']}, repositories in {state['repo_dir']}",
        f"  certificate SHA-256 fingerprint: {state['fingerprint']}",
    ]
