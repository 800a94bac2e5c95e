"""shipper's run state: every file it keeps in the state folder, and their one writer.

Each file is named here with who writes it and who reads it, and its record
is typed here (LastRun, NotifyState, Heartbeat, Damage, ReceiverState,
StatusCache, ...), so that a reader (status, notify, the daemon) needs no
import of the writer's module. Every file is replaced atomically
(core.files.replace_file): a reader or a crash sees the old file or the new
one, never half of one. The JSON keys are those of earlier versions, so
existing state keeps reading.

  last-run.json       the last set's result           snapshot -> status, notify, daemon
  last-set-id         the last set's id                snapshot -> snapshot (ids sort by time)
  notify.json         failing/recovered, newest set    notify -> status, metrics
  daemon.json         the daemon's heartbeat           daemon -> status
  damage.json         packs `check` found damaged      check -> promote, check
  receiver.json       the receiver's pid and manager   receiver -> receiver, status
  status-cache.json   the repository view, 15 min      status -> status
  promote/<set>.json  promote's journal (synced)       promote -> promote
  last-promote.json   promote's last report (synced)   promote -> operator
  standby.json        what the standby holds (synced)  standby apply -> promote, status, daemon
  speeds.json         measured restore/load speeds     standby apply, promote -> promote --dry-run
  copies/<name>.json  what a destination holds whole   copies -> copies (skips the listings)
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from shipper.core import records, sets
from shipper.core.files import replace_file

LAST_RUN = "last-run.json"
LAST_SET_ID = "last-set-id"
NOTIFY = "notify.json"
HEARTBEAT = "daemon.json"
DAMAGE = "damage.json"
RECEIVER = "receiver.json"
STATUS_CACHE = "status-cache.json"
PROMOTE_DIR = "promote"
LAST_PROMOTE = "last-promote.json"
STANDBY = "standby.json"
SPEEDS = "speeds.json"
COPIES_DIR = "copies"


# ---------------------------------------------------------------- the one writer and reader


def write_text(path: Path, text: str, mode: int = 0o600, sync: bool = False) -> None:
    """Replace a state file atomically; `sync` for records that must survive a power cut."""
    replace_file(path, text, mode=mode, sync=sync)


def write_json(path: Path, data: Any, indent: Optional[int] = 1, sync: bool = False) -> None:
    write_text(path, json.dumps(data, indent=indent, default=str), sync=sync)


def read_json(path: Path) -> Optional[Any]:
    """The file's JSON, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- last run (master)


@dataclass
class LastRun:
    """What readers use of the last set's result (the file holds the whole SetResult)."""

    set_id: Optional[str] = None
    status: Optional[str] = None
    started: Optional[str] = None
    duration: Optional[float] = None
    bytes_added: Optional[int] = None
    error: Optional[str] = ""
    vanished: int = 0  # files deleted while the set was taken: not a failure

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> LastRun:
        return cls(
            set_id=data.get("set_id"),
            status=data.get("status"),
            started=data.get("started"),
            duration=data.get("duration"),
            bytes_added=data.get("bytes_added"),
            error=data.get("error", ""),
            vanished=int(data.get("vanished") or 0),
        )


def record_run(folder: Path, result: Dict[str, Any]) -> None:
    """The SetResult's JSON, whole."""
    write_json(folder / LAST_RUN, result)


def last_run(folder: Path) -> Optional[LastRun]:
    data = read_json(folder / LAST_RUN)
    return LastRun.from_json(data) if isinstance(data, dict) and data else None


def last_set_id(folder: Path) -> Optional[str]:
    try:
        value = (folder / LAST_SET_ID).read_text().strip()
    except OSError:
        return None
    return value if sets.is_set_id(value) else None


def write_last_set_id(folder: Path, set_id: str) -> None:
    write_text(folder / LAST_SET_ID, set_id + "\n")


# ---------------------------------------------------------------- notification state


@dataclass
class Watch:
    """One thing besides the runs that fails and recovers (notify/watches.py), and its
    current failure: since when, how many looks, when it was last emailed, its error."""

    failing: bool = False
    since: Optional[float] = None
    count: int = 0
    emailed: Optional[float] = None
    error: str = ""
    cause: str = ""  # the error without what changes at each look (an age)


@dataclass
class SeenDestination:
    """A copy destination as the last look found it (notify/watches.py), for its gauges."""

    reachable: bool = False
    newest_set_time: Optional[float] = None


