"""What every command gets: the parsed arguments, the config and restic on first use,
and one printer chosen once from --json."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Iterable, List, Optional

from shipper.core import config, sets
from shipper.core.errors import ShipperError
from shipper.core.progress import Progress
from shipper.core.restic import Restic

EXIT_PARTIAL = 4


class TextPrinter:
    """Lines for a person: progress lines, the result as text, problems on stderr."""

    def line(self, text: str = "") -> None:
        print(text)

    def lines(self, texts: Iterable[str]) -> None:
        print("\n".join(texts))

    def problem(self, text: str) -> None:
        print(text, file=sys.stderr)

    def result(self, data: Any, texts: Iterable[str] = ()) -> None:
        for text in texts:
            print(text)


class JsonPrinter(TextPrinter):
    """One JSON document for a program: only the result is printed."""

    def line(self, text: str = "") -> None:
        pass

    def lines(self, texts: Iterable[str]) -> None:
        pass

    def problem(self, text: str) -> None:
        pass

    def result(self, data: Any, texts: Iterable[str] = ()) -> None:
        print(json.dumps(data, indent=2, default=str))


class Context:
    """What a command needs, made on first use: the config, a restic handle, the printer."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self._cfg: Optional[config.Config] = None
        self.out = JsonPrinter() if getattr(args, "json", False) else TextPrinter()

    @property
    def cfg(self) -> config.Config:
        if self._cfg is None:
            self._cfg = config.load(self.args.config)
        return self._cfg

    @property
    def loaded_config(self) -> Optional[config.Config]:
        """The config if a command loaded it, without loading it."""
        return self._cfg

    def restic(self, progress: Optional[Progress] = None, remote: bool = False) -> Restic:
        """The repository (or `--destination NAME`); a slave reads its local copy unless `remote`."""
        name = getattr(self.args, "destination", None)
        return Restic.for_config(self.cfg, progress=progress, remote=remote, destination=name)

    def sets(self) -> List[sets.SnapshotSet]:
        return sets.group(self.restic().snapshots())


def confirm(yes: bool, what: str) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise ShipperError(f"not on a terminal: give --yes to {what}")
    answer = input(f"{what}? type yes to go on: ")
    if answer.strip().lower() != "yes":
        raise ShipperError("not confirmed: nothing was changed")


def add_destination_argument(p: Any) -> None:
    """`--destination NAME`: read the sets of that configured destination instead of `repository`."""
    p.add_argument(
        "--destination",
        metavar="NAME",
        help="a destination from the config's `destinations` (default: repository)",
    )
