"""`shipper status`: is the spare ready? A monitoring check as well as a report.

Levels follow the Nagios plugin convention (exit 0 OK, 1 WARNING, 2
CRITICAL), so any monitoring system can run `shipper status` as a check. The
newest complete set's age is judged against max_age: WARNING past two thirds
of it, CRITICAL past it.

On the slave everything comes from local disk: the repository (through
repository.local_path) and the receiver's port. Listing the snapshots costs a
restic process (~1 s), so the view of a local repository is cached and
refreshed only when its snapshots/ folder changes: a monitoring system may run
the check every minute.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from shipper.core import cron, destinations, sets
from shipper.core import state as state_files
from shipper.core.config import Config
from shipper.core.destinations.rest import RECEIVER_UNIT, port_answers
from shipper.core.progress import human_bytes
from shipper.core.restic import Restic
from shipper.notify import destination_status, standby_view
from shipper.notify import state_machine as notify
from shipper.notify.levels import CRITICAL, LEVEL_NAMES, OK, WARNING

DAEMON_UNIT = "shipper.service"
CACHE_FILE = state_files.STATUS_CACHE
CACHE_TTL = 900

ResticFactory = Callable[[], Restic]


# ---------------------------------------------------------------- the repository


@dataclass
class RepositoryView:
    location: str
    sets: int = 0
    complete: int = 0
    newest_complete: Optional[str] = None
    newest: Optional[str] = None
    newest_status: Optional[str] = None
    newest_vanished: int = 0
    size: Optional[int] = None
    created: Optional[float] = None
    error: Optional[str] = None

    @property
    def newest_complete_time(self) -> Optional[dt.datetime]:
        return sets.id_time(self.newest_complete) if self.newest_complete else None

    @property
    def created_time(self) -> Optional[dt.datetime]:
        return dt.datetime.fromtimestamp(self.created, dt.timezone.utc) if self.created else None


def local_repository(cfg: Config) -> Optional[Path]:
    """The repository as a folder on this machine, if it is one."""
    return destinations.for_config(cfg).local_folder()


def repository_view(cfg: Config, restic_factory: Optional[ResticFactory] = None) -> RepositoryView:
    """Set counts, the newest sets and the size; errors land in `.error`, never raised."""
    restic_factory = restic_factory or (lambda: Restic.for_config(cfg))
    path = local_repository(cfg)
    location = str(path) if path else cfg.repository.url
    key = _cache_key(path) if path else None
    if key is not None:
        cached = _read_cache(cfg, location, key)
        if cached is not None:
            return cached
    view = RepositoryView(location)
    try:
        found = sets.group(restic_factory().snapshots())
    except Exception as exc:  # every restic or config failure becomes a status line
        view.error = str(exc)
        return view
    view.sets = len(found)
    view.complete = sum(1 for s in found if s.status == sets.COMPLETE)
    newest_complete = sets.newest(found)
    view.newest_complete = newest_complete.id if newest_complete else None
    if found:
        view.newest, view.newest_status = found[0].id, found[0].status
        view.newest_vanished = found[0].vanished
    if path:
        view.size = disk_usage(path)
        view.created = _mtime(path / "config")
        if key is not None:
            _write_cache(cfg, location, key, view)
    return view


def disk_usage(path: Path) -> int:
    """Bytes the folder takes on disk, like du (cheaper than `restic stats`)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


def _mtime(path: Path) -> Optional[float]:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _cache_key(path: Path) -> Optional[List[int]]:
    try:
        info = (path / "snapshots").stat()
    except OSError:
        return None
    return [info.st_ino, info.st_mtime_ns]


def _read_cache(cfg: Config, location: str, key: List[int]) -> Optional[RepositoryView]:
    cache = state_files.status_cache(cfg.state)
    if cache is None or cache.location != location or cache.key != key:
        return None
    try:
        if time.time() - cache.at > CACHE_TTL:
            return None
        return RepositoryView(**cache.view)
    except (ValueError, TypeError):
        return None


