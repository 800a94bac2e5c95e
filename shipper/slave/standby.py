"""Warm standby: keep the newest complete set applied in place and verified.

An apply is promote's preflight, plan, files and database loads (the same
scope and fidelity rules, the same code), without the receiver, the hooks or
the role change. Databases are loaded under their own names, each by the
engine's load() (a scratch database swapped in), while the slave's
applications stay stopped: promote then has nothing to switch. A dump whose
content (Dump.content_key) is the one in place is not reloaded, and each load
is checked table by table against the master's row counts (standby_verify.py);
files go through restic's `--overwrite if-changed --delete`, so an apply costs
about the set's change.

The record (core/state.py, standby.json) says "applied" only once the set is
in place and verified: an apply that fails or is killed leaves "applying" or
"failed", promote then takes the full path, and the next apply repairs it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import random
import re
import shutil
import threading
import time
from typing import Any, Callable, Dict, List

from shipper import databases, notify
from shipper.core import hooks, state
from shipper.core.config import Config
from shipper.core.errors import Refused, ShipperError
from shipper.core.restic import Restic, ResticError
from shipper.slave.promote import services
from shipper.slave.promote.journal import Journal
from shipper.slave.promote.model import FAILED, Options, Plan, PromoteFailed, StepResult
from shipper.slave.promote.scope import is_under, under_root
from shipper.slave.promote.standby import in_place
from shipper.slave.promote.steps import Promotion
from shipper.slave.standby_verify import check_rows, read_back

JOURNAL_DIR = "standby"
SAMPLE = 20  # files read back per apply and compared with restic's metadata

Say = Callable[[str], None]


class ApplyFailed(ShipperError):
    """The apply failed; the record says so and what the standby still holds."""


class Apply(Promotion):
    """One apply of the newest complete set; run() is promote's and is not used here."""

    def __init__(self, cfg: Config, restic: Restic, engines: Any = None):
        super().__init__(cfg, restic, Options(root=cfg.standby.root), engines)
        self.folder = cfg.state / JOURNAL_DIR  # its own: promote never resumes an apply
        self.record = state.standby_record(cfg.state)
        self.lock = threading.Lock()
        self.wrong_rows: List[str] = []  # one line per database whose rows differ
        self.tables = 0

    def protected_paths(self) -> List[str]:
        """standby.hold's paths stay as the slave has them, like machine-specific ones:
        what acts on the data by itself never runs here (promote puts the set's in place)."""
        return sorted({*super().protected_paths(), *self.cfg.standby.hold})

    def apply(self, say: Say = lambda line: None) -> state.StandbyRecord:
        shutil.rmtree(self.folder, ignore_errors=True)  # each apply starts afresh
        self.preflight()
        self._stop_unless_ready()
        chosen = self.chosen
        assert chosen is not None
        if self.record.applied and self.record.set == chosen.id and self.record.root == self.root:
            say(f"set {chosen.id} is already applied (verified at {self.record.verified_at})")
            if self.record.error:  # an earlier failure that changed nothing is over
                self.record.error = ""
                state.save_standby(self.cfg.state, self.record)
            return self.record
        plan = self.plan()
        self._stop_unless_ready()  # the plan checks the disks
        # Against all of the set's dumps: the plan's delta path left out those in place already.
        kept = in_place(self.record, self.manifest.dumps(chosen))
        plan = dataclasses.replace(
            plan,
            databases=[load for load in plan.databases if load.part not in kept],
            overwrite="if-changed",
        )
        say(
            f"applying set {chosen.id}: files {'yes' if plan.files_snapshot else 'none'}, "
            f"{len(plan.databases)} dumps to load, {len(kept)} unchanged"
        )
        self._begin(plan, kept)
        clock = time.monotonic()
        try:
            self._restore(plan, say)
            checked = self.verify_files(plan)
            say(
                f"verified: {self.tables} tables' rows as counted in the dumps, {checked} files "
                f"read back ({self.record.files_read} of them byte for byte)"
            )
        except (ShipperError, ResticError, OSError, databases.DatabaseError) as exc:
            raise self._failed(str(exc), changed=True) from None
        return self._applied(plan, checked, time.monotonic() - clock)

    def _stop_unless_ready(self) -> None:
        if not self.ready:
            failed = [f"{c.name}: {c.message}" for c in self.checks if not c.ok]
            raise self._failed("; ".join(failed) or "no set chosen", changed=False)

    # ------------------------------------------------------------ the record

    def _begin(self, plan: Plan, kept: List[str]) -> None:
        """Before anything changes: what is in flux leaves the record."""
        record = self.record
        record.set, record.state, record.root, record.error = (
            plan.set_id,
            state.APPLYING,
            plan.root,
            "",
        )
        record.started = _now()
        if plan.files_snapshot:
            record.files = None
        record.dumps = {part: sha for part, sha in record.dumps.items() if part in kept}
        state.save_standby(self.cfg.state, record)

    def _loaded(self, name: str, status: str) -> None:
        """Each dump that loaded (its digest checked on the way) and whose rows are the
        dump's joins the record at once (in the load's thread: others go on loading)."""
        load = next((d for d in self._loads if d.step == name), None)
        if status != "done" or load is None or not load.content_key:
            return
        counted, wrong = check_rows(self.engines()[load.engine], load)
        with self.lock:
            if wrong:
                self.wrong_rows.append(wrong)
                return
            self.tables += counted
            self.record.dumps[load.part] = load.content_key
            state.save_standby(self.cfg.state, self.record)

    def _applied(self, plan: Plan, checked: int, seconds: float) -> state.StandbyRecord:
        record = self.record
        record.state, record.verified_at = state.APPLIED, _now()
        record.files = plan.files_snapshot or record.files
        record.seconds, record.files_checked, record.last_good = (
            round(seconds, 3),
            checked,
            plan.set_id,
        )
        record.tables_checked = self.tables
        state.save_standby(self.cfg.state, record)
        return record

    def _failed(self, error: str, changed: bool) -> ApplyFailed:
        """Record the failure; an apply that changed nothing leaves what is in place promotable."""
        target = self.chosen.id if self.chosen else "?"
        self.record.error = f"apply of set {target} failed: {error}"
        if changed:
            self.record.state = state.FAILED
        state.save_standby(self.cfg.state, self.record)
        return ApplyFailed(
            f"{self.record.error}; fix it and run `shipper standby apply` again "
            "(promote meanwhile takes the full path)"
            if changed
            else f"{self.record.error}; nothing was changed: fix it and run `shipper standby apply`"
        )

    # ------------------------------------------------------------ the work

    def _restore(self, plan: Plan, say: Say) -> None:
        self._loads = plan.databases
        self.journal = self._fresh_journal(plan.set_id)
        results: List[StepResult] = []
        split: Dict[str, float] = {}

        def on_step(name: str, status: str) -> None:
            self._loaded(name, status)
            if status != "running":
                say(f"  {name}: {status}")

        self._restore_data(plan, on_step, results, split)
        if any(step.status == FAILED for step in results):
            raise PromoteFailed("; ".join(str(s.detail) for s in results if s.status == FAILED))
        self.measure(f"apply of set {plan.set_id}", plan, results, split)
        if self.wrong_rows:
            raise Refused(f"the rows loaded differ from the dumps': {'; '.join(self.wrong_rows)}")

    def _fresh_journal(self, set_id: str) -> Journal:
        journal = Journal(self.folder, set_id)
        journal.start(set_id, self.root)
        return journal

    def verify_files(self, plan: Plan) -> int:
        """A sample of the set's files read back: type, size, mode and mtime as restic has
        them, and a few small ones byte for byte (standby_verify.read_back)."""
        self.record.files_read = 0
        if not plan.files_snapshot or not plan.includes:
            return 0
        nodes = [
            node
            for node in self.restic.ls(plan.files_snapshot)
            if node.get("type") == "file"
            and any(is_under(str(node.get("path")), top) for top in plan.includes)
            and not plan.scope.keeps(str(node.get("path")))
        ]
        sample = random.Random(plan.set_id).sample(nodes, min(SAMPLE, len(nodes)))
        wrong = [why for why in (self._differs(node) for node in sample) if why]
        if wrong:
            raise Refused(
                f"{len(wrong)} of {len(sample)} files read back differ: {'; '.join(wrong[:3])}"
            )
        self.record.files_read, _ = read_back(
            self.restic, plan.files_snapshot, self.root, sample, self.folder
        )
        return len(sample)

    def _differs(self, node: Dict[str, Any]) -> str:
        where = under_root(self.root, str(node["path"]))
        try:
            info = os.lstat(where)
        except OSError as exc:
            return f"{where}: {exc.strerror}"
        if info.st_size != int(node.get("size") or 0):
            return f"{where}: {info.st_size} bytes, the set has {node.get('size')}"
        if info.st_mtime_ns != mtime_ns(str(node.get("mtime"))):
            return f"{where}: modified at another time than in the set"
        wanted = int(node.get("mode") or 0) & 0o777
        if info.st_mode & 0o777 != wanted:
            return f"{where}: mode {info.st_mode & 0o777:o}, the set has {wanted:o}"
        return ""


