"""Progress for long runs: a bar in a terminal, a few quiet lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any, Dict, Optional, TextIO


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


class Progress:
    """Turns restic's JSON status messages into output fit for where it goes."""

    def __init__(self, stream: TextIO = sys.stderr, interactive: Optional[bool] = None):
        self.stream = stream
        self.interactive = stream.isatty() if interactive is None else interactive
        self.label = ""
        self._last_line = 0.0
        self._drawn = False

    def start(self, label: str) -> None:
        self.finish()
        self.label = label

    def __call__(self, message: Dict[str, Any]) -> None:
        if message.get("message_type") != "status":
            return
        now = time.monotonic()
        if self.interactive:
            self._draw(message)
        elif now - self._last_line >= 60:
            # Under systemd: one line a minute on long runs, nothing on short ones.
            if self._last_line:
                self.stream.write(f"{self.label}: {self._text(message)}\n")
                self.stream.flush()
            self._last_line = now

    def _text(self, message: Dict[str, Any]) -> str:
        percent = float(message.get("percent_done", 0)) * 100
        done = human_bytes(message.get("bytes_done", 0))
        total = human_bytes(message.get("total_bytes", 0))
        files = f"{message.get('files_done', 0)}/{message.get('total_files', 0)} files"
        eta = message.get("seconds_remaining")
        eta_text = f", ETA {int(eta) // 60}:{int(eta) % 60:02d}" if eta else ""
        return f"{percent:5.1f}% {done}/{total}, {files}{eta_text}"

    def _draw(self, message: Dict[str, Any]) -> None:
        percent = float(message.get("percent_done", 0))
        width = 24
        filled = int(percent * width)
        bar = "#" * filled + "-" * (width - filled)
        line = f"\r{self.label} [{bar}] {self._text(message)}"
        self.stream.write(line[:160].ljust(100))
        self.stream.flush()
        self._drawn = True

    def finish(self) -> None:
        if self._drawn:
            self.stream.write("\r" + " " * 100 + "\r")
            self.stream.flush()
            self._drawn = False