def _write_cache(cfg: Config, location: str, key: List[int], view: RepositoryView) -> None:
    cache = state_files.StatusCache(location, key, time.time(), asdict(view))
    try:
        state_files.save_status_cache(cfg.state, cache)
    except OSError:
        pass  # only a cache


# ---------------------------------------------------------------- ports


def listen_address(listen: str) -> Tuple[str, int]:
    """Where to knock to reach a receiver listening on `listen` (":8000", "[::]:8000", "host:8000")."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return host, int(port)


def receiver_unreachable(cfg: Config) -> Optional[str]:
    """Why the master cannot reach its destination, in a sentence; None when it answers."""
    return destinations.for_config(cfg, remote=True).probe()


# ---------------------------------------------------------------- the check


@dataclass
class Report:
    level: int = OK
    problems: List[Tuple[int, str]] = field(default_factory=list)
    data: Dict[str, Any] = field(default_factory=dict)

    def add(self, level: int, text: str) -> None:
        self.problems.append((level, text))
        self.level = max(self.level, level)

    @property
    def name(self) -> str:
        return LEVEL_NAMES[self.level]

    def to_json(self) -> Dict[str, Any]:
        problems = [{"level": LEVEL_NAMES[lvl], "text": text} for lvl, text in self.problems]
        return {"status": self.name, "exit_code": self.level, "problems": problems, **self.data}


def thresholds(
    cfg: Config, warning: Optional[int], critical: Optional[int]
) -> Tuple[int, int, int]:
    """(max_age, warning, critical) in seconds; warning defaults to two thirds of critical."""
    age_limit = cron.max_age(cfg)
    critical = critical or age_limit
    warning = warning or int(critical * 2 / 3)
    return age_limit, min(warning, critical), critical


def gather(
    cfg: Config,
    restic_factory: Optional[ResticFactory] = None,
    warning: Optional[int] = None,
    critical: Optional[int] = None,
) -> Report:
    report = Report()
    current = time.time()
    age_limit, warn_at, crit_at = thresholds(cfg, warning, critical)
    report.data.update(
        role=cfg.role,
        host=cfg.hostname,
        enabled=cfg.enabled,
        schedule=cfg.schedule,
        max_age=age_limit,
        warning_after=warn_at,
        critical_after=crit_at,
    )
    if cfg.role == "slave":
        _receiver(cfg, report)
        view = repository_view(cfg, restic_factory)
    else:
        _daemon(cfg, report)
        _last_run(cfg, report)
        unreachable = receiver_unreachable(cfg)
        view = RepositoryView(cfg.repository.url, error=unreachable) if unreachable else None
        view = view or repository_view(cfg, restic_factory)
    _repository(cfg, report, view)
    _age(cfg, report, view, current, warn_at, crit_at)
    if cfg.role == "slave" and cfg.standby.enabled:
        report.data["standby"], problems = standby_view.judge(cfg, view.newest_complete)
        for level, text in problems:
            report.add(level, text)
    _destinations(cfg, report, current, warn_at, crit_at)
    return report


def _destinations(cfg: Config, report: Report, current: float, warn_at: int, crit_at: int) -> None:
    if not cfg.destinations:
        return
    found = destination_status.views(cfg, current, warn_at, crit_at)
    report.data["destinations"] = [v.to_json() for v in found]
    for view in found:
        if view.level != OK:
            report.add(view.level, view.problem or view.name)
    perf = [v.perfdata(warn_at, crit_at) for v in found]
    report.data["destination_perfdata"] = [p for p in perf if p]


def _daemon(cfg: Config, report: Report) -> None:
    beat = state_files.read_heartbeat(cfg.state)
    next_run = beat.get("next_run") if beat else None
    if beat is None and cfg.enabled:
        next_run = cron.next_slot(cfg.schedule, cron.now()).isoformat()
    report.data["daemon"] = {
        "running": beat is not None,
        "pid": beat.get("pid") if beat else None,
        "since": beat.get("started") if beat else None,
        "busy": bool(beat and beat.get("running")),
    }
    report.data["next_run"] = next_run if cfg.enabled else None
    if not cfg.enabled:
        report.add(
            WARNING, "disabled (enabled: false): no sets are taken; `shipper enable` resumes"
        )
    elif beat is None:
        report.add(
            WARNING,
            f"the daemon is not running: no sets are taken on the schedule; "
            f"`systemctl start {DAEMON_UNIT}`",
        )


def _last_run(cfg: Config, report: Report) -> None:
    """From the notification state, which every run writes (even one that failed before
    it could start a set); else from the last run's record."""
    state = notify.load_state(cfg)
    run = state.last_run
    if not run:
        record = state_files.last_run(cfg.state)
        if record:
            recorded = record.status
            run = {
                "set": record.set_id,
                "status": recorded if recorded in (sets.COMPLETE, sets.PARTIAL) else notify.FAILED,
                "started": _epoch(record.started),
                "duration": record.duration,
                "bytes_added": record.bytes_added,
                "error": record.error or "",
            }
    if not run:
        report.data["last_run"] = None
        return
    report.data["last_run"] = {
        "set": run.get("set"),
        "status": run.get("status"),
        "started": dt.datetime.fromtimestamp(float(run.get("started") or 0))
        .astimezone()
        .isoformat(),
        "duration": run.get("duration"),
        "bytes_added": run.get("bytes_added"),
        "error": run.get("error") or "",
        "failures_in_a_row": state.failures,
        "vanished": _run_vanished(cfg, run.get("set")),
    }
    if run.get("status") != notify.COMPLETE:
        report.add(
            WARNING, f"the last run {run.get('status')}: {run.get('error') or 'no error recorded'}"
        )


