"""The promote journal: each finished step, so an interrupted promote resumes."""

from __future__ import annotations

import contextlib
import json
import threading
from pathlib import Path
from typing import Any, Dict, List

from shipper.core.state import write_synced
from shipper.slave.promote.model import DONE
from shipper.slave.promote.model import now as _now


class Journal:
    """The progress file: each finished step, written atomically and synced."""

    def __init__(self, folder: Path, set_id: str):
        self.path = folder / f"{set_id}.json"
        self.lock = threading.Lock()
        self.data: Dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            self.data = json.loads(self.path.read_text())

    @staticmethod
    def unfinished(folder: Path) -> List[Dict[str, Any]]:
        out = []
        for path in sorted(folder.glob("*.json")):
            with contextlib.suppress(OSError, ValueError):
                data = json.loads(path.read_text())
                if data.get("set") and not data.get("finished") and data.get("steps"):
                    out.append(data)
        return out

    def start(self, set_id: str, root: str) -> bool:
        """Begin or resume; True when resuming an interrupted run of the same promote."""
        resumable = (
            self.data.get("set") == set_id
            and self.data.get("root") == root
            and not self.data.get("finished")
        )
        if not resumable:
            self.data = {"set": set_id, "root": root, "started": _now(), "steps": {}, "attempts": 0}
        self.data["attempts"] = int(self.data.get("attempts", 0)) + 1
        self.data["finished"] = None
        self.save()
        return resumable and bool(self.data["steps"])

    def done(self, step: str) -> bool:
        return self.data.get("steps", {}).get(step, {}).get("status") == DONE

    def record(self, step: str, status: str, seconds: float, detail: Any = None) -> None:
        with self.lock:
            self.data["steps"][step] = {
                "status": status,
                "seconds": round(seconds, 3),
                "at": _now(),
                "detail": detail,
            }
            self.save()

    def remember(self, key: str, value: Any) -> None:
        with self.lock:
            self.data[key] = value
            self.save()

    def save(self) -> None:
        write_synced(self.path, json.dumps(self.data, indent=1, default=str))
