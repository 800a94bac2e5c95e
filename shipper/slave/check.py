"""`shipper check`: verify the repository, and say so when it is damaged.

Runs `restic check`, reading back a share of the data packs
(check.read_data_subset) so that, run weekly by shipper-check.timer, bit rot
on the slave's disk is found before a promote needs the damaged set. On the
slave it reads the local path, never the network. `--destination NAME`
checks that destination the same way; its damage is reported and emailed but
neither recorded as the repository's (promote reads that record) nor counted
in the metrics.
"""

from __future__ import annotations

import time
from typing import Optional

from shipper import notify
from shipper.core import sets
from shipper.core.config import Config
from shipper.core.restic import CheckReport, Restic
from shipper.slave import damage


def verify(
    cfg: Config, restic: Restic, read_data_subset: Optional[str], destination: str = "primary"
) -> CheckReport:
    """Check the repository (or a destination); email the problems; the repository's
    outcome goes into the metrics."""
    primary = destination == "primary"
    report = restic.check_report(read_data_subset)
    judge_sets(cfg, restic, report, keep_record=primary)
    if not report.ok:
        subject = (
            "the repository check found problems"
            if primary
            else f"the check of destination {destination} found problems"
        )
        notify.send_email(cfg, subject, _email_body(cfg, restic, report))
    if primary:
        notify.record_check(cfg, report.ok, time.time())
    return report


def judge_sets(cfg: Config, restic: Restic, report: CheckReport, keep_record: bool = True) -> None:
    """Add to the report the sets that damage reaches, and what promote can still use."""
    broken = list(report.summary.get("broken_packs") or [])
    record = damage.record(cfg, restic, broken, keep=keep_record)
    found = sets.group(restic.snapshots())
    newest = sets.newest(found)
    if newest is None:
        return
    problem = damage.problem(restic, newest, record)
    if record.sets or problem:
        report.ok = False
        named = ", ".join(record.sets[:10]) + (" ..." if len(record.sets) > 10 else "")
        if record.sets:
            report.problems.append(f"sets with data in damaged packs: {named}")
        if problem:
            report.problems.append(f"the newest complete set {newest.id} cannot be read: {problem}")
        report.problems.append(
            damage.offer(restic, found, record, skip=newest.id if problem else "")
        )


def _email_body(cfg: Config, restic: Restic, report: CheckReport) -> str:
    lines = [
        f"`shipper check` on {cfg.hostname} found problems in the repository "
        f"{restic.repository.display}:",
        "",
        *report.problems[:50],
        "",
        "What to do: read restic's troubleshooting guide "
        "(https://restic.readthedocs.io/en/stable/077_troubleshooting.html)",
        "before repairing anything; the sets listed by `shipper sets` that are not damaged",
        "stay restorable. Check the disk under the repository as well.",
    ]
    return "\n".join(lines)
