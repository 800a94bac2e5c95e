"""`shipper sets`: list the sets, newest first."""

from __future__ import annotations

from typing import Any, List

from shipper.commands.context import Context, add_destination_argument
from shipper.core import sets
from shipper.core.progress import human_bytes


def register(p: Any, name: str) -> None:
    add_destination_argument(p)
    p.add_argument("--json", action="store_true", help="print the sets as JSON")
    p.set_defaults(run=run)


def run(ctx: Context) -> int:
    found = ctx.sets()
    ctx.out.result([s.to_json() for s in found], table(found))
    return 0


def table(found: List[sets.SnapshotSet]) -> List[str]:
    if not found:
        return ["no sets yet"]
    lines = [f"{'SET':<17} {'TIME (UTC)':<20} {'STATUS':<10} {'ADDED':>10} {'VANISHED':>8}  PARTS"]
    for item in found:
        when = item.time.strftime("%Y-%m-%d %H:%M:%S")
        parts = ", ".join(item.part_names()) or "-"
        lines.append(
            f"{item.id:<17} {when:<20} {item.status:<10} {human_bytes(item.bytes_added):>10} "
            f"{vanished_cell(item):>8}  {parts}"
        )
    return lines


def vanished_cell(item: sets.SnapshotSet) -> str:
    """The vanished count, and `+N` noted files in volatile folders."""
    noted = f"+{item.noted}" if item.noted else ""
    return f"{item.vanished}{noted}" if item.vanished or noted else "-"
