"""Promote's steps: each recorded in the journal the moment it finishes (see the package doc)."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

from shipper import databases
from shipper.core import config_edit, hooks
from shipper.core.config import Config
from shipper.core.errors import ShipperError
from shipper.core.manifest import Dump
from shipper.core.restic import ResticError
from shipper.core.state import LAST_PROMOTE, write_synced
from shipper.slave import receiver
from shipper.slave.promote import estimate, held, services
from shipper.slave.promote.journal import Journal
from shipper.slave.promote.model import (
    DONE,
    FAILED,
    FILES,
    HELD,
    RECEIVER,
    ROLE,
    SERVICES,
    Plan,
    PromoteFailed,
    Report,
    Say,
    StepResult,
    now,
)
from shipper.slave.promote.preflight import Preflight
from shipper.slave.promote.scope import (
    capture_metadata,
    remove_entry,
    remove_in_the_way,
    restic_pattern,
    restore_metadata,
    route_removals,
    under_root,
    unlink_files,
)
from shipper.slave.promote.standby import STANDBY
from shipper.slave.restore import load_part


class Promotion(Preflight):
    """One promote: preflight() and plan() change nothing; run() does the steps."""

    # ------------------------------------------------------------ plan

    def plan(self, say: Say = lambda check: None) -> Plan:
        """Preflight's plan, with what a warm standby held back and the expected duration."""
        plan = super().plan(say)
        chosen = self.chosen
        assert chosen is not None
        files_part = chosen.parts.get(FILES)
        extra: List[str] = []
        if plan.route == STANDBY and files_part is not None:
            plan.held = held.held_paths(self.cfg.standby.hold, plan.scope)
            plan.held_snapshot = files_part.snapshot if plan.held else None
        if self.cfg.standby.enabled and self.cfg.promote.services:
            plan.services = list(self.cfg.promote.services)
            extra.append(SERVICES)
        if plan.held:
            extra.append(HELD)
        plan.steps[-1:-1] = extra  # after the hooks, before the role
        done = set(plan.done) | set(self._done(plan))
        plan.done = [step for step in plan.steps if step in done]
        plan.expected = estimate.expected(self.cfg, plan, time.monotonic() - self.clock)
        return plan

    def _done(self, plan: Plan) -> List[str]:
        """Extra steps an interrupted run of this set finished (preflight knows only its own)."""
        journal = Journal(self.folder, plan.set_id)
        if journal.data.get("finished") or journal.data.get("root") != self.root:
            return []
        return [n for n in (SERVICES, HELD) if journal.done(n)]

    # ------------------------------------------------------------ run

    def run(self, on_step: Callable[[str, str], None] = lambda name, status: None) -> Report:
        """Do every step not done yet; the report is written even when a step fails."""
        plan = self._plan or self.plan()
        self.journal = Journal(self.folder, plan.set_id)
        self.journal.start(plan.set_id, self.root)
        first = round(time.monotonic() - self.clock, 3)
        results = [StepResult("preflight and plan", DONE, first)]
        split = {"preflight and plan": first, FILES: 0.0, "databases": 0.0, "hooks": 0.0}
        error = ""
        try:
            self._check(results, self._step(RECEIVER, lambda: stop_receiver(self.cfg), on_step))
            self._restore_data(plan, on_step, results, split)
            clock = time.monotonic()
            for name in plan.hooks:
                step = self._step(
                    f"hook:{name}", lambda name=name: self.run_hook(plan, name), on_step
                )
                self._check(results, step)
            split["hooks"] = round(time.monotonic() - clock, 3)
            for name, action in self._standby_steps(plan):
                self._check(results, self._step(name, action, on_step))
            self._check(
                results, self._step(ROLE, lambda: become_master(self.cfg, plan.set_id), on_step)
            )
        except PromoteFailed as exc:
            error = str(exc)
        if not error:
            self.journal.remember("finished", now())
            self._close_other_journals(plan.set_id)
        report = Report(
            plan.set_id,
            self.root,
            "failed" if error else "promoted",
            self.started,
            round(time.monotonic() - self.clock, 3),
            results,
            path=str(self.folder / f"{plan.set_id}-report.json"),
            error=error,
            split=split,
        )
        self.write_report(report)
        self.measure(f"promote of set {plan.set_id}", plan, results, split)
        return report

    def _standby_steps(self, plan: Plan) -> List[Any]:
        """What a warm standby kept switched off, switched on: the services, the held paths."""
        steps = {
            SERVICES: lambda: services.release(plan.services, self.root),
            HELD: lambda: held.put_in_place(self.restic, plan, self.root),
        }
        return [(name, steps[name]) for name in plan.steps if name in steps]

    def measure(
        self, what: str, plan: Plan, results: List[StepResult], split: Dict[str, float]
    ) -> None:
        """Record the speeds of this run's files and loads (promote --dry-run's estimate)."""
        written = sum(
            int((step.detail or {}).get("bytes_restored", 0))
            for step in results
            if step.name == FILES and step.status == DONE and not step.earlier
        )
        ran = {step.name for step in results if step.status == DONE and not step.earlier}
        loaded = sum(load.bytes for load in plan.databases if load.step in ran)
        try:
            estimate.record(
                self.cfg.state,
                what,
                (written, split.get(FILES, 0.0)),
                (loaded, split.get("databases", 0.0)),
            )
        except OSError:
            pass  # a speed not kept costs an estimate, never the run

    def _close_other_journals(self, set_id: str) -> None:
        """Promotes of other sets left unfinished are over: they must not be resumed later."""
        for data in Journal.unfinished(self.folder):
            if data["set"] != set_id:
                other = Journal(self.folder, data["set"])
                other.remember("finished", f"abandoned: set {set_id} was promoted at {now()}")

    @staticmethod
    def _check(results: List[StepResult], *steps: StepResult) -> None:
        """Add the steps to the report; stop at a failed one."""
        results.extend(steps)
        failed = [step for step in steps if step.status == FAILED]
        if failed:
            raise PromoteFailed(
                "; ".join(f"step {step.name} failed: {step.detail}" for step in failed)
            )

    def _restore_data(
        self, plan: Plan, on_step, results: List[StepResult], split: Dict[str, float]
    ) -> None:
        """Files and databases side by side: neither needs the other, and the time to recover is what counts."""

        def timed(phase: str, work: Callable[[], List[StepResult]]) -> List[StepResult]:
            clock = time.monotonic()
            try:
                return work()
            finally:
                split[phase] = round(time.monotonic() - clock, 3)

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            files = None
            if plan.files_snapshot:
                action = lambda: self.restore_files(plan)  # noqa: E731
                files = pool.submit(timed, FILES, lambda: [self._step(FILES, action, on_step)])
            loaded = (
                timed("databases", lambda: self.load_databases(plan, on_step))
                if plan.databases
                else []
            )
            restored = files.result() if files is not None else []
        self._check(results, *restored, *loaded)

    def _step(self, name: str, action: Callable[[], Any], on_step) -> StepResult:
        """Run one step unless an earlier run did it; a failure is returned, not raised."""
        journal = self.journal
        assert journal is not None
        if journal.done(name):
            on_step(name, "done earlier")
            earlier = journal.data["steps"][name]
            return StepResult(
                name, DONE, earlier.get("seconds", 0.0), earlier.get("detail"), earlier=True
            )
        on_step(name, "running")
        journal.remember("current", name)
        fault_point(name, "start")
        clock = time.monotonic()
        try:
            detail = action()
            fault_point(name, "end")
        except (ShipperError, ResticError, OSError, databases.DatabaseError) as exc:
            seconds = round(time.monotonic() - clock, 3)
            journal.record(name, FAILED, seconds, str(exc))
            on_step(name, f"failed: {exc}")
            return StepResult(name, FAILED, seconds, str(exc))
        seconds = round(time.monotonic() - clock, 3)
        journal.record(name, DONE, seconds, detail)
        on_step(name, "done")
        return StepResult(name, DONE, seconds, detail)

    # ------------------------------------------------------------ files

    def restore_files(self, plan: Plan) -> Dict[str, Any]:
        """restic restore in place, then the route folders' stale entries.

        Folders end with the set's metadata, the folders above `paths`
        included (restic sets those); the route folders' metadata is read back
        after restic and put again after shipper's removals changed their mtime.
        """
        assert plan.files_snapshot
        replaced = remove_in_the_way(self.root, plan.scope, plan.in_the_way)
        unlink_files(self.root, plan.scope, plan.rewrite)
        summary: Dict[str, Any] = {}
        if plan.includes:
            try:
                summary = self.restic.restore(
                    plan.files_snapshot,
                    self.root,
                    [restic_pattern(p) for p in plan.includes],
                    delete=True,
                    overwrite=plan.overwrite,
                )
            except ResticError as exc:
                raise PromoteFailed(_with_item_errors(exc)) from None
        route = capture_metadata([under_root(self.root, f) for f in plan.scope.route])
        removed = route_removals(self.root, plan.scope, plan.children)
        for item in removed:
            remove_entry(under_root(self.root, item))
        restore_metadata(route)
        return {
            "files_restored": summary.get("files_restored", 0),
            "files_skipped": summary.get("files_skipped", 0),
            "files_deleted": int(summary.get("files_deleted", 0)) + len(removed) + replaced,
            "bytes_restored": summary.get("bytes_restored", 0),
        }

    # ------------------------------------------------------------ databases

    def load_databases(self, plan: Plan, on_step: Callable[[str, str], None]) -> List[StepResult]:
        """Globals first (the databases' owners and grants), then the databases side by side."""
        engines = self.engines()

        def load(item: Dump, step: str = "") -> StepResult:
            return self._step(
                step or item.step,
                lambda: load_part(self.restic, engines[item.engine], item),
                on_step,
            )

        with contextlib.ExitStack() as stack:
            for name in sorted({item.engine for item in plan.databases}):
                stack.enter_context(engines[name].credentials())
            users = [item for item in plan.databases if item.is_globals]
            results = [load(item) for item in users]
            rest = [item for item in plan.databases if not item.is_globals]
            with concurrent.futures.ThreadPoolExecutor(max(1, self.cfg.databases.parallel)) as pool:
                results += list(pool.map(load, rest))
            # Grants on tables and routines were skipped while those did not
            # exist yet; the globals load again (it is idempotent) to add them.
            results += [load(item, f"grants:{item.engine}") for item in users if rest]
        return results

    # ------------------------------------------------------------ hooks

    def run_hook(self, plan: Plan, name: str) -> str:
        found = {hook.name: hook for hook in hooks.find(self.cfg.hooks.dirs, hooks.POST_RESTORE)}
        if name not in found:
            raise PromoteFailed(
                f"post-restore hook {name} is gone from {', '.join(self.cfg.hooks.dirs)}"
            )
        env = {
            "SHIPPER_SET_ID": plan.set_id,
            "SHIPPER_ROLE": "master",
            "SHIPPER_ROOT": self.root,
            "SHIPPER_SERVICES": " ".join(self.cfg.promote.services),
        }
        hooks.run_one(found[name], hooks.POST_RESTORE, env, self.cfg.hooks.timeout)
        return str(found[name])

    # ------------------------------------------------------------ report

    def write_report(self, report: Report) -> None:
        text = json.dumps(report.to_json(), indent=1, default=str)
        write_synced(Path(report.path), text)
        write_synced(self.cfg.state / LAST_PROMOTE, text)


