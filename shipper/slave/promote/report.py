"""Promote's text for the terminal: the checks, the plan and the report."""

from __future__ import annotations

import datetime as dt
from typing import List

from shipper.core.progress import human_bytes as _human
from shipper.slave.promote import estimate
from shipper.slave.promote.model import FILES, HELD, RECEIVER, SERVICES, Check, Plan, Report


def age(when: dt.datetime) -> str:
    seconds = max(0, int((dt.datetime.now(dt.timezone.utc) - when).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def check_line(check: Check) -> str:
    return f"  {'OK  ' if check.ok else 'FAIL'} {check.name}: {check.message}"


def plan_lines(plan: Plan) -> List[str]:
    when = dt.datetime.fromisoformat(plan.time)
    lines = [
        f"plan: promote set {plan.set_id} ({plan.status}), taken {when:%Y-%m-%d %H:%M:%S} UTC "
        f"({age(when)} ago) on {plan.host}",
    ]
    if plan.resumed:
        lines.append(
            f"  resuming an interrupted promote; already done: {', '.join(plan.done) or '-'}"
        )
    if plan.route_note:
        lines.append(f"  path: {plan.route_note}")
    lines.append(
        f"{_mark(plan, RECEIVER)}stop the receiver for good (no more pushes from the old master)"
    )
    lines += _files_lines(plan)
    for load in plan.databases:
        what = (
            f"{load.engine} users and grants"
            if load.is_globals
            else f"replace database {load.database}"
        )
        lines.append(f"{_mark(plan, load.step)}{what} ({load.engine}, {_human(load.bytes)} dump)")
    for name, error in plan.skipped_parts.items():
        lines.append(f"  - skip the failed part {name}: {error}")
    for name in plan.hooks:
        lines.append(f"{_mark(plan, 'hook:' + name)}run post-restore hook {name}")
    if SERVICES in plan.steps:
        lines.append(
            f"{_mark(plan, SERVICES)}enable and start the services the standby kept stopped: "
            + ", ".join(plan.services)
        )
    if HELD in plan.steps:
        lines.append(
            f"{_mark(plan, HELD)}put in place what the standby held aside (cron jobs): "
            + ", ".join(plan.held)
        )
    lines.append(
        "  then: this server becomes the master (role: master); the schedule stays "
        "disabled until a new slave is configured"
    )
    if plan.expected:
        lines.append(estimate.line(plan.expected))
    return lines


def _mark(plan: Plan, step: str) -> str:
    return "  - (done) " if step in plan.done else "  - "


def _files_lines(plan: Plan) -> List[str]:
    if not plan.files_snapshot and plan.route == "standby":
        return ["  - files: already in place (the standby applied and verified this set)"]
    if not plan.files_snapshot:
        return ["  - files: the set has no files part: nothing to restore"]
    where = "" if plan.root == "/" else f" under {plan.root}"
    lines = [
        f"  - {'(done) ' if FILES in plan.done else ''}restore files in place{where}: "
        + ", ".join(plan.scope.paths)
    ]
    if plan.scope.protected:
        lines.append(f"     kept as they are (machine-specific): {', '.join(plan.scope.protected)}")
    if plan.scope.whole:
        lines.append(f"     not restored (machine-specific): {', '.join(plan.scope.whole)}")
    changes = plan.changes
    if changes is not None:
        lines.append(
            f"     {changes.new} new, {changes.changed} changed, {changes.removed} removed, "
            f"{changes.unchanged} unchanged (by size and time); {_human(changes.bytes_to_write)} to write"
        )
        for item in changes.removed_sample:
            lines.append(f"       remove {item}")
        if changes.removed > len(changes.removed_sample):
            lines.append(f"       ... and {changes.removed - len(changes.removed_sample)} more")
        for warning in changes.warnings[:10]:
            lines.append(f"     restic warns: {warning}")
    return lines


def report_lines(report: Report) -> List[str]:
    lines = [f"promote of set {report.set_id}: {report.outcome.upper()} in {report.seconds:.1f}s"]
    for step in report.steps:
        when = "earlier run" if step.earlier else f"{step.seconds:.1f}s"
        lines.append(f"  {step.status:<7} {step.name:<32} {when}")
    split = report.split
    lines.append(
        f"  files {split['files']:.1f}s, databases {split['databases']:.1f}s, hooks {split['hooks']:.1f}s"
    )
    if report.error:
        lines.append(f"  error: {report.error}")
        lines.append(
            "  fix the cause and run `shipper promote` again: it resumes at the failed step"
        )
    lines.append(f"  report: {report.path}")
    return lines
