"""Argument parsing and output only; the work happens in the modules it calls.

Each subcommand is a small function registered with `@command`; `main` maps
every expected error to a one-line message and its exit code, never a
traceback. Exit codes: 0 ok, 1 failed, 2 usage, 3 another run holds the
lock, 4 a set was committed but is partial.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import sys
import time
from typing import Any, Callable, List, Optional

from shipper import config, restore, sets, snapshot
from shipper.errors import ShipperError
from shipper.progress import Progress, human_bytes
from shipper.restic import Restic, ResticError

EXIT_PARTIAL = 4

_COMMANDS: List[Callable[[Any], None]] = []


def command(register: Callable[[Any], None]) -> Callable[[Any], None]:
    """Decorate a function that adds one subparser (with set_defaults(run=...))."""
    _COMMANDS.append(register)
    return register


# ---------------------------------------------------------------- shared context


class Context:
    """What a command needs, made on first use: the config and a restic handle."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self._cfg: Optional[config.Config] = None

    @property
    def cfg(self) -> config.Config:
        if self._cfg is None:
            self._cfg = config.load(self.args.config)
        return self._cfg

    def restic(self, progress: Optional[Progress] = None, remote: bool = False) -> Restic:
        """The repository; a slave reads its local copy unless `remote`."""
        return Restic.for_config(self.cfg, progress=progress, remote=remote)

    def sets(self) -> List[sets.SnapshotSet]:
        return sets.group(self.restic().snapshots())

    def out(self, text: str = "") -> None:
        print(text)

    def json(self, data: Any) -> None:
        print(json.dumps(data, indent=2, default=str))


# ---------------------------------------------------------------- commands


@command
def _init(sub: Any) -> None:
    p = sub.add_parser("init", help="create the repository if it does not exist")
    p.set_defaults(run=run_init)


def run_init(ctx: Context) -> int:
    created = ctx.restic(remote=True).init()
    where = ctx.cfg.repository.url
    ctx.out(
        f"created the repository at {where}" if created else f"the repository at {where} exists"
    )
    return 0


