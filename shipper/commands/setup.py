"""`shipper setup slave|master`: one command per server, the same password file on both."""

from __future__ import annotations

import argparse
from typing import Any, List

from shipper.commands.context import EXIT_PARTIAL, Context
from shipper.core import sets
from shipper.core.progress import Progress
from shipper.setup import provision

DESCRIPTION = (
    "Run `shipper setup slave` on the slave first: it prints the certificate "
    "fingerprint that `shipper setup master` needs. Running either again changes only "
    "what differs."
)


def register(p: Any, name: str) -> None:
    p.description = DESCRIPTION
    roles = p.add_subparsers(dest="role", metavar="ROLE", required=True)
    common = _common_options()
    slave = roles.add_parser(
        "slave",
        parents=[common],
        help="receiver, TLS certificate, htpasswd, secrets",
        description="Create the repository folder, the TLS key and self-signed certificate "
        "(prints its SHA-256 fingerprint), the htpasswd entry for the master and the root-only "
        "secrets, then start and enable the receiver.",
    )
    slave.add_argument("--listen", metavar="ADDR:PORT", help="receiver address (default :8000)")
    slave.add_argument(
        "--repo-dir", metavar="DIR", help="repositories folder (default /var/lib/shipper/repo)"
    )
    slave.add_argument(
        "--name",
        action="append",
        default=[],
        metavar="HOST",
        help="a host name or IP the master uses for this server (repeatable); "
        "this machine's names and addresses are always in the certificate",
    )
    slave.add_argument(
        "--new-certificate",
        action="store_true",
        help="make a new key and certificate even if the present one serves (new fingerprint)",
    )
    slave.set_defaults(run=run_slave)
    master = roles.add_parser(
        "master",
        parents=[common],
        help="config, pinned certificate, repository, first set, schedule",
        description="Check the slave (reachable, fingerprint, credential), then write the config "
        "and secrets, pin the slave's certificate, create the repository if needed, take a "
        "first set and enable the schedule. Nothing is written if a check fails.",
    )
    master.add_argument(
        "--slave", required=True, metavar="HOST[:PORT]", help="the slave's receiver"
    )
    master.add_argument(
        "--fingerprint",
        required=True,
        metavar="SHA256",
        help="the certificate fingerprint `shipper setup slave` printed",
    )
    master.add_argument("--no-first-set", action="store_true", help="do not take a first set now")
    master.set_defaults(run=run_master)


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--password-file",
        required=True,
        metavar="F",
        help="the shared password (first line), the same file on both servers",
    )
    common.add_argument(
        "--etc-dir",
        metavar="DIR",
        help="where the config, secrets and certificates go (default /etc/shipper)",
    )
    common.add_argument("--state-dir", metavar="DIR", help="set state_dir in the config")
    common.add_argument(
        "--user", default="master", help="the master's user on the receiver (default master)"
    )
    common.add_argument(
        "--service-manager",
        choices=["auto", "systemd", "none"],
        default="auto",
        help="start services through systemd, or (none) as processes; auto: systemd if it runs",
    )
    common.add_argument("--json", action="store_true", help="print the outcome as JSON")
    return common


def _print_outcome(ctx: Context, outcome: Any, lead: List[str]) -> None:
    lines = [f"  {line}" for line in outcome.changes or ["nothing changed"]]
    lines += [f"  note: {line}" for line in outcome.notes]
    ctx.out.result(outcome.to_json(), [*lines, *lead])


def _setup_options(a: argparse.Namespace) -> dict:
    """The options both `setup slave` and `setup master` take."""
    return dict(
        config_path=provision.config_path_for(a.config, a.etc_dir),
        password_file=a.password_file,
        etc_dir=a.etc_dir,
        state_dir=a.state_dir,
        user=a.user,
        service_manager=a.service_manager,
    )


def run_slave(ctx: Context) -> int:
    a = ctx.args
    opts = provision.SlaveOptions(
        **_setup_options(a),
        listen=a.listen,
        repo_dir=a.repo_dir,
        names=a.name,
        new_certificate=a.new_certificate,
    )
    outcome = provision.setup_slave(opts)
    v = outcome.values
    host = next(iter(a.name), None) or _address_for_master(v["names"])
    _print_outcome(
        ctx,
        outcome,
        [
            f"receiver certificate SHA-256 fingerprint: {v['fingerprint']}",
            f"names in the certificate: {', '.join(v['names'])}",
            "now on the master, with the same password file:",
            f"  shipper setup master --slave {host}:{v['port']} --password-file FILE "
            f"--fingerprint {v['fingerprint']}",
        ],
    )
    return 0


def _address_for_master(names: List[str]) -> str:
    """An IPv4 address of this machine if it has one (no DNS needed), else its host name."""
    remote = [n for n in names if n not in ("localhost", "127.0.0.1", "::1")]
    ipv4 = [n for n in remote if n.replace(".", "").isdigit()]
    return (ipv4 or remote or ["SLAVE"])[0]


def run_master(ctx: Context) -> int:
    a = ctx.args
    opts = provision.MasterOptions(
        **_setup_options(a),
        slave=a.slave,
        fingerprint=a.fingerprint,
        first_set=not a.no_first_set,
    )
    progress = Progress()
    outcome = provision.setup_master(opts, announce=progress.start)
    progress.finish()
    _print_outcome(ctx, outcome, [])
    taken = outcome.values.get("set") or {}
    return EXIT_PARTIAL if taken.get("status") == sets.PARTIAL and taken.get("taken") else 0