@dataclass
class LastCheck:
    at: float = 0.0
    ok: bool = False


@dataclass
class NotifyState:
    """What the notifications remember between runs (notify.json, notify/store.py): failing
    or not, stale or not, the newest complete set, and the watches. Times are Unix times."""

    last_run: Optional[Dict[str, Any]] = None  # the run's outcome, as its webhook got it
    failing: bool = False
    failures: int = 0  # runs failed in a row
    failing_since: Optional[float] = None
    failure_emailed: Optional[float] = None
    last_error: str = ""
    last_success: Optional[float] = None
    newest_complete: Optional[str] = None  # the newest complete set's id
    newest_set_time: Optional[float] = None
    max_age: Optional[int] = None
    max_age_for: Optional[str] = None  # "schedule|notify.max_age" that max_age was computed for
    stale: bool = False
    stale_since: Optional[float] = None
    stale_emailed: Optional[float] = None
    last_check: Optional[LastCheck] = None
    watches: Dict[str, Watch] = field(default_factory=dict)  # "standby", "destination:NAME"
    destinations: Dict[str, SeenDestination] = field(default_factory=dict)
    destinations_checked: Optional[float] = None

    @classmethod
    def from_json(cls, data: Any) -> NotifyState:
        return records.typed_record(cls, data)


def notify_state(folder: Path) -> Optional[NotifyState]:
    """The saved state, or None when there is none yet (or it is not a JSON object)."""
    data = read_json(folder / NOTIFY)
    return NotifyState.from_json(data) if isinstance(data, dict) else None


def save_notify_state(folder: Path, data: NotifyState) -> None:
    write_json(folder / NOTIFY, asdict(data))


# ---------------------------------------------------------------- daemon heartbeat


@dataclass
class Heartbeat:
    pid: int
    started: str
    role: str
    enabled: bool
    schedule: str
    next_run: Optional[str]
    running: bool = False

    def to_json(self) -> Dict[str, Any]:
        return asdict(self)


def write_heartbeat(folder: Path, beat: Heartbeat) -> None:
    write_json(folder / HEARTBEAT, beat.to_json(), indent=None)


def clear_heartbeat(folder: Path) -> None:
    try:
        (folder / HEARTBEAT).unlink()
    except OSError:
        pass


def read_heartbeat(folder: Path) -> Optional[Dict[str, Any]]:
    """The running daemon's heartbeat, or None when no daemon runs."""
    try:
        beat = json.loads((folder / HEARTBEAT).read_text())
        pid = int(beat["pid"])
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read().split(b"\0")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return beat if b"daemon" in cmdline else None


# ---------------------------------------------------------------- damage found by check


@dataclass
class Damage:
    checked: str = ""
    packs: List[str] = field(default_factory=list)
    sets: List[str] = field(default_factory=list)

    def why(self, chosen: sets.SnapshotSet) -> str:
        """Why the last check says this set cannot be read ('' when it can)."""
        if chosen.id not in self.sets:
            return ""
        packs = ", ".join(p[:12] for p in self.packs[:3]) + (" ..." if len(self.packs) > 3 else "")
        return f"`shipper check` ({self.checked}) found its data in damaged pack(s) {packs}"


def load_damage(folder: Path) -> Damage:
    data = read_json(folder / DAMAGE)
    try:
        return Damage(str(data["checked"]), list(data["packs"]), list(data["sets"]))
    except (KeyError, TypeError):
        return Damage()


def save_damage(folder: Path, damage: Damage) -> None:
    write_json(folder / DAMAGE, asdict(damage))


def now_utc_minute() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# ---------------------------------------------------------------- receiver


@dataclass
class ReceiverState:
    """Who runs the receiver (systemd or a process shipper started) and that process."""

    manager: Optional[str] = None  # "systemd" | "process"; None: not recorded yet
    unit: Optional[str] = None
    pid: Optional[int] = None
    log: Optional[str] = None

    @classmethod
    def from_json(cls, data: Any) -> ReceiverState:
        data = data if isinstance(data, dict) else {}
        pid = data.get("pid")
        return cls(
            manager=data.get("manager"),
            unit=data.get("unit"),
            pid=pid if isinstance(pid, int) else None,
            log=data.get("log"),
        )


def receiver_state(folder: Path) -> ReceiverState:
    return ReceiverState.from_json(read_json(folder / RECEIVER))


def save_receiver_state(folder: Path, state: ReceiverState) -> None:
    data = {key: value for key, value in asdict(state).items() if value is not None}
    write_json(folder / RECEIVER, data)


