"""`shipper daemon`: sets on the schedule (shipper.service)."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from shipper.commands.context import Context
from shipper.core import config, cron
from shipper.core.errors import ShipperError
from shipper.master import daemon

DESCRIPTION = (
    "Take a set at every slot of `schedule` (cron syntax), never two at once. "
    "A set that outlasts its slot delays the next; slots missed while the daemon was "
    "down run once at start. `enabled: false` (shipper disable) pauses it without a "
    "restart. On a slave it takes no sets and emails when the newest set gets stale."
)


def register(p: Any, name: str) -> None:
    p.description = DESCRIPTION
    p.add_argument(
        "--stop-grace",
        type=float,
        default=60,
        metavar="SECONDS",
        help="on SIGTERM, let a running set finish this long, then interrupt it (default 60)",
    )
    # For tests: how often the config is re-read, and a schedule that may have a seconds field.
    p.add_argument("--check-interval", type=float, default=30, help=argparse.SUPPRESS)
    p.add_argument("--schedule", help=argparse.SUPPRESS)
    p.set_defaults(run=run)


def run(ctx: Context) -> int:
    args = ctx.args
    _ = ctx.cfg  # a broken config fails here, before the loop
    if args.schedule and not cron.valid_expression(args.schedule):
        raise ShipperError(f"--schedule {args.schedule!r} is not a cron expression")
    logging.getLogger("shipper").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    options = daemon.Options(
        config_path=config.config_path(args.config),
        check_interval=max(0.1, args.check_interval),
        schedule=args.schedule,
        stop_grace=max(0.0, args.stop_grace),
        verbose=args.verbose,
    )
    return daemon.run(options)
