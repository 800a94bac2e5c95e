"""`shipper restore-db`: many databases of one set in one command, maybe into another server.

At most one repository listing and one manifest read per command (open_set);
a set named by its full id needs no listing at all. Each dump streams from
`restic dump` into its loader, databases side by side (`databases.parallel`),
each engine's globals before them and again after (grants on tables exist
only then). Nothing is loaded when a load would replace a live database of the
configured server without --replace.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import os
import stat
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from shipper import databases
from shipper.core import sets
from shipper.core.errors import NotFound, Refused
from shipper.core.manifest import OK, Dump, Manifest
from shipper.core.restic import NoSnapshotFound, Restic, ResticError
from shipper.slave import restore


@dataclass(frozen=True)
class Server:
    """--to-host/--to-port/--to-socket/--to-user/--to-password-file; all None: the configured one."""

    host: Optional[str] = None
    port: Optional[int] = None
    socket: Optional[str] = None
    user: Optional[str] = None
    password_file: Optional[str] = None

    def given(self) -> bool:
        return any(v is not None for v in vars(self).values())


@dataclass(frozen=True)
class Request:
    part: Optional[str] = None  # one ENGINE:DB, as before; None: every database of the set
    only: Sequence[str] = ()
    exclude: Sequence[str] = ()
    as_name: Optional[str] = None
    suffix: str = ""
    globals: bool = False
    to: Server = field(default_factory=Server)
    replace: bool = False


@dataclass
class Load:
    dump: Dump
    engine: Any
    name: str  # the database it loads as; "" for globals
    live: bool  # the engine is the configured server, not one named by --to-*

    def describe(self) -> str:
        where = self.engine.describe()
        if self.dump.is_globals:
            return f"{self.dump.engine} users and grants on {where}"
        return f"{self.dump.part} into {self.name} on {where}"


class ManifestOnce:
    """The set's manifest, read once and only when needed: in the background while the
    first loads stream (each load checks its digest when its stream ends), so its restic
    process overlaps theirs."""

    def __init__(self, restic: Restic, chosen: sets.SnapshotSet, known: Optional[Manifest] = None):
        self.restic = restic
        self.chosen = chosen
        self._pool = concurrent.futures.ThreadPoolExecutor(1)
        self._future: Optional[concurrent.futures.Future] = None
        if known is not None:  # read already (open_set): nothing left to start
            self._future = concurrent.futures.Future()
            self._future.set_result((known, []))

    def start(self) -> None:
        if self._future is None:
            self._future = self._pool.submit(restore.set_dumps, self.restic, self.chosen)

    def get(self) -> Manifest:
        self.start()
        assert self._future is not None
        return self._future.result()[0]

    def digest(self, dump: Dump) -> Optional[str]:
        part = self.get().by_name().get(dump.part)
        if part is None or part.outcome != OK:
            raise databases.DatabaseError(
                f"the manifest of set {self.chosen.id} does not list {dump.part} as stored; "
                f"{dump.part} was left as it was; load another set"
            )
        return part.sha256

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def open_set(
    cfg: Any, restic: Restic, ref: str
) -> Tuple[sets.SnapshotSet, ManifestOnce, List[Dump]]:
    """The set `ref` names, its manifest (read once) and its dumps.

    A full set id costs one restic process, not two: restic picks the set's
    manifest snapshot by its tags and dumps the manifest, whose parts name
    their snapshots; no listing. Anything else (`latest`, a prefix, a set
    that manifest_by_tags cannot read) lists the sets; the manifest is then
    read while the first loads stream.
    """
    if sets.is_set_id(ref):
        manifest = manifest_by_tags(cfg, restic, ref)
        if manifest is not None:
            chosen = sets.SnapshotSet(ref)
            return chosen, ManifestOnce(restic, chosen, manifest), manifest.dumps(chosen)
    chosen = sets.find(sets.group(restic.snapshots()), ref)
    return chosen, ManifestOnce(restic, chosen), restore.listed_dumps(chosen)


def manifest_by_tags(cfg: Any, restic: Restic, set_id: str) -> Optional[Manifest]:
    """Set `set_id`'s manifest without listing the repository, or None.

    The newest snapshot tagged with the set and `manifest` holds it where the
    master wrote it: under its state folder's set/ in the files part (this
    machine's state_dir is taken for the master's), or at the root when it
    was amended. None when restic finds no such snapshot or file there, or
    the manifest lacks a dump's snapshot: the caller lists the sets. Errors
    that are not about the set (unreachable, wrong password) are raised.
    """
    tags = (f"{sets.SET_TAG}:{set_id}", f"{sets.PART_TAG}:{sets.MANIFEST_PART}")
    guess = cfg.state / sets.SET_FOLDER / sets.MANIFEST_FILENAME
    for path in (str(guess), "/" + sets.MANIFEST_FILENAME):
        try:
            # Unlocked: a prune that removes the set meanwhile fails the (locked) loads.
            document = json.loads(restic.read_file("latest", path, tags, lock=False))
        except NoSnapshotFound:
            return None  # no such set, or it never finished
        except ResticError as exc:
            if type(exc) is not ResticError:  # not "no such file": the repository's trouble
                raise
            continue
        except ValueError:
            return None
        manifest = Manifest.from_json(document)
        parts = [p for p in manifest.parts if p.outcome == OK and p.is_dump]
        if manifest.set != set_id or any(not p.snapshot for p in parts):
            return None
        return manifest
    return None


def plan(
    cfg: Any,
    chosen: sets.SnapshotSet,
    manifest: Callable[[], Manifest],
    dumps: List[Dump],
    request: Request,
) -> List[Load]:
    """The loads in order: globals, the databases (side by side), globals again."""
    only = [request.part] if request.part else list(request.only)
    selected = restore.select_dumps(chosen, manifest, dumps, only, request.exclude)
    if request.as_name and len(selected) > 1 and "{db}" not in request.as_name:
        raise Refused(
            f"--as {request.as_name} names one database but {len(selected)} would load; "
            "use a pattern such as --as '{db}_old', or --suffix _old"
        )
    labels = sorted({d.engine for d in selected})
    if request.to.given() and len(labels) > 1:
        raise Refused(
            f"--to-* names one server but the loads span {', '.join(labels)}; "
            f"pick one engine, e.g. --only '{labels[0]}:*'"
        )
    engines = {label: _engine(cfg, label, request.to) for label in labels}
    users = restore.with_globals(chosen, dumps, selected) if request.globals else []

    def load(dump: Dump) -> Load:
        name = "" if dump.is_globals else restore.target_name(dump, request.as_name, request.suffix)
        engine, live = engines[dump.engine]
        return Load(dump, engine, name, live)

    rest = [load(d) for d in selected]
    return [load(d) for d in users] + rest + ([load(d) for d in users] if rest else [])


def _engine(cfg: Any, label: str, to: Server) -> Tuple[Any, bool]:
    """(engine, live): the configured server, or the one --to-* names."""
    try:
        configured = restore.configured_engine(cfg, label)
    except NotFound:
        if not to.given():
            raise
        kind = label.rstrip("0123456789")
        configured = getattr(databases, databases.ENGINES[kind])(databases.default_server(kind))
        return retarget(configured, to), False
    if not to.given():
        return configured, True
    _check_password_file(to.password_file)
    target = retarget(configured, to)
    return target, target.describe() == configured.describe()


def retarget(engine: Any, to: Server) -> Any:
    """The same engine aimed at the server --to-* names; unnamed settings are kept.

    A server setting without a `socket` field (PostgreSQL) takes the socket's
    folder as its host, libpq's convention; one with it connects by host or socket.
    """
    changes: Dict[str, Any] = {
        k: v for k, v in (("port", to.port), ("user", to.user)) if v is not None
    }
    if to.password_file is not None:
        changes["password_file"] = to.password_file
    fields = {f.name for f in dataclasses.fields(engine.server)}
    if "socket" in fields and (to.host or to.socket):
        changes.update(host=to.host, socket=to.socket)
    elif to.socket:
        changes["host"] = to.socket if os.path.isdir(to.socket) else os.path.dirname(to.socket)
    elif to.host:
        changes["host"] = to.host
    return type(engine)(dataclasses.replace(engine.server, **changes), label=engine.label)


def _check_password_file(path: Optional[str]) -> None:
    if path is None:
        return
    try:
        info = os.stat(path)
    except OSError as exc:
        raise Refused(f"--to-password-file {path}: {exc.strerror}; give a readable file") from None
    if info.st_mode & 0o077 or info.st_uid != os.geteuid():
        raise Refused(
            f"--to-password-file {path} is readable by others or not yours "
            f"(mode {stat.filemode(info.st_mode)}): chmod 600 it, then run again"
        )


def refuse_live_replacements(loads: List[Load], replace: bool) -> None:
    """Refuse, before anything loads, to overwrite a live database under its own name."""
    if replace:
        return
    for load in loads:
        if not load.live or load.dump.is_globals or load.name != load.dump.database:
            continue
        with load.engine.credentials():
            present = load.engine.existing_databases()
        if load.name in present:
            raise Refused(
                f"{load.dump.part} would replace the live database {load.name} on "
                f"{load.engine.describe()} (the configured server); nothing was loaded; "
                "load it under another name (--suffix _old, --as NAME), into another server "
                "(--to-host/--to-socket), or give --replace"
            )


Report = Callable[[Load, Optional[str], float], None]


def run(
    restic: Restic, loads: List[Load], manifest: ManifestOnce, parallel: int, report: Report
) -> int:
    """Load everything, report each load as it ends; the number that failed."""
    failed = 0
    manifest.start()

    def one(load: Load) -> bool:
        clock = time.monotonic()
        try:
            restore.load_part(
                restic,
                load.engine,
                load.dump,
                as_name=load.name or None,
                expected=lambda: manifest.digest(load.dump),
            )
        except (databases.DatabaseError, ResticError) as exc:
            report(load, str(exc), time.monotonic() - clock)
            return False
        report(load, None, time.monotonic() - clock)
        return True

    with contextlib.ExitStack() as stack:
        for engine in {id(load.engine): load.engine for load in loads}.values():
            stack.enter_context(engine.credentials())
        users = [load for load in loads if load.dump.is_globals]
        rest = [load for load in loads if not load.dump.is_globals]
        half = len(users) // 2 if rest else len(users)
        failed += sum(not one(load) for load in users[:half])
        with concurrent.futures.ThreadPoolExecutor(max(1, parallel)) as pool:
            failed += sum(not ok for ok in pool.map(one, rest))
        failed += sum(not one(load) for load in users[half:])
    return failed
