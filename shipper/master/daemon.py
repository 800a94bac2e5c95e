"""`shipper daemon`: one set per cron slot, never two at once.

Each set runs as a child `shipper snapshot` process rather than in the
daemon's own process: a manual run and a scheduled run then share one code
path (lock, notifications, metrics, exit codes), a crash or a leak in one run
cannot take the daemon down, every run reads the config afresh, and the child
leads its own process group, so stopping it reaches restic too: SIGINT makes
restic remove its lock and exit without writing a snapshot.

Slots are judged by the wall clock in local time, like cron. A run that
outlasts its slot delays the next one, and every slot that passed meanwhile
folds into that one run; slots missed while the daemon was down (judged from
the last run's record) run once at start. On the slave the daemon takes no
sets: it watches the age of the newest complete set in the local repository,
and with standby.enabled it applies each new complete set (a child `shipper
standby apply` at idle I/O priority, under the host lock, so never two at
once; the newest complete set is always the target, sets that landed during
an apply fold into the next one). With `destinations` in the slave's config
it first copies each new complete set there (a child `shipper copy`: pull,
as PBS sync jobs do, so the offsite keys never sit on the master). A failed
apply or copy is retried after APPLY_RETRY, or at once when a newer set lands.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from dateutil import tz

from shipper import notify
from shipper.core import config, copies, destinations, process, state
from shipper.core.config import Config
from shipper.core.cron import describe_duration, max_age, next_slot, now, slots_between
from shipper.core.errors import ShipperError
from shipper.notify import status

log = logging.getLogger("shipper.daemon")

_CHILD = "import sys; from shipper.cli import main; sys.exit(main(sys.argv[1:]))"
EXIT_LOCK_HELD = 3
EXIT_PARTIAL = 4
APPLY_RETRY = 600.0


@dataclass(frozen=True)
class _Job:
    """What the slave's daemon runs for each new set: `shipper COMMAND`."""

    name: str
    command: Tuple[str, ...]
    doing: str
    done: str


PULL = _Job("copy", ("copy",), "copying", "copied to every destination")
APPLY = _Job("standby", ("standby", "apply"), "applying", "applied and verified")


# ---------------------------------------------------------------- the daemon


@dataclass
class Options:
    config_path: str
    check_interval: float = 30.0
    schedule: Optional[str] = None
    stop_grace: float = 60.0
    verbose: bool = False