@command
def _snapshot(sub: Any) -> None:
    p = sub.add_parser("snapshot", help="take one snapshot set now (files, databases, settings)")
    p.add_argument(
        "--dry-run", action="store_true", help="show what would be backed up; write nothing"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(run=run_snapshot)


def run_snapshot(ctx: Context) -> int:
    cfg = ctx.cfg
    if ctx.args.dry_run:
        planned = snapshot.plan(cfg)
        if ctx.args.json:
            ctx.json(planned)
            return 0
        ctx.out(f"would take a set into {planned['repository']}:")
        ctx.out("  files: " + " ".join(planned["paths"]))
        if planned["exclude"]:
            ctx.out("  excluding: " + " ".join(planned["exclude"]))
        for item in planned["databases"]:
            ctx.out(f"  database: {item}")
        for hook in planned["hooks"]:
            ctx.out(f"  pre-snapshot hook: {hook}")
        return 0
    from shipper import notify, status

    progress = Progress()
    # Manual and scheduled runs alike: webhooks, emails and metrics come from here.
    with notify.lifecycle(cfg) as run:
        unreachable = status.receiver_unreachable(cfg)
        if unreachable:
            raise ShipperError(unreachable)
        run.result = snapshot.take(cfg, ctx.restic(progress), announce=progress.start)
    result = run.result
    progress.finish()
    if ctx.args.json:
        ctx.json(result.to_json())
    else:
        _print_result(ctx, result)
    return 0 if result.status == sets.COMPLETE else EXIT_PARTIAL


def _print_result(ctx: Context, result: snapshot.SetResult) -> None:
    ctx.out(
        f"set {result.set_id}: {result.status}, {len(result.parts)} parts, "
        f"files new {result.files_new}, changed {result.files_changed}, "
        f"added {human_bytes(result.bytes_added)}, {result.duration:.1f}s"
    )
    for line in _vanished_lines(result):
        ctx.out(line)
    for part in result.failures:
        print(f"shipper: part {part.name} {part.outcome}: {part.error}", file=sys.stderr)
    if result.unreadable:
        print("shipper: unreadable files (not in the set):", file=sys.stderr)
        for item in result.unreadable[:20]:
            print(f"  {item}", file=sys.stderr)
    if result.status != sets.COMPLETE:
        print(
            f"shipper: set {result.set_id} is partial: fix what failed above, and the next set "
            "takes those parts again; promote keeps using the newest complete set",
            file=sys.stderr,
        )


def _vanished_lines(result: snapshot.SetResult) -> List[str]:
    """Files deleted while the set was taken, and unreadable ones in volatile folders: not failures."""
    lines = []
    if result.vanished:
        shown = ", ".join(result.vanished_paths[:5])
        more = " …" if result.vanished > 5 else ""
        lines.append(f"{result.vanished} files vanished while the set was taken: {shown}{more}")
    if result.noted:
        lines.append(f"{result.noted} unreadable files in volatile folders (noted):")
        lines += [f"  {label}" for label in result.noted_paths[:5]]
    return lines


@command
def _sets(sub: Any) -> None:
    p = sub.add_parser("sets", help="list snapshot sets, newest first")
    p.add_argument("--json", action="store_true", help="print the sets as JSON")
    p.set_defaults(run=run_sets)


def run_sets(ctx: Context) -> int:
    found = ctx.sets()
    if ctx.args.json:
        ctx.json(restore.listing(found))
        return 0
    if not found:
        ctx.out("no sets yet")
        return 0
    ctx.out(f"{'SET':<17} {'TIME (UTC)':<20} {'STATUS':<10} {'ADDED':>10} {'VANISHED':>8}  PARTS")
    for item in found:
        when = item.time.strftime("%Y-%m-%d %H:%M:%S")
        parts = ", ".join(item.part_names()) or "-"
        ctx.out(
            f"{item.id:<17} {when:<20} {item.status:<10} {human_bytes(item.bytes_added):>10} "
            f"{_vanished_cell(item):>8}  {parts}"
        )
    return 0


def _vanished_cell(item: sets.SnapshotSet) -> str:
    """The vanished count, and `+N` noted files in volatile folders."""
    noted = f"+{item.noted}" if item.noted else ""
    return f"{item.vanished}{noted}" if item.vanished or noted else "-"


@command
def _restore(sub: Any) -> None:
    p = sub.add_parser(
        "restore",
        help="restore a set's files under a folder (full original paths kept)",
        description="Restore the files of SET (an id, or `latest` for the newest complete set) "
        "under DIR: /srv/app/x lands at DIR/srv/app/x.",
    )
    p.add_argument("set", metavar="SET")
    p.add_argument("--target", required=True, metavar="DIR")
    p.add_argument(
        "--path", action="append", default=[], metavar="P", help="only this path (repeatable)"
    )
    p.set_defaults(run=run_restore)


def run_restore(ctx: Context) -> int:
    chosen = sets.find(ctx.sets(), ctx.args.set)
    progress = Progress()
    progress.start(f"restore {chosen.id}")
    summary = restore.restore_files(ctx.restic(progress), chosen, ctx.args.target, ctx.args.path)
    progress.finish()
    restored = summary.get("files_restored", summary.get("total_files", "?"))
    ctx.out(f"restored set {chosen.id} ({restored} files) under {ctx.args.target}")
    return 0


@command
def _unlock(sub: Any) -> None:
    p = sub.add_parser(
        "unlock", help="remove stale restic locks (never the locks of a live process)"
    )
    p.set_defaults(run=run_unlock)


def run_unlock(ctx: Context) -> int:
    ctx.restic().unlock_stale()
    ctx.out("stale locks removed")
    return 0


@command
def _config(sub: Any) -> None:
    p = sub.add_parser("config", help="validate or generate the configuration")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    validate = actions.add_parser(
        "validate", help="check the config file; print OK or every problem"
    )
    validate.set_defaults(run=run_config_validate)
    generate = actions.add_parser("generate", help="print a commented config made from the schema")
    generate.set_defaults(run=run_config_generate)


def run_config_validate(ctx: Context) -> int:
    cfg = ctx.cfg
    problems = config.secret_problems(cfg)
    for path in cfg.paths:
        if not os.path.exists(path):
            print(f"shipper: warning: {cfg.source}: paths: {path} does not exist", file=sys.stderr)
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1
    ctx.out(f"{cfg.source}: OK")
    if cfg.databases.enabled:
        from shipper import databases

        lists = {"mariadb": cfg.databases.mariadb, "postgresql": cfg.databases.postgresql}
        detected = [name for name, servers in lists.items() if servers is None]
        for line in databases.detect_local(detected):
            ctx.out(f"databases, autodetected: {line}")
    return 0


def run_config_generate(ctx: Context) -> int:
    sys.stdout.write(config.generate())
    return 0


@command
def _promote(sub: Any) -> None:
    p = sub.add_parser(
        "promote",
        help="on the slave: put a set in place (files, databases, hooks) and become the master",
        description="Check, show the plan, then restore the newest complete set (or --set) in place, "
        "load its databases, run the post-restore hooks and make this server the master. "
        "Interrupted, it resumes where it stopped when run again.",
    )
    p.add_argument(
        "--set",
        dest="set_ref",
        metavar="SET",
        help="the set to promote (default: the newest complete)",
    )
    p.add_argument("--dry-run", action="store_true", help="check and show the plan; change nothing")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument(
        "--root", default="/", metavar="DIR", help="restore under DIR instead of / (default /)"
    )
    p.add_argument(
        "--allow-partial",
        action="store_true",
        help="promote a partial set without its failed parts",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="go on on a master, or with another database major version",
    )
    p.add_argument(
        "--json", action="store_true", help="print the plan (--dry-run) or the report as JSON"
    )
    p.set_defaults(run=run_promote)


def run_promote(ctx: Context) -> int:
    from shipper import promote
    from shipper.lock import host_lock

    args = ctx.args
    options = promote.Options(args.set_ref, args.root, args.allow_partial, args.force)
    say = (lambda check: None) if args.json else (lambda check: ctx.out(promote.check_line(check)))
    lock = contextlib.nullcontext() if args.dry_run else host_lock(ctx.cfg.state, "promote")
    with lock:
        job = promote.Promotion(ctx.cfg, ctx.restic(), options)
        if not args.json:
            ctx.out("preflight:")
        job.preflight(say)
        if not job.ready:
            raise ShipperError("preflight failed: fix what it names (FAIL), then run promote again")
        plan = job.plan(say)
        if not job.ready:
            raise ShipperError("preflight failed: fix what it names (FAIL), then run promote again")
        if args.json and args.dry_run:
            ctx.json(plan.to_json())
            return 0
        if not args.json:
            ctx.out("\n".join(promote.plan_lines(plan)))
        if args.dry_run:
            ctx.out("dry run: nothing was changed")
            return 0
        _confirm(args.yes, f"promote set {plan.set_id} on this server")
        progress = Progress()
        job.restic.progress = progress

        def on_step(name: str, status: str) -> None:
            if status == "running":
                if name == "files":  # the only step with restic progress; databases load meanwhile
                    progress.start(name)
                return
            progress.finish()
            if not args.json:
                ctx.out(f"  {name}: {status}")

        report = job.run(on_step)
        progress.finish()
    if args.json:
        ctx.json(report.to_json())
    else:
        ctx.out("\n".join(promote.report_lines(report)))
    return 0 if report.outcome == "promoted" else 1


def _confirm(yes: bool, what: str) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise ShipperError(f"not on a terminal: give --yes to {what}")
    answer = input(f"{what}? type yes to go on: ")
    if answer.strip().lower() != "yes":
        raise ShipperError("not confirmed: nothing was changed")


@command
def _restore_db(sub: Any) -> None:
    p = sub.add_parser(
        "restore-db",
        help="load one database of a set into this server's database server",
        description="Load the dump of ENGINE:DB (e.g. mariadb:shop) from SET into the local server, "
        "replacing DB, or as a new database with --as.",
    )
    p.add_argument("set", metavar="SET", help="a set id, or latest")
    p.add_argument("part", metavar="ENGINE:DB")
    p.add_argument(
        "--as", dest="as_name", metavar="NEWNAME", help="load under this name; DB stays as it is"
    )
    p.add_argument(
        "--globals", action="store_true", help="load the engine's users, grants and roles first"
    )
    p.add_argument(
        "--dry-run", action="store_true", help="say what would be loaded; change nothing"
    )
    p.set_defaults(run=run_restore_db)


def run_restore_db(ctx: Context) -> int:
    restic = ctx.restic()
    chosen = sets.find(ctx.sets(), ctx.args.set)
    loads = restore.database_plan(restic, chosen, ctx.args.part, ctx.args.globals)
    for load in loads:
        target = ctx.args.as_name if ctx.args.as_name and not load.is_globals else load.database
        what = (
            f"{load.engine} users and grants" if load.is_globals else f"{load.part} into {target}"
        )
        if ctx.args.dry_run:
            ctx.out(f"would load {what} from set {chosen.id}")
            continue
        clock = time.monotonic()
        restore.restore_database(ctx.cfg, restic, load, ctx.args.as_name)
        ctx.out(f"loaded {what} from set {chosen.id} in {time.monotonic() - clock:.1f}s")
    return 0


@command
def _diff(sub: Any) -> None:
    p = sub.add_parser("diff", help="what changed between two sets: paths and databases")
    p.add_argument("first", metavar="SET1")
    p.add_argument("second", metavar="SET2")
    p.add_argument("--json", action="store_true", help="print the differences as JSON")
    p.set_defaults(run=run_diff)


def run_diff(ctx: Context) -> int:
    from shipper import diff

    found = ctx.sets()
    first, second = sets.find(found, ctx.args.first), sets.find(found, ctx.args.second)
    result = diff.compare(ctx.restic(), first, second)
    if ctx.args.json:
        ctx.json(result.to_json())
    else:
        ctx.out("\n".join(diff.lines(result)))
    return 0


@command
def _daemon(sub: Any) -> None:
    p = sub.add_parser(
        "daemon",
        help="take sets on the schedule, one at a time (run by shipper.service)",
        description="Take a set at every slot of `schedule` (cron syntax), never two at once. "
        "A set that outlasts its slot delays the next; slots missed while the daemon was "
        "down run once at start. `enabled: false` (shipper disable) pauses it without a "
        "restart. On a slave it takes no sets and emails when the newest set gets stale.",
    )
    p.add_argument(
        "--stop-grace",
        type=float,
        default=60,
        metavar="SECONDS",
        help="on SIGTERM, let a running set finish this long, then interrupt it (default 60)",
    )
    # For tests: how often the config is re-read, and a schedule that may have a seconds field.
    p.add_argument("--check-interval", type=float, default=30, help=argparse.SUPPRESS)
    p.add_argument("--schedule", help=argparse.SUPPRESS)
    p.set_defaults(run=run_daemon)


def run_daemon(ctx: Context) -> int:
    from shipper import schedule

    args = ctx.args
    _ = ctx.cfg  # a broken config fails here, before the loop
    if args.schedule and not schedule.valid_expression(args.schedule):
        raise ShipperError(f"--schedule {args.schedule!r} is not a cron expression")
    logging.getLogger("shipper").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    options = schedule.Options(
        config_path=config.config_path(args.config),
        check_interval=max(0.1, args.check_interval),
        schedule=args.schedule,
        stop_grace=max(0.0, args.stop_grace),
        verbose=args.verbose,
    )
    return schedule.run(options)


@command
def _status(sub: Any) -> None:
    p = sub.add_parser(
        "status",
        help="is the spare ready? a report, and a Nagios-style check (exit 0/1/2)",
        description="Role, schedule and next run, the newest complete set and its age against "
        "max_age, the last run, the repository and the receiver. Exit 0 OK, 1 WARNING, "
        "2 CRITICAL, 3 UNKNOWN (the Nagios plugin convention): WARNING once the newest "
        "complete set is older than two thirds of notify.max_age, CRITICAL past it.",
    )
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.add_argument(
        "--warning",
        type=int,
        metavar="SECONDS",
        help="WARNING past this age (default 2/3 of max_age)",
    )
    p.add_argument(
        "--critical", type=int, metavar="SECONDS", help="CRITICAL past this age (default max_age)"
    )
    p.set_defaults(run=run_status)


def run_status(ctx: Context) -> int:
    from shipper import status

    try:
        report = status.gather(ctx.cfg, None, ctx.args.warning, ctx.args.critical)
    except config.ConfigError as exc:
        problem = "; ".join(exc.problems)
        if ctx.args.json:
            ctx.json({"status": "UNKNOWN", "exit_code": status.UNKNOWN, "problems": [problem]})
        else:
            ctx.out(f"SHIPPER UNKNOWN: {problem}")
        return status.UNKNOWN
    if ctx.args.json:
        ctx.json(report.to_json())
    else:
        ctx.out(status.summary_line(report))
        ctx.out("\n".join(status.detail_lines(report)))
    return report.level


@command
def _check(sub: Any) -> None:
    p = sub.add_parser(
        "check",
        help="verify the repository (restic check, reading back a share of the data)",
        description="Run restic check on the repository (on a slave: its local path), reading "
        "back check.read_data_subset of the data packs. Problems are printed and emailed; "
        "the exit is 1 when there are any. shipper-check.timer runs this weekly.",
    )
    p.add_argument(
        "--read-data-subset",
        metavar="SUBSET",
        help="how much data to read back: 5%%, 1/10, 500M, or none (default check.read_data_subset)",
    )
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")
    p.set_defaults(run=run_check)


def run_check(ctx: Context) -> int:
    from shipper import check

    subset = ctx.args.read_data_subset or ctx.cfg.check.read_data_subset
    if subset == "none":
        subset = None
    restic = ctx.restic()
    report = check.verify(ctx.cfg, restic, subset)
    where = restic.repository.display
    if ctx.args.json:
        ctx.json(
            {
                "ok": report.ok,
                "repository": where,
                "read_data_subset": subset,
                "problems": report.problems,
                "summary": report.summary,
            }
        )
    elif report.ok:
        read = f", read back {subset} of the data" if subset else ", structure only"
        ctx.out(f"{where}: no problems found{read}")
    else:
        print(f"shipper: the repository {where} has problems:", file=sys.stderr)
        for problem in report.problems:
            print(f"  {problem}", file=sys.stderr)
    return 0 if report.ok else 1


# ---------------------------------------------------------------- two servers: setup, receiver, prune


@command
def _setup(sub: Any) -> None:
    p = sub.add_parser(
        "setup",
        help="set up the slave or the master, one command each, the same password file on both",
        description="Run `shipper setup slave` on the slave first: it prints the certificate "
        "fingerprint that `shipper setup master` needs. Running either again changes only "
        "what differs.",
    )
    roles = p.add_subparsers(dest="role", metavar="ROLE", required=True)
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
    slave.set_defaults(run=run_setup_slave)
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
    master.set_defaults(run=run_setup_master)


def _print_outcome(ctx: Context, outcome: Any, lead: List[str]) -> None:
    if ctx.args.json:
        ctx.json(outcome.to_json())
        return
    for line in outcome.changes or ["nothing changed"]:
        ctx.out(f"  {line}")
    for line in outcome.notes:
        ctx.out(f"  note: {line}")
    for line in lead:
        ctx.out(line)


def _setup_options(a: argparse.Namespace) -> dict:
    """The options both `setup slave` and `setup master` take."""
    from shipper import provision

    return dict(
        config_path=provision.config_path_for(a.config, a.etc_dir),
        password_file=a.password_file,
        etc_dir=a.etc_dir,
        state_dir=a.state_dir,
        user=a.user,
        service_manager=a.service_manager,
    )


def run_setup_slave(ctx: Context) -> int:
    from shipper import provision

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


def run_setup_master(ctx: Context) -> int:
    from shipper import provision

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


@command
def _receiver(sub: Any) -> None:
    p = sub.add_parser(
        "receiver",
        help="on the slave: run, start, stop or show the receiver (rest-server)",
        description="With no ACTION, run rest-server in the foreground (--append-only, TLS, "
        "htpasswd, --private-repos), as shipper-receiver.service does. start/stop go through "
        "systemd when it manages the receiver, else through the recorded pid.",
    )
    p.add_argument("action", nargs="?", default="run", choices=["run", "start", "stop", "status"])
    p.add_argument("--json", action="store_true", help="status as JSON")
    p.set_defaults(run=run_receiver)


def run_receiver(ctx: Context) -> int:
    from shipper import receiver

    cfg, action = ctx.cfg, ctx.args.action
    if action == "run":
        receiver.exec_foreground(cfg)
    if action == "start":
        ctx.out(receiver.start(cfg))
    elif action == "stop":
        ctx.out(receiver.stop(cfg))
    else:
        state = receiver.status(cfg)
        if ctx.args.json:
            ctx.json(state)
        else:
            running = f"running (pid {state['pid']})" if state["pid"] else "running"
            ctx.out(f"receiver: {running if state['running'] else 'stopped'} [{state['manager']}]")
            ctx.out(f"  listen {state['listen']}, repositories in {state['repo_dir']}")
            ctx.out(f"  certificate SHA-256 fingerprint: {state['fingerprint']}")
        return 0 if state["running"] else 3
    return 0


@command
def _prune(sub: Any) -> None:
    p = sub.add_parser(
        "prune",
        help="on the slave: forget whole sets by the retention policy, then restic prune",
        description="Keep every set of retention.keep_within, then hourly/daily/weekly ones and "
        "always the newest complete set; forget every snapshot of the other sets and prune. "
        "Runs on the local repository (the receiver is append-only).",
    )
    p.add_argument("--dry-run", action="store_true", help="list what would go; change nothing")
    p.add_argument("--json", action="store_true", help="print the plan and outcome as JSON")
    p.set_defaults(run=run_prune)


def run_prune(ctx: Context) -> int:
    from shipper import retention

    progress = Progress()
    result = retention.prune(
        ctx.cfg, ctx.restic(progress), dry_run=ctx.args.dry_run, announce=progress.start
    )
    progress.finish()
    if ctx.args.json:
        ctx.json(result.to_json())
        return 0
    plan = result.plan
    for decision in plan.decisions:
        if not decision.keep:
            verb = "would forget" if result.dry_run else "forgot"
            ctx.out(
                f"{verb} {decision.set.id} ({decision.set.status}, "
                f"{len(decision.set.snapshots)} snapshots)"
            )
    first, rest = plan.forget_batches()
    summary = f"{len(plan.kept)} sets kept, {len(plan.dropped)} "
    if result.dry_run:
        ctx.out(
            summary
            + f"would be forgotten ({len(first) + len(rest)} snapshots); dry run: nothing changed"
        )
    else:
        ctx.out(
            summary
            + f"forgotten ({result.forgotten_snapshots} snapshots), pruned in {result.duration:.1f}s"
        )
    return 0


@command
def _enable(sub: Any) -> None:
    p = sub.add_parser("enable", help="turn the schedule on (enabled: true in the config)")
    p.set_defaults(run=run_enable, enabled=True)
    p = sub.add_parser("disable", help="turn the schedule off (enabled: false in the config)")
    p.set_defaults(run=run_enable, enabled=False)


def run_enable(ctx: Context) -> int:
    from shipper import provision

    path = config.config_path(ctx.args.config)
    changed = provision.set_enabled(path, ctx.args.enabled)
    if changed:
        provision.wake_daemon()
    state = "on" if ctx.args.enabled else "off"
    ctx.out(f"schedule {state} ({path})" if changed else f"the schedule was already {state}")
    return 0


# ---------------------------------------------------------------- entry point


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="shipper",
        description="Keep a spare server ready to take over: snapshot sets of files and "
        "databases into a restic repository on the slave, and promote it in one command.",
    )
    p.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help=f"config file (default $SHIPPER_CONFIG or {config.DEFAULT_PATH})",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in _COMMANDS:
        register(sub)
    return p


