"""`shipper setup slave|master`: one command per server, the same password file on both;
`shipper setup destination slave|s3 NAME`: one more place sets go, one command each."""

from __future__ import annotations

import argparse
import json
from typing import Any, List

from shipper.commands.context import EXIT_PARTIAL, Context
from shipper.core import sets
from shipper.core.progress import Progress
from shipper.setup import destination, provision

DESCRIPTION = (
    "Run `shipper setup slave` on the slave first: it prints the certificate "
    "fingerprint that `shipper setup master` needs. Running either again changes only "
    "what differs. `shipper setup destination slave|s3 NAME` adds a second slave or a "
    "bucket afterwards."
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
    _register_destination(roles)


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
            "or, to make this server a further destination of a master that is set up already:",
            f"  shipper setup destination slave NAME --slave {host}:{v['port']} --password-file FILE "
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


# ---------------------------------------------------------------- setup destination


def _register_destination(roles: Any) -> None:
    dest = roles.add_parser(
        "destination",
        help="add a second slave or an S3 bucket to destinations",
        description="Add one destination to the config of the server that has `repository` "
        "(the master; a slave for pull with `shipper copy`). Checks it first and writes "
        "nothing if a check fails; running it again changes nothing.",
    )
    kinds = dest.add_subparsers(dest="kind", metavar="KIND", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("name", metavar="NAME", help="the destination's name (a-z, 0-9, _ -)")
    common.add_argument(
        "--dry-run", action="store_true", help="check and say what would be written"
    )
    common.add_argument("--json", action="store_true", help="print the outcome as JSON")
    slave = kinds.add_parser(
        "slave",
        parents=[common],
        help="a second slave, after `shipper setup slave` ran there",
        description="Check the slave's receiver (fingerprint, credential), pin its certificate "
        "and add it to destinations. The slave must have been set up with the same password file.",
    )
    slave.add_argument(
        "--slave", "--url", dest="slave", required=True, metavar="HOST[:PORT]",
        help="the new slave's receiver (a rest:https://HOST:PORT/ URL also works)",
    )  # fmt: skip
    slave.add_argument(
        "--fingerprint", required=True, metavar="SHA256",
        help="the certificate fingerprint `shipper setup slave` printed there",
    )  # fmt: skip
    slave.add_argument(
        "--password-file", required=True, metavar="F",
        help="the shared password file, the same as on the other servers",
    )  # fmt: skip
    slave.add_argument("--user", default="master", help="the user on the receiver (default master)")
    slave.add_argument(
        "--etc-dir", metavar="DIR",
        help="where the pinned certificate goes (default: beside repository.password_file)",
    )  # fmt: skip
    slave.set_defaults(run=run_slave_destination)
    s3 = kinds.add_parser(
        "s3",
        parents=[common],
        help="an S3-compatible bucket (the offsite copy)",
        description="Check the bucket with the keys, add it to destinations and print the bucket "
        "policy and the Object Lock and lifecycle settings to apply.",
    )
    s3.add_argument("--endpoint", required=True, metavar="URL", help="e.g. https://s3.example.net")
    s3.add_argument("--bucket", required=True, metavar="BUCKET[/PREFIX]", help="the bucket")
    s3.add_argument("--region", metavar="R", help="the region (default us-east-1)")
    s3.add_argument(
        "--access-key-id-file",
        required=True,
        metavar="F",
        help="the access key id (root-only file)",
    )
    s3.add_argument(
        "--secret-access-key-file", required=True, metavar="F",
        help="the secret access key (root-only file)",
    )  # fmt: skip
    s3.add_argument(
        "--retention-days", type=int, default=30, metavar="N",
        help="the Object Lock retention the printed commands set (default 30)",
    )  # fmt: skip
    s3.set_defaults(run=run_s3_destination)


def run_slave_destination(ctx: Context) -> int:
    a = ctx.args
    opts = destination.SlaveDestinationOptions(
        config_path=provision.config_path_for(a.config, None),
        name=a.name,
        dry_run=a.dry_run,
        slave=a.slave,
        fingerprint=a.fingerprint,
        password_file=a.password_file,
        user=a.user,
        etc_dir=a.etc_dir,
    )
    _print_outcome(ctx, destination.setup_slave_destination(opts), [])
    return 0


def run_s3_destination(ctx: Context) -> int:
    a = ctx.args
    opts = destination.S3DestinationOptions(
        config_path=provision.config_path_for(a.config, None),
        name=a.name,
        dry_run=a.dry_run,
        endpoint=a.endpoint,
        bucket=a.bucket,
        region=a.region,
        access_key_id_file=a.access_key_id_file,
        secret_access_key_file=a.secret_access_key_file,
        retention_days=a.retention_days,
    )
    outcome = destination.setup_s3_destination(opts)
    v = outcome.values
    lead = ["least-privilege policy for these keys (restic needs list, get, put, delete):"]
    lead += [f"  {line}" for line in json.dumps(v["policy"], indent=2).splitlines()]
    lead += [f"  {destination.LOCK_NOTE}", "Object Lock and lifecycle (create the bucket so):"]
    lead += [f"  {command}" for command in v["commands"]]
    _print_outcome(ctx, outcome, lead)
    return 0