# ---------------------------------------------------------------- status cache


@dataclass
class StatusCache:
    """`shipper status`'s view of a repository, valid while its snapshots folder is unchanged."""

    location: str
    key: List[int]
    at: float
    view: Dict[str, Any]


def status_cache(folder: Path) -> Optional[StatusCache]:
    data = read_json(folder / STATUS_CACHE)
    try:
        return StatusCache(data["location"], data["key"], data["at"], data["view"])
    except (KeyError, TypeError):
        return None


def save_status_cache(folder: Path, cache: StatusCache) -> None:
    write_json(folder / STATUS_CACHE, asdict(cache), indent=None)


# ---------------------------------------------------------------- promote


def write_synced(path: Path, text: str) -> None:
    """Replace a root-only file so that a crash leaves the old or the new one whole."""
    write_text(path, text, sync=True)


# ---------------------------------------------------------------- standby


APPLIED, APPLYING, FAILED = "applied", "applying", "failed"


@dataclass
class StandbyRecord:
    """What the slave's live paths and databases hold, written by each standby apply.

    `state` is "applied" only once the set is in place and verified; while an
    apply runs (or after one failed or was killed) it says so, and promote
    takes the full path. `dumps` names only the dumps known to be in place,
    loaded and verified (a dump being reloaded leaves it first), so promote
    may skip exactly those whatever the state.
    """

    set: Optional[str] = None
    state: str = ""
    root: str = "/"
    files: Optional[str] = None  # the files snapshot in place, None while files are in flux
    dumps: Dict[str, str] = field(default_factory=dict)  # part -> sha256 loaded and verified
    started: str = ""
    verified_at: str = ""
    seconds: float = 0.0
    files_checked: int = 0
    files_read: int = 0  # of those, compared byte for byte with the repository's
    tables_checked: int = 0  # tables whose rows were counted after their load
    error: str = ""
    last_good: Optional[str] = None  # the last set applied and verified (history only)
    warning: str = ""  # what went wrong after the set was in place (a post-apply hook)

    @property
    def applied(self) -> bool:
        return self.state == APPLIED


def standby_record(folder: Path) -> StandbyRecord:
    return records.typed_record(StandbyRecord, read_json(folder / STANDBY))


def save_standby(folder: Path, record: StandbyRecord) -> None:
    write_json(folder / STANDBY, asdict(record), sync=True)


# ---------------------------------------------------------------- measured speeds


@dataclass
class Speeds:
    """What an apply or a promote measured, for promote --dry-run's expected duration.

    Bytes written by restic's restore of the files and the seconds that took;
    dump bytes loaded into the database servers and the seconds the loads
    took (side by side). Zero seconds: not measured yet.
    """

    files_bytes: int = 0
    files_seconds: float = 0.0
    load_bytes: int = 0
    load_seconds: float = 0.0
    files_from: str = ""  # "apply of set X at TIME"
    load_from: str = ""


def speeds(folder: Path) -> Speeds:
    return records.typed_record(Speeds, read_json(folder / SPEEDS))


def save_speeds(folder: Path, record: Speeds) -> None:
    write_json(folder / SPEEDS, asdict(record))


# ---------------------------------------------------------------- what each destination holds


@dataclass
class CopyRecord:
    """What the last copy to one destination left there, so the next set needs no listing.

    `through`: every set up to this one that the destination should hold is
    there whole (as of the last copy that succeeded); `snapshots`: that set's
    snapshot ids in the source, offered again with the next set (restic skips
    them when they are there, and copies them when someone emptied the
    destination, which shows the record was wrong). `ok` is false from the
    start of a copy until it succeeds, so a killed or failed copy makes the
    next run list both sides. `below`: the record was found wrong when this set
    went; the listing counts only older sets as already there.
    """

    url: str = ""
    through: str = ""
    snapshots: List[str] = field(default_factory=list)
    ok: bool = False
    below: str = ""


def copy_record_path(folder: Path, name: str) -> Path:
    return folder / COPIES_DIR / f"{name}.json"


def copy_record(folder: Path, name: str) -> CopyRecord:
    return records.whole_record(CopyRecord, read_json(copy_record_path(folder, name)))


def save_copy_record(folder: Path, name: str, record: CopyRecord) -> None:
    """One file per destination: the copies run in parallel threads."""
    write_json(copy_record_path(folder, name), asdict(record))