class Daemon:
    def __init__(self, options: Options, cfg: Config):
        self.options = options
        self.cfg = cfg
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.signals = 0
        self.child: Optional[subprocess.Popen] = None
        self.started = now()
        self.last_run_end: Optional[dt.datetime] = None
        self.last_run_seconds = 0.0
        self._said: Dict[str, str] = {}
        self._heartbeat: Optional[state.Heartbeat] = None
        self._failed: Dict[str, Tuple[str, float]] = {}  # job: (set, retry after)

    # ------------------------------------------------------------ signals

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, lambda signum, frame: self.wake.set())

    def _on_stop(self, signum: int, frame: Any) -> None:
        self.signals += 1
        self.stopping.set()
        self.wake.set()

    # ------------------------------------------------------------ the loop

    @property
    def expression(self) -> str:
        return self.options.schedule or self.cfg.schedule

    def run(self) -> int:
        reference = self._initial_reference()
        if self.cfg.role == "slave":
            log.info(
                "started (pid %d) on a slave: taking no sets; emailing when the newest set "
                "is older than %s",
                os.getpid(),
                describe_duration(max_age(self.cfg)),
            )
        else:
            log.info("started (pid %d): schedule %r", os.getpid(), self.expression)
        try:
            while not self.stopping.is_set():
                try:
                    reference = self._cycle(reference)
                except Exception as exc:  # a bug in one cycle must not end the schedule
                    log.error("unexpected error, going on: %s: %s", type(exc).__name__, exc)
                    log.debug("details", exc_info=True)
                    self._sleep(self.options.check_interval)
        finally:
            self._clear_heartbeat()
        log.info("stopped")
        return 0

    def _cycle(self, reference: dt.datetime) -> dt.datetime:
        self._reload()
        if self.cfg.role == "slave":
            newest = self._watch_staleness()
            if self.cfg.destinations and newest:
                self._pull(newest)
            if self.cfg.standby.enabled and newest:
                self._follow(newest)
            self._sleep(self.options.check_interval)
            return now()
        return self._master_cycle(reference)

    def _master_cycle(self, reference: dt.datetime) -> dt.datetime:
        current = now()
        if not self.cfg.enabled:
            self._say_once(
                "enabled", "disabled (enabled: false): taking no sets until `shipper enable`"
            )
            self._write_heartbeat(None)
            self._sleep(self.options.check_interval)
            return current  # slots that pass while disabled are skipped, not caught up
        self._say_once("enabled", f"enabled: taking sets on the schedule {self.expression!r}")
        due = next_slot(self.expression, reference)
        if due > current:
            self._write_heartbeat(due)
            self._sleep(min(self.options.check_interval, (due - current).total_seconds()))
            return reference
        missed, latest = slots_between(self.expression, reference, current)
        latest = latest or due
        self._explain_lateness(due, latest, current, missed, reference)
        self._write_heartbeat(latest, running=True)
        self._take_set(latest)
        return latest

    def _initial_reference(self) -> dt.datetime:
        """When the last run started (so missed slots run once), or now with no record."""
        record = state.last_run(self.cfg.state)
        current = now()
        try:
            started = dt.datetime.fromisoformat(str(record.started if record else None))
        except ValueError:
            return current
        if started.tzinfo is None:
            started = started.replace(tzinfo=dt.timezone.utc)
        return min(started.astimezone(tz.tzlocal()), current)

    def _explain_lateness(
        self,
        due: dt.datetime,
        latest: dt.datetime,
        current: dt.datetime,
        missed: int,
        reference: dt.datetime,
    ) -> None:
        late = (current - due).total_seconds()
        first = self.last_run_end is None
        overran = self.last_run_end is not None and self.last_run_end > due
        missed_at_start = first and due < self.started
        if not (overran or missed_at_start or late >= max(5.0, self.options.check_interval)):
            return
        if missed > 1:
            slots = f"{missed} slots passed ({_clock(due)} to {_clock(latest)})"
        else:
            slots = f"the {_clock(due)} slot passed"
        if overran:
            log.warning(
                "the previous set ran %s and outlasted its slot: %s meanwhile; "
                "taking one set now, %s after the first of them",
                describe_duration(self.last_run_seconds),
                slots,
                describe_duration(late),
            )
        elif first:
            log.warning(
                "%s since the last run (%s) while the daemon was not running; taking one set now",
                slots,
                reference.strftime("%Y-%m-%d %H:%M:%S %Z"),
            )
        else:
            log.warning(
                "%s unnoticed (was the machine asleep, or the clock set?); taking one set now",
                slots,
            )

    def _sleep(self, seconds: float) -> None:
        if seconds > 0 and not self.stopping.is_set():
            self.wake.wait(seconds)
            self.wake.clear()

    def _reload(self) -> None:
        try:
            cfg = config.load(self.options.config_path)
        except config.ConfigError as exc:
            self._say_once(
                "config",
                f"cannot reload the config, going on with the last good one: {'; '.join(exc.problems)}",
                logging.ERROR,
            )
            return
        self._said.pop("config", None)
        if cfg.role != self.cfg.role:
            log.info("role changed from %s to %s", self.cfg.role, cfg.role)
        if cfg.schedule != self.cfg.schedule and not self.options.schedule:
            log.info("schedule changed from %r to %r", self.cfg.schedule, cfg.schedule)
        self.cfg = cfg

    def _say_once(self, key: str, text: str, level: int = logging.INFO) -> None:
        if self._said.get(key) != text:
            self._said[key] = text
            log.log(level, "%s", text)

    # ------------------------------------------------------------ one set

    def _child_argv(self, *command: str) -> List[str]:
        argv = [sys.executable, "-c", _CHILD, "--config", self.options.config_path]
        return argv + (["--verbose"] if self.options.verbose else []) + list(command)

    def _take_set(self, slot: dt.datetime) -> None:
        argv = self._child_argv("snapshot")
        log.info("taking the set for the %s slot", slot.strftime("%H:%M:%S"))
        clock = time.monotonic()
        # Not die-with-parent: a stopping daemon lets the set finish (--stop-grace).
        self.child = process.spawn(argv, die_with_parent=False, start_new_session=True)
        try:
            code = self._wait_child(self.child)
        finally:
            self.child = None
            self.last_run_seconds = time.monotonic() - clock
            self.last_run_end = now()
        self._log_exit(code)

    def _wait_child(self, child: subprocess.Popen) -> int:
        grace_ends: Optional[float] = None
        interrupted = False
        while True:
            try:
                return child.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
            if not self.stopping.is_set():
                continue
            if grace_ends is None:
                grace_ends = time.monotonic() + self.options.stop_grace
                log.info(
                    "stopping: letting the running set finish (up to %s; a second stop signal interrupts it)",
                    describe_duration(self.options.stop_grace),
                )
            if not interrupted and (time.monotonic() >= grace_ends or self.signals > 1):
                log.warning(
                    "interrupting the running set: restic removes its lock and writes no snapshot"
                )
                _signal_group(child, signal.SIGINT)
                interrupted = True
                grace_ends = time.monotonic() + 30
            elif interrupted and time.monotonic() >= grace_ends:
                log.error("the interrupted set did not end within 30s: killing it")
                _signal_group(child, signal.SIGKILL)

    def _log_exit(self, code: int) -> None:
        took = describe_duration(self.last_run_seconds)
        if code == 0:
            log.info("set done in %s", took)
        elif code == EXIT_PARTIAL:
            log.warning("set committed as partial after %s (a part failed; see above)", took)
        elif code == EXIT_LOCK_HELD:
            log.warning("skipped this slot: another shipper run holds the lock")
        elif code in (130, -signal.SIGINT, -signal.SIGKILL):
            log.warning("set interrupted after %s", took)
        else:
            log.error("set failed after %s (exit %d; the error is above)", took, code)

    # ------------------------------------------------------------ slave

    def _watch_staleness(self) -> Optional[str]:
        """Email a stale spare; the newest complete set's id (None when unreadable)."""
        self._write_heartbeat(None)
        view = status.repository_view(self.cfg)
        if view.error:
            self._say_once(
                "repository", f"cannot read the local repository: {view.error}", logging.ERROR
            )
            return None
        self._said.pop("repository", None)
        notify.watch_staleness(
            self.cfg, view.newest_complete_time, max_age(self.cfg), view.created_time
        )
        return view.newest_complete

    def _pull(self, newest: str) -> None:
        """Copy the newest set to the destinations under the slave's `destinations`
        (pull: the offsite keys live here, never on the master) unless each holds it."""
        if all(copies.holds(self.cfg, dest, newest) for dest in destinations.copies(self.cfg)):
            return
        self._run_for_set(PULL, newest)

    def _follow(self, newest: str) -> None:
        """Apply the newest complete set to the standby unless it holds it already."""
        record = state.standby_record(self.cfg.state)
        if record.applied and record.set == newest and not record.error:
            return
        self._run_for_set(APPLY, newest)

    def _run_for_set(self, job: _Job, newest: str) -> None:
        """A child `shipper COMMAND` for the newest set, at idle I/O priority, one at a
        time; a failure is retried after APPLY_RETRY, or at once for a newer set."""
        failed_set, retry_after = self._failed.get(job.name, ("", 0.0))
        if failed_set == newest and time.monotonic() < retry_after:
            return
        log.info("%s: %s set %s", job.name, job.doing, newest)
        clock = time.monotonic()
        argv = process.low_io_priority(self._child_argv(*job.command))
        self.child = process.spawn(argv, die_with_parent=False, start_new_session=True)
        try:
            code = self._wait_child(self.child)
        finally:
            self.child = None
        took = describe_duration(time.monotonic() - clock)
        if code == EXIT_LOCK_HELD:
            log.info("%s: another shipper run holds the lock; trying on the next loop", job.name)
            return
        if code == 0:
            self._failed.pop(job.name, None)
            log.info("%s: set %s %s in %s", job.name, newest, job.done, took)
            return
        self._failed[job.name] = (newest, time.monotonic() + APPLY_RETRY)
        log.error(
            "%s: %s set %s failed after %s (exit %d; the error is above); "
            "retrying in %s or when a newer set lands",
            job.name,
            job.doing,
            newest,
            took,
            code,
            describe_duration(APPLY_RETRY),
        )

    # ------------------------------------------------------------ heartbeat

    def _write_heartbeat(self, next_run: Optional[dt.datetime], running: bool = False) -> None:
        beat = state.Heartbeat(
            pid=os.getpid(),
            started=self.started.isoformat(),
            role=self.cfg.role,
            enabled=self.cfg.enabled,
            schedule=self.expression,
            next_run=next_run.isoformat() if next_run else None,
            running=running,
        )
        if beat == self._heartbeat:
            return
        self._heartbeat = beat
        try:
            state.write_heartbeat(self.cfg.state, beat)
        except OSError as exc:
            where = self.cfg.state / state.HEARTBEAT
            self._say_once("heartbeat", f"cannot write {where}: {exc.strerror}", logging.WARNING)

    def _clear_heartbeat(self) -> None:
        state.clear_heartbeat(self.cfg.state)


def _clock(when: dt.datetime) -> str:
    return when.strftime("%H:%M:%S")


def _signal_group(child: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(child.pid, signum)
    except ProcessLookupError:
        pass


def run(options: Options) -> int:
    """Run the daemon until SIGTERM or SIGINT; one daemon per state folder."""
    cfg = config.load(options.config_path)
    cfg.state.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(cfg.state / "daemon.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            beat = state.read_heartbeat(cfg.state) or {}
            raise ShipperError(
                f"another shipper daemon runs for {cfg.state} (pid {beat.get('pid', '?')}); "
                f"stop it first (`systemctl stop shipper.service`)"
            ) from None
        daemon = Daemon(options, cfg)
        daemon.install_signals()
        return daemon.run()
    finally:
        os.close(fd)
