"""`shipper check`: verify the repository, and say so when it is damaged.

Runs `restic check`, reading back a share of the data packs
(check.read_data_subset) so that, run weekly by shipper-check.timer, bit rot
on the slave's disk is found before a promote needs the damaged set. On the
slave it reads the local path, never the network.
"""

from __future__ import annotations

import time
from typing import Optional

from shipper import notify
from shipper.config import Config
from shipper.restic import CheckReport, Restic


def verify(cfg: Config, restic: Restic, read_data_subset: Optional[str]) -> CheckReport:
    """Check the repository; email the problems and record the outcome in the metrics."""
    report = restic.check_report(read_data_subset)
    if not report.ok:
        notify.send_email(
            cfg, "the repository check found problems", _email_body(cfg, restic, report)
        )
    notify.record_check(cfg, report.ok, time.time())
    return report


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