def mtime_ns(text: str) -> int:
    """restic's RFC 3339 time with nanoseconds, as st_mtime_ns."""
    found = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", text)
    if not found:
        return -1
    base, fraction, zone = found.groups()
    when = dt.datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone))
    return int(when.timestamp()) * 10**9 + int((fraction or "0").ljust(9, "0")[:9])


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def apply_newest(cfg: Config, restic: Restic, say: Say = lambda line: None) -> state.StandbyRecord:
    """One apply now (the caller holds the host lock), told like a snapshot run is."""
    if not cfg.standby.enabled:
        raise Refused(
            f"standby is off in {cfg.source}: set standby.enabled: true to keep this slave "
            "warm (it changes the live paths and databases at every set)"
        )
    before = state.standby_record(cfg.state)
    try:
        hold_services(cfg, say)
        record = Apply(cfg, restic).apply(say)
    except ShipperError as exc:
        notify.standby_failed(cfg, str(exc))
        raise
    if (record.set, record.verified_at) != (before.set, before.verified_at):
        record = post_apply(cfg, record, say)
    notify.standby_applied(cfg, record)
    return record


# ---------------------------------------------------------------- what acts on the data


def hold_services(cfg: Config, say: Say) -> None:
    """Before anything changes: promote.services stopped and disabled (see promote/services.py)."""
    if not cfg.promote.services:
        return
    try:
        say(f"services: {services.hold(cfg.promote.services, cfg.standby.root)}")
    except services.ServiceFailed as exc:
        record = state.standby_record(cfg.state)
        record.error = f"apply not started: {exc}"
        state.save_standby(cfg.state, record)
        raise ApplyFailed(
            f"{record.error}; nothing was changed: fix it and run `shipper standby apply`"
        ) from None


def post_apply(cfg: Config, record: state.StandbyRecord, say: Say) -> state.StandbyRecord:
    """The post-apply hooks (settings for a running standby); a failure is a warning:
    the set is in place and verified, promote can use it."""
    env = {
        "SHIPPER_SET_ID": record.set or "",
        "SHIPPER_ROLE": "slave",
        "SHIPPER_ROOT": record.root,
        "SHIPPER_SERVICES": " ".join(cfg.promote.services),
    }
    try:
        ran = hooks.run_phase(hooks.POST_APPLY, cfg.hooks.dirs, env, cfg.hooks.timeout)
        record.warning = ""
        if ran:
            say(f"post-apply hooks: {', '.join(ran)}")
    except hooks.HookFailed as exc:
        record.warning = str(exc)
        say(f"WARNING: {exc} (set {record.set} is applied and verified all the same)")
    state.save_standby(cfg.state, record)
    return record


def record_json(record: state.StandbyRecord) -> Dict[str, Any]:
    return dataclasses.asdict(record)