def _run_vanished(cfg: Config, set_id: Any) -> int:
    """The vanished count of the last run, from its record (the notification state has none)."""
    record = state_files.last_run(cfg.state)
    return record.vanished if record and set_id and record.set_id == set_id else 0


def _epoch(text: Any) -> float:
    try:
        return dt.datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return 0.0


def _receiver(cfg: Config, report: Report) -> None:
    host, port = listen_address(cfg.receiver.listen)
    why = port_answers(host, port)
    report.data["receiver"] = {
        "unit": RECEIVER_UNIT,
        "listen": cfg.receiver.listen,
        "answers": why is None,
    }
    if why is not None:
        report.add(
            CRITICAL,
            f"the receiver does not answer on {cfg.receiver.listen} ({why}): the master cannot send sets; "
            f"`systemctl start {RECEIVER_UNIT}`",
        )


def _repository(cfg: Config, report: Report, view: RepositoryView) -> None:
    report.data["repository"] = {
        "location": view.location,
        "sets": view.sets,
        "complete_sets": view.complete,
        "size": view.size,
        "newest": view.newest,
        "newest_status": view.newest_status,
        "newest_vanished": view.newest_vanished,
        "error": view.error,
    }
    if view.error:
        what = (
            "cannot read the local repository"
            if cfg.role == "slave"
            else "cannot read the repository"
        )
        report.add(CRITICAL if cfg.role == "slave" else WARNING, f"{what}: {view.error}")


def _age(
    cfg: Config, report: Report, view: RepositoryView, current: float, warn_at: int, crit_at: int
) -> None:
    newest = view.newest_complete
    source = "repository"
    if view.error and cfg.role != "slave":
        newest = notify.load_state(cfg).newest_complete
        source = "this server's record"
    if not newest or not sets.is_set_id(newest):
        report.data["newest_complete"] = None
        if not view.error or cfg.role != "slave":
            report.add(CRITICAL, "there is no complete set: the spare cannot be promoted")
        return
    age = max(0.0, current - sets.id_time(newest).timestamp())
    report.data["newest_complete"] = {"set": newest, "age": round(age), "source": source}
    described = f"the newest complete set {newest} is {cron.describe_duration(age)} old"
    if age > crit_at:
        report.add(
            CRITICAL,
            f"{described}, past max_age ({cron.describe_duration(crit_at)}): the spare is stale",
        )
    elif age > warn_at:
        report.add(
            WARNING,
            f"{described} (warning after {cron.describe_duration(warn_at)}, "
            f"stale after {cron.describe_duration(crit_at)})",
        )


