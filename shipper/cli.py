"""Argument parsing and output only; the work happens in the modules it calls.

Each subcommand is a small function registered with `@command`; `main` maps
every expected error to a one-line message and its exit code, never a
traceback. Exit codes: 0 ok, 1 failed, 2 usage, 3 another run holds the
lock, 4 a set was committed but is partial.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any, Callable, List, Optional

from shipper import config, restore, sets, snapshot
from shipper.errors import ShipperError
from shipper.progress import Progress, human_bytes
from shipper.restic import Repository, Restic, ResticError

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
        repo = self.cfg.repository
        problems = config.secret_problems(self.cfg)
        if problems:
            raise ShipperError("\n".join(problems))
        url = repo.url
        if repo.local_path and self.cfg.role == "slave" and not remote:
            url = repo.local_path
        repository = Repository(
            url=url,
            password_file=repo.password_file,
            cacert=repo.cacert,
            rest_user=repo.rest_user if url == repo.url else None,
            rest_password_file=repo.rest_password_file,
            lock_wait=repo.lock_wait,
        )
        return Restic(repository, progress=progress, cache_dir=str(self.cfg.state / "cache"))

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
    ctx.out(f"created the repository at {where}" if created else f"the repository at {where} exists")
    return 0


@command
def _snapshot(sub: Any) -> None:
    p = sub.add_parser("snapshot", help="take one snapshot set now (files, databases, settings)")
    p.add_argument("--dry-run", action="store_true", help="show what would be backed up; write nothing")
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
    progress = Progress()
    restic = ctx.restic(progress)
    result = snapshot.take(cfg, restic, announce=progress.start)
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
    for part in result.failures:
        print(f"shipper: part {part.name} {part.outcome}: {part.error}", file=sys.stderr)
    if result.unreadable:
        print("shipper: unreadable files (not in the set):", file=sys.stderr)
        for item in result.unreadable[:20]:
            print(f"  {item}", file=sys.stderr)


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
    ctx.out(f"{'SET':<17} {'TIME (UTC)':<20} {'STATUS':<10} {'ADDED':>10}  PARTS")
    for item in found:
        when = item.time.strftime("%Y-%m-%d %H:%M:%S")
        parts = ", ".join(item.parts) or "-"
        ctx.out(f"{item.id:<17} {when:<20} {item.status:<10} {human_bytes(item.bytes_added):>10}  {parts}")
    return 0


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
    p.add_argument("--path", action="append", default=[], metavar="P", help="only this path (repeatable)")
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
    p = sub.add_parser("unlock", help="remove stale restic locks (never the locks of a live process)")
    p.set_defaults(run=run_unlock)


def run_unlock(ctx: Context) -> int:
    ctx.restic().unlock_stale()
    ctx.out("stale locks removed")
    return 0


@command
def _config(sub: Any) -> None:
    p = sub.add_parser("config", help="validate or generate the configuration")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    validate = actions.add_parser("validate", help="check the config file; print OK or every problem")
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
    return 0


def run_config_generate(ctx: Context) -> int:
    sys.stdout.write(config.generate())
    return 0


# ---------------------------------------------------------------- entry point


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="shipper",
        description="Keep a spare server ready to take over: snapshot sets of files and "
        "databases into a restic repository on the slave, and promote it in one command.",
    )
    p.add_argument("-c", "--config", metavar="FILE", help=f"config file (default $SHIPPER_CONFIG or {config.DEFAULT_PATH})")
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in _COMMANDS:
        register(sub)
    return p


def _setup_logging(verbose: bool) -> None:
    under_systemd = "JOURNAL_STREAM" in os.environ or "INVOCATION_ID" in os.environ
    fmt = "%(levelname)s %(name)s: %(message)s" if under_systemd else "%(asctime)s %(levelname)s %(message)s"
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO if under_systemd else logging.WARNING, format=fmt)


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