# ---------------------------------------------------------------- becoming master


def stop_receiver(cfg: Config) -> str:
    """Stop the receiver and keep it stopped, so a returning old master cannot push."""
    return receiver.stop_for_good(cfg)


def become_master(cfg: Config, set_id: str) -> str:
    """role: master and enabled: false in the config file, its comments and other keys kept."""
    config_edit.update_config(cfg.source, {("role",): "master", ("enabled",): False}, "")
    return (
        f"{cfg.source}: role master (set {set_id}), schedule disabled until a new slave is set up"
    )


# ---------------------------------------------------------------- small helpers


def fault_point(step: str, when: str) -> None:
    """Die here, as a crash would, when SHIPPER_FAULT_KILL=<step>:<when> (start or end).

    For tests that prove a killed promote resumes: `end` is the narrowest
    window, a step's work done but not yet recorded.
    """
    if os.environ.get("SHIPPER_FAULT_KILL") == f"{step}:{when}":
        os.kill(os.getpid(), signal.SIGKILL)


def _with_item_errors(exc: ResticError) -> str:
    """restic's own summary line ("There were 2 errors") says little: name the items."""
    items = [
        line for line in exc.detail.splitlines() if line and not line.lower().startswith("fatal")
    ]
    return f"{exc}" + (f"; {'; '.join(items[:5])}" if items else "")