# ---------------------------------------------------------------- text


def summary_line(report: Report) -> str:
    """The first line, Nagios style: status, the worst problem or the set's age, perfdata."""
    newest = report.data.get("newest_complete")
    if report.problems:
        worst = max(report.problems, key=lambda p: p[0])[1]
        text = worst + (f" (+{len(report.problems) - 1} more)" if len(report.problems) > 1 else "")
    elif newest:
        text = (
            f"newest complete set {newest['set']} is {cron.describe_duration(newest['age'])} old "
            f"(stale after {cron.describe_duration(report.data['critical_after'])})"
        )
    else:
        text = "no problems"
    perf = []
    if newest:
        perf.append(
            f"age={newest['age']}s;{report.data['warning_after']};{report.data['critical_after']};0"
        )
    repo = report.data.get("repository") or {}
    if not repo.get("error"):
        perf.append(f"sets={repo.get('sets', 0)};;;0")
        if repo.get("size") is not None:
            perf.append(f"size={repo['size']}B;;;0")
    perf += report.data.get("destination_perfdata", [])
    return f"SHIPPER {report.name}: {text}" + (f" | {' '.join(perf)}" if perf else "")


def detail_lines(report: Report) -> List[str]:
    data = report.data
    lines = [
        f"role:        {data['role']} on {data['host']}"
        + ("" if data["enabled"] else " (disabled)")
    ]
    if data["role"] == "master":
        daemon = data["daemon"]
        state = f"running (pid {daemon['pid']})" if daemon["running"] else "not running"
        lines.append(f"daemon:      {state}" + (", taking a set now" if daemon["busy"] else ""))
        nxt = data.get("next_run")
        lines.append(
            f"schedule:    {data['schedule']}" + (f", next run {_local(nxt)}" if nxt else "")
        )
    newest = data.get("newest_complete")
    limits = (
        f"warning after {cron.describe_duration(data['warning_after'])}, "
        f"stale after {cron.describe_duration(data['critical_after'])}"
    )
    if newest:
        origin = "" if newest["source"] == "repository" else f" (from {newest['source']})"
        lines.append(
            f"newest set:  {newest['set']}, {cron.describe_duration(newest['age'])} old{origin} ({limits})"
        )
    else:
        lines.append(f"newest set:  none complete ({limits})")
    run = data.get("last_run")
    if data["role"] == "master":
        if run:
            took = f", {run['duration']:.1f}s" if run.get("duration") else ""
            added = f", added {human_bytes(run['bytes_added'])}" if run.get("bytes_added") else ""
            gone = f", {run['vanished']} files vanished" if run.get("vanished") else ""
            lines.append(f"last run:    {run['set'] or '-'} {run['status']}{took}{added}{gone}")
            if run.get("error"):
                lines.append(f"             error: {run['error']}")
        else:
            lines.append("last run:    none yet")
    repo = data["repository"]
    if repo["error"]:
        lines.append(f"repository:  {repo['location']}: unreadable")
    else:
        size = f", {human_bytes(repo['size'])} on disk" if repo.get("size") is not None else ""
        gone = (
            f", {repo['newest_vanished']} files vanished in the newest"
            if repo.get("newest_vanished")
            else ""
        )
        lines.append(
            f"repository:  {repo['location']}: {repo['sets']} sets "
            f"({repo['complete_sets']} complete){size}{gone}"
        )
    if "receiver" in data:
        rec = data["receiver"]
        state = "answers" if rec["answers"] else "does not answer"
        lines.append(f"receiver:    {rec['unit']} {state} on {rec['listen']}")
    if data.get("standby"):
        lines.append(standby_view.line(data["standby"]))
    for level, text in sorted(report.problems, key=lambda p: -p[0]):
        lines.append(f"{LEVEL_NAMES[level]}: {text}")
    return lines


def _local(iso: str) -> str:
    try:
        return dt.datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    except ValueError:
        return iso
