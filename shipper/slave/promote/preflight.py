"""Promote's preflight and plan: every check and what a run would change; nothing is changed."""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import time
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from shipper import databases
from shipper.core import hooks, sets
from shipper.core import manifest as manifests
from shipper.core.config import Config
from shipper.core.errors import NotFound, Refused
from shipper.core.files import not_a_folder
from shipper.core.manifest import Dump, Manifest
from shipper.core.progress import human_bytes as _human
from shipper.core.restic import Restic, ResticError
from shipper.databases.registry import major_of
from shipper.slave import damage
from shipper.slave.promote import standby
from shipper.slave.promote.journal import Journal
from shipper.slave.promote.model import (
    DONE,
    FILES,
    RECEIVER,
    ROLE,
    Check,
    FileChanges,
    Options,
    Plan,
    Say,
    now,
)
from shipper.slave.promote.report import age as _age
from shipper.slave.promote.scope import (
    Scope,
    from_root,
    is_under,
    norm,
    restic_pattern,
    rewritten_files,
    summarize_preview,
    type_changes,
    under_root,
)

# Kept free on a filesystem after the restore: a full disk breaks the services it brings up.
_SPACE_MARGIN = 64 << 20


class Preflight:
    """preflight() and plan() change nothing; Promotion adds run()."""

    def __init__(
        self, cfg: Config, restic: Restic, options: Options, engines: Optional[List[Any]] = None
    ):
        self.cfg = cfg
        self.restic = restic
        self.options = options
        self.root = norm(os.path.abspath(options.root))
        self.folder = cfg.state / "promote"
        self.chosen: Optional[sets.SnapshotSet] = None
        self.manifest = Manifest(set="", status="")
        self.journal: Optional[Journal] = None
        self.checks: List[Check] = []
        self._engines = engines
        self._plan: Optional[Plan] = None
        self.started = now()
        self.clock = time.monotonic()  # the whole command counts in the time to recover

    # ------------------------------------------------------------ preflight

    def preflight(self, say: Say = lambda check: None) -> List[Check]:
        """Every check, each OK or what to do; the set is chosen here."""

        def check(name: str, ok: bool, message: str, overridable: bool = False) -> bool:
            item = Check(name, ok, message, overridable)
            self.checks.append(item)
            say(item)
            return ok

        interrupted = Journal.unfinished(self.folder)
        self._check_role(check, interrupted)
        if not self._check_root(check):
            return self.checks
        try:
            found = sets.group(self.restic.snapshots())
        except ResticError as exc:
            check(
                "repository",
                False,
                f"cannot open the repository {self.restic.repository.display}: {exc}",
            )
            return self.checks
        check("repository", True, f"{self.restic.repository.display}: {len(found)} sets")
        if not self._choose_set(check, found, interrupted):
            return self.checks
        if not self._check_manifest(check):
            self._offer_readable(check, found)
            return self.checks
        if self._check_parts(check):
            self._check_readable(check, found)
        else:
            self._offer_readable(check, found)
        self._check_databases(check)
        return self.checks

    def _check_readable(self, check: Callable[..., bool], found: List[sets.SnapshotSet]) -> None:
        """Refuse a set that `shipper check` found in damaged packs."""
        assert self.chosen is not None
        record = damage.load(self.cfg)
        why = record.why(self.chosen)
        if why:
            check("readable", False, f"set {self.chosen.id} cannot be read back whole: {why}")
            self._offer_readable(check, found, record)
            return
        when = f"last `shipper check`: {record.checked}" if record.checked else "no check yet"
        check("readable", True, f"no damage known in this set ({when})")

    def _offer_readable(
        self, check: Callable[..., bool], found: List[sets.SnapshotSet], record: Any = None
    ) -> None:
        """After a set failed because it cannot be read: name the newest one that can."""
        if self.chosen is None or self.checks[-1].name not in ("manifest", "parts", "readable"):
            return
        if self.checks[-1].name == "manifest" and "partial" in self.checks[-1].message:
            return
        record = record or damage.load(self.cfg)
        check("instead", False, damage.offer(self.restic, found, record, skip=self.chosen.id))

    def _check_root(self, check: Callable[..., bool]) -> bool:
        """--root must be a folder (or not exist yet under one): found before the receiver stops."""
        problem = not_a_folder(self.root)
        if problem:
            return check("root", False, f"--root {problem}; give a folder")
        if self.root != "/":
            check("root", True, f"{self.root}: a folder")
        return True

    def _check_role(self, check: Callable[..., bool], interrupted: List[Dict[str, Any]]) -> None:
        if self.cfg.role == "slave":
            check("role", True, "this server is the slave")
        elif interrupted:
            check(
                "role",
                True,
                "this server is master, from an interrupted promote that will now finish",
            )
        else:
            check(
                "role",
                self.options.force,
                "this server is a master: promote runs on the slave"
                + (
                    " (--force given: going on)"
                    if self.options.force
                    else "; --force to promote anyway"
                ),
                overridable=True,
            )

    def _choose_set(
        self, check: Callable[..., bool], found: List[sets.SnapshotSet], interrupted
    ) -> bool:
        ref = self.options.set_ref
        if not ref and interrupted:
            ref = interrupted[-1]["set"]
        try:
            self.chosen = sets.find(found, ref) if ref else self._newest(found)
        except NotFound as exc:
            return check("set", False, str(exc))
        chosen = self.chosen
        age = _age(chosen.time)
        if chosen.status == sets.INCOMPLETE:
            return check(
                "set",
                False,
                f"set {chosen.id} is incomplete (no manifest: it never finished); "
                "choose a complete set with --set (`shipper sets` lists them)",
            )
        return check(
            "set", True, f"{chosen.id} ({chosen.status}, taken {age} ago on {chosen.host or '?'})"
        )

    def _newest(self, found: List[sets.SnapshotSet]) -> sets.SnapshotSet:
        newest = sets.newest(found)
        if newest is not None:
            return newest
        partial = sets.newest(found, (sets.PARTIAL,))
        if partial is not None and self.options.allow_partial:
            return partial
        if partial is not None:
            raise NotFound(
                f"there is no complete set; the newest is {partial.id}, partial: "
                "give --allow-partial to promote it"
            )
        raise NotFound("there is no set in the repository: nothing to promote")

    def _check_manifest(self, check: Callable[..., bool]) -> bool:
        assert self.chosen is not None
        try:
            manifest = manifests.read(self.restic, self.chosen)
        except (ResticError, ValueError) as exc:
            return check(
                "manifest", False, f"cannot read the manifest of set {self.chosen.id}: {exc}"
            )
        if manifest is None:
            return check(
                "manifest",
                False,
                f"set {self.chosen.id} has no readable manifest: it cannot be promoted",
            )
        self.manifest = manifest
        failed = manifest.failed_parts()
        if failed:
            named = "; ".join(f"{name}: {error}" for name, error in failed.items())
            if not self.options.allow_partial:
                return check(
                    "manifest",
                    False,
                    f"set {self.chosen.id} is partial, failed part(s): {named}; "
                    "--allow-partial promotes the rest, or choose another set with --set",
                )
            return check("manifest", True, f"partial set, --allow-partial: skipping {named}")
        return check("manifest", True, f"{len(manifest.parts)} parts, all ok")

    def _check_parts(self, check: Callable[..., bool]) -> bool:
        assert self.chosen is not None
        present = self.chosen.parts
        ids = {snap.id for snap in self.chosen.snapshots}
        missing = []
        for load in self.manifest.dumps(self.chosen):
            if not load.snapshot or (load.snapshot not in ids and load.part not in present):
                missing.append(load.part)
        files_ok = self.manifest.files_stored()
        if files_ok and FILES not in present:
            missing.append(FILES)
        if missing:
            return check(
                "parts",
                False,
                f"set {self.chosen.id} lacks the snapshot of part(s) "
                f"{', '.join(missing)}: choose another set with --set",
            )
        return check("parts", True, f"{len(present)} part snapshots present")

    def _check_databases(self, check: Callable[..., bool]) -> None:
        assert self.chosen is not None
        loads = self.manifest.dumps(self.chosen)
        if not loads:
            return
        engines = {load.engine for load in loads}
        try:
            available = self.engines()
        except Exception as exc:  # the database layer's own errors, whatever they are
            check("databases", False, f"cannot find this server's database servers: {exc}")
            return
        for name in sorted(engines):
            engine = available.get(name)
            if engine is None:
                check(
                    f"{name} server",
                    False,
                    f"the set has {name} dumps but no {name} server is configured "
                    "here: install and start it, and configure databases."
                    + re.sub(r"\d+$", "", name),
                )
                continue
            wanted = next(load.server_version for load in loads if load.engine == name)
            self._check_version(check, engine, wanted)

    def _check_version(self, check: Callable[..., bool], engine: Any, wanted: str) -> None:
        label = f"{engine.name} server"
        try:
            with engine.credentials():
                have = engine.version()
                have_major = engine.major_version()
        except databases.DatabaseError as exc:
            check(
                label, False, f"{exc}; start the local {engine.name} server, then run promote again"
            )
            return
        want_major = major_of(engine.name, wanted) if wanted else have_major
        if want_major != have_major:
            forced = self.options.force
            check(
                label,
                forced,
                f"the set was dumped from {engine.name} {wanted} (major {want_major}), "
                f"this server runs {have} (major {have_major})"
                + (
                    "; --force given: loading anyway"
                    if forced
                    else "; install the same major version, or --force to load anyway"
                ),
                overridable=True,
            )
            return
        check(label, True, f"running, {have} (the set's: {wanted or '?'})")

    def engines(self) -> Dict[str, Any]:
        if self._engines is None:
            self._engines = (
                databases.engines_from_config(self.cfg.databases)
                if self.cfg.databases.enabled
                else []
            )
        return {engine.label: engine for engine in self._engines}

    @property
    def ready(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks) and self.chosen is not None

    # ------------------------------------------------------------ plan

    def plan(self, say: Say = lambda check: None) -> Plan:
        """What run() will do; reads the repository and the disk, changes nothing."""
        if not self.ready:
            raise Refused("preflight failed: fix what it names, then run promote again")
        chosen = self.chosen
        assert chosen is not None
        journal = Journal(self.folder, chosen.id)
        done = [
            name
            for name, step in journal.data.get("steps", {}).items()
            if step.get("status") == DONE
            and journal.data.get("root") == self.root
            and not journal.data.get("finished")
        ]
        files_part = chosen.parts.get(FILES)
        route = standby.choose(self.cfg, chosen.id, self.root, self.manifest.dumps(chosen))
        snapshot = files_part.snapshot if files_part and route.kind != standby.STANDBY else None
        scope = Scope.make(self.restored_paths(files_part), self.protected_paths())
        children: Dict[str, List[str]] = {}
        includes: List[str] = []
        in_the_way: List[str] = []
        rewrite: List[str] = []
        changes = None
        if snapshot and FILES not in done and scope.paths:
            changes, children, in_the_way, rewrite = self._preview(snapshot, scope)
            includes = scope.includes(children)
        loads = [load for load in self.manifest.dumps(chosen) if load.part not in route.skipped]
        wanted = list(changes.bytes_by_path.items()) if changes else []
        self._check_space(
            say,
            [(under_root(self.root, p), n) for p, n in wanted] + self._database_space(loads, done),
        )
        if changes is not None:
            self._check_inodes(say, changes.entries_to_create)
        post = [hook.name for hook in hooks.find(self.cfg.hooks.dirs, hooks.POST_RESTORE)]
        steps = [
            RECEIVER,
            *([FILES] if snapshot else []),
            *(load.step for load in loads),
            *(f"hook:{name}" for name in post),
            ROLE,
        ]
        self._plan = Plan(
            set_id=chosen.id,
            status=chosen.status,
            time=chosen.time.isoformat(),
            host=self.manifest.host or chosen.host,
            root=self.root,
            files_snapshot=snapshot,
            scope=scope,
            includes=includes,
            children=children,
            in_the_way=in_the_way,
            rewrite=rewrite,
            changes=changes,
            databases=loads,
            skipped_parts=self.manifest.failed_parts(),
            hooks=post,
            steps=steps,
            done=[s for s in steps if s in done],
            resumed=bool(done),
            route=route.kind,
            route_note=route.note,
            overwrite=route.overwrite,
        )
        return self._plan

    def restored_paths(self, files_part: Optional[sets.Part]) -> List[str]:
        """The master's `paths` from the manifest; else what the files snapshot holds but the set folder."""
        if self.manifest.paths is not None or files_part is None:
            return list(self.manifest.paths or [])
        own = self.manifest.set_dir or None
        return [path for path in files_part.paths if path != own]

    def protected_paths(self) -> List[str]:
        """Machine-specific paths (this server's and the master's), and shipper's own files here."""
        own = [
            self.cfg.state_dir,
            self.cfg.receiver.repo_dir,
            os.path.dirname(os.path.abspath(self.cfg.source)),
        ]
        if self.cfg.repository.local_path:
            own.append(self.cfg.repository.local_path)
        mapped = [from_root(self.root, path) for path in own if path.startswith("/")]
        return sorted(
            {
                norm(p)
                for p in [
                    *self.cfg.machine_specific,
                    *self.manifest.machine_specific,
                    *(m for m in mapped if m),
                ]
            }
        )

    def _preview(
        self, snapshot: str, scope: Scope
    ) -> Tuple[FileChanges, Dict[str, List[str]], List[str], List[str]]:
        """restic's dry run over the whole paths: the changes, and what the route folders hold.

        Protected items are in restic's answer (it was asked about whole
        paths, which saves a `restic ls`) and are taken out of the counts;
        entries of the route folders that the set lacks are among restic's
        deletions, which shipper then makes itself.
        """
        _, items, errors = self.restic.restore_preview(
            snapshot, self.root, [restic_pattern(p) for p in scope.paths], delete=True
        )
        children: Dict[str, Set[str]] = {folder: set() for folder in scope.route}
        kept = []
        for item in items:
            where = str(item.get("item", ""))
            if item.get("action") == "deleted":
                where = from_root(self.root, where) or where
            elif posixpath.dirname(where) in children:
                children[posixpath.dirname(where)].add(posixpath.basename(where))
            if not any(is_under(where, m) for m in scope.protected):
                kept.append(item)
        changes = summarize_preview(self.root, kept, scope.paths)
        changes.warnings = errors
        named = {folder: sorted(names) for folder, names in children.items()}
        in_the_way = type_changes(self.root, scope, items)
        return changes, named, in_the_way, rewritten_files(self.root, scope, items)

    def _database_space(self, loads: List[Dump], done: List[str]) -> List[Tuple[str, int]]:
        """Where each engine keeps its data and the bytes its loads add (a load is about its dump)."""
        out = []
        engines = self.engines()
        for label in sorted({load.engine for load in loads if load.step not in done}):
            engine = engines.get(label)
            folder = getattr(engine, "data_directory", None)
            if folder is None:
                continue  # an engine that cannot say where its data lives is not checked
            try:
                with engine.credentials():
                    where = folder()
            except databases.DatabaseError:
                continue  # preflight has named a server that does not answer
            out.append((where, sum(load.bytes for load in loads if load.engine == label)))
        return out

    def _check_space(self, say: Say, needs: List[Tuple[str, int]]) -> None:
        needed: Dict[int, Tuple[int, str]] = {}
        for path, size in needs:
            where = _existing(path)
            device = os.stat(where).st_dev
            total, _ = needed.get(device, (0, where))
            needed[device] = (total + size, where)
        for total, where in needed.values():
            usage = shutil.disk_usage(where)
            ok = usage.free >= total + _SPACE_MARGIN
            item = Check(
                "disk",
                ok,
                f"{where}: {_human(total)} to write, {_human(usage.free)} free"
                + ("" if ok else "; free space there, then run promote again"),
            )
            self.checks.append(item)
            say(item)

    def _check_inodes(self, say: Say, count: int) -> None:
        """The root's filesystem has an inode for every entry the restore creates."""
        where = _existing(self.root)
        info = os.statvfs(where)
        if not info.f_files or not count:
            return  # no inode limit (btrfs, ...) or nothing new
        ok = info.f_favail >= count
        item = Check(
            "inodes",
            ok,
            f"{where}: {count} new files and folders, {info.f_favail} inodes free"
            + ("" if ok else f"; free inodes there (`df -i {where}`), then run promote again"),
        )
        self.checks.append(item)
        say(item)


def _existing(path: str) -> str:
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path