def _setup_logging(verbose: bool) -> None:
    under_systemd = "JOURNAL_STREAM" in os.environ or "INVOCATION_ID" in os.environ
    fmt = (
        "%(levelname)s %(name)s: %(message)s"
        if under_systemd
        else "%(asctime)s %(levelname)s %(message)s"
    )
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO if under_systemd else logging.WARNING,
        format=fmt,
    )


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    _setup_logging(args.verbose)
    ctx = Context(args)
    try:
        return int(args.run(ctx) or 0)
    except config.ConfigError as exc:
        for problem in exc.problems:
            print(f"shipper: {problem}", file=sys.stderr)
        return 1
    except (ShipperError, ResticError) as exc:
        print(f"shipper: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 1)
    except KeyboardInterrupt:
        print("shipper: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output went away (`shipper sets | head`): not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        # A disk that is full, read-only or forbidden: one line naming the path, no traceback.
        print(f"shipper: error: {os_error_line(exc, ctx._cfg)}", file=sys.stderr)
        return 1


_OS_ERROR_TODO = {
    errno.ENOSPC: ("no space or no inodes left on its disk", "free space or inodes there"),
    errno.EDQUOT: ("the disk quota is exceeded", "raise the quota or free space"),
    errno.EROFS: ("its filesystem is read-only", "remount it read-write"),
    errno.EACCES: ("permission denied", "run shipper as root or fix the permissions"),
    errno.EPERM: ("operation not permitted", "run shipper as root or fix the permissions"),
}


def os_error_line(exc: OSError, cfg: Optional[config.Config]) -> str:
    """An OSError as one line: the path, what is wrong and what to do."""
    path = str(exc.filename or "")
    what, todo = _OS_ERROR_TODO.get(exc.errno or 0, (exc.strerror or str(exc), "fix that"))
    state = str(cfg.state) if cfg is not None else ""
    if state and path and (path == state or path.startswith(state.rstrip("/") + "/")):
        return (
            f"cannot write shipper's state folder {state} ({path}): {what}; {todo}, "
            "or set state_dir in the config to a writable folder, then run again"
        )
    where = path or "a file shipper needs"
    return f"{where}: {what}; {todo}, then run again"
