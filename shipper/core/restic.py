"""The only place that runs restic.

Every call goes through `Restic._run`: the password by file, the repository
location with credentials through an inherited pipe (never a command line or
an environment), `--json` output parsed line by line into typed results (non
JSON lines and unknown fields ignored), and restic's exit codes turned into
exceptions whose messages say what to do.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from shipper.core import destinations, process
from shipper.core.config import secret_problems
from shipper.core.destinations.base import Repository
from shipper.core.errors import ShipperError

MINIMUM_VERSION = (0, 17, 0)

ProgressCallback = Callable[[Dict[str, Any]], None]


# ---------------------------------------------------------------- errors


class ResticError(Exception):
    """A restic call failed; the message says what failed and what to do."""

    exit_code = 1

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.detail = detail


class ResticNotFound(ResticError):
    pass


class ResticTooOld(ResticError):
    pass


class RepositoryMissing(ResticError):
    pass


class RepositoryLocked(ResticError):
    pass


class WrongPassword(ResticError):
    pass


class Unreachable(ResticError):
    pass


class CertificateRejected(ResticError):
    pass


class Interrupted(ResticError):
    pass


class NoSnapshotFound(ResticError):
    """`latest` with a tag filter matched no snapshot."""


class RepositoryFull(ResticError):
    pass


class TargetFull(ResticError):
    """A restore ran out of space or inodes where it writes, not in the repository."""


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class Snapshot:
    id: str
    short_id: str
    time: dt.datetime
    hostname: str
    paths: Tuple[str, ...]
    tags: Tuple[str, ...]
    summary: Dict[str, Any]

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> Snapshot:
        return cls(
            id=data["id"],
            short_id=data.get("short_id", data["id"][:8]),
            time=parse_time(data["time"]),
            hostname=data.get("hostname", ""),
            paths=tuple(data.get("paths") or ()),
            tags=tuple(data.get("tags") or ()),
            summary=data.get("summary") or {},
        )

    def tag_value(self, prefix: str) -> Optional[str]:
        """The value of the first tag `prefix:value`, if any."""
        for tag in self.tags:
            if tag.startswith(prefix + ":"):
                return tag[len(prefix) + 1 :]
        return None


@dataclass(frozen=True)
class ItemError:
    """One `error` message of `restic backup --json`: an item restic could not take."""

    item: str
    message: str
    during: str

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> ItemError:
        error = data.get("error")
        message = error.get("message", "") if isinstance(error, dict) else str(error or "")
        return cls(str(data.get("item") or ""), str(message), str(data.get("during") or ""))

    @property
    def vanished(self) -> bool:
        """Deleted between restic's listing and its read (lstat, open, readdir or xattr).

        restic's JSON carries no errno, only Go's text for it; ENOENT's text
        is fixed by the Go runtime, not by restic's wording.
        """
        return self.message.rstrip().endswith(_ENOENT)

    @property
    def label(self) -> str:
        return f"{self.item}: {self.message}" if self.item else self.message


_ENOENT = "no such file or directory"


def backup_item_errors(messages: Sequence[Dict[str, Any]]) -> List[ItemError]:
    """The archiver's item errors; the scanner's are left out.

    restic's scanner walks the tree only to estimate progress: its errors do
    not change the exit code or the snapshot (the archiver reports its own).
    """
    return [
        ItemError.from_json(m)
        for m in messages
        if m.get("message_type") == "error" and m.get("during") != "scan"
    ]


@dataclass
class BackupResult:
    snapshot_id: Optional[str]
    summary: Dict[str, Any] = field(default_factory=dict)
    unreadable: List[str] = field(default_factory=list)
    vanished: List[str] = field(default_factory=list)
    errors: List[ItemError] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.snapshot_id is not None and not self.unreadable


@dataclass
class CheckReport:
    ok: bool
    problems: List[str] = field(default_factory=list)
    summary: Dict[str, Any] = field(default_factory=dict)


def parse_time(text: str) -> dt.datetime:
    """restic's RFC 3339 times carry nanoseconds, which Python 3.9 cannot parse."""
    match = re.match(r"(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", text)
    if not match:
        raise ValueError(f"unexpected restic time {text!r}")
    base, fraction, zone = match.groups()
    micro = (fraction or ".0")[1:7].ljust(6, "0")
    zone = "+00:00" if zone == "Z" else zone
    return dt.datetime.fromisoformat(f"{base}.{micro}{zone}")


# ---------------------------------------------------------------- the repository


class _RunningRestic:
    """One restic process: reads its JSON lines, keeps stderr, maps the exit."""

    def __init__(
        self,
        argv: List[str],
        popen: subprocess.Popen,
        on_message: ProgressCallback,
        network_timeout: int,
    ):
        self.argv = argv
        self.process = popen
        self.on_message = on_message
        self.messages: List[Dict[str, Any]] = []
        self.stderr_lines: List[str] = []
        self.stdout_text: List[str] = []
        self.network_timeout = network_timeout
        self.retrying_since: Optional[float] = None
        self.gave_up = ""
        self.hopeless = ""
        self._stderr_thread = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_thread.start()
        threading.Thread(target=self._watch_retries, daemon=True).start()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            message = _json_line(line)
            if message is not None:
                self.messages.append(message)
                self.on_message(message)
            elif line:
                self._note_retry(line)
                self.stderr_lines.append(line)

    def _note_retry(self, line: str) -> None:
        if "returned error, retrying after" in line:
            if is_disk_full(line) or is_certificate_error(line):
                self.hopeless = line  # retrying cannot make room or change a certificate: stop now
            if self.retrying_since is None:
                self.retrying_since = time.monotonic()
        elif "operation successful after" in line:
            self.retrying_since = None

    def _watch_retries(self) -> None:
        """restic retries a dead backend for 15 minutes; shipper gives up sooner."""
        while self.process.poll() is None:
            if self.hopeless:
                self.gave_up = self.hopeless
                _stop(self.process)
                return
            since = self.retrying_since
            if since is not None and time.monotonic() - since > self.network_timeout:
                self.gave_up = (
                    self.stderr_lines[-1] if self.stderr_lines else "backend not answering"
                )
                # restic would spend its grace retrying to remove its lock over the dead
                # link; the next run clears that stale lock.
                _stop(self.process, grace=2)
                return
            time.sleep(0.5)

    def read_stdout_messages(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            message = _json_line(line)
            if message is not None:
                self.messages.append(message)
                self.on_message(message)
            else:
                self.stdout_text.append(line)

    def wait(self) -> int:
        code = self.process.wait()
        self._stderr_thread.join()
        return code


def _json_line(line: str) -> Optional[Dict[str, Any]]:
    if not line.startswith("{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class Restic:
    """Typed calls on one repository."""

    def __init__(
        self,
        repository: Repository,
        binary: Optional[str] = None,
        progress: Optional[ProgressCallback] = None,
        extra_env: Optional[Dict[str, str]] = None,
        cache_dir: Optional[str] = None,
    ):
        self.repository = repository
        self.binary = binary or os.environ.get("SHIPPER_RESTIC", "restic")
        self.progress = progress or (lambda message: None)
        self.extra_env = dict(extra_env or {})
        self.cache_dir = cache_dir
        self._version: Optional[Tuple[int, int, int]] = None
        self.processes_started = 0

    @classmethod
    def for_config(
        cls,
        cfg: Any,
        progress: Optional[ProgressCallback] = None,
        remote: bool = False,
        destination: Optional[str] = None,
    ) -> Restic:
        """The configured repository; a slave reads its local copy unless `remote`.

        Refuses secret files that others can read.
        """
        problems = secret_problems(cfg)
        if problems:
            raise ShipperError("\n".join(problems))
        repository = destinations.named(cfg, destination, remote).repository()
        return cls(repository, progress=progress, cache_dir=str(cfg.state / "cache"))

    # ------------------------------------------------------------ plumbing

    def _executable(self) -> str:
        found = shutil.which(self.binary)
        if found is None:
            raise ResticNotFound(
                f"restic not found ({self.binary}); install restic {_dotted(MINIMUM_VERSION)} or newer"
            )
        return found

    def _env(self) -> Dict[str, str]:
        # A stray RESTIC_PASSWORD or RESTIC_REPOSITORY must not override the config.
        env = {k: v for k, v in os.environ.items() if not k.startswith("RESTIC_")}
        env.update(self.extra_env)
        if self.cache_dir:
            env["RESTIC_CACHE_DIR"] = self.cache_dir
        env["RESTIC_PROGRESS_FPS"] = "2"
        return env

    def _global_args(self, repo_fd: Optional[int]) -> List[str]:
        args = ["--password-file", self.repository.password_file, "--json"]
        if repo_fd is None:
            args += ["--repo", self.repository.url]
        else:
            args += ["--repository-file", f"/proc/self/fd/{repo_fd}"]
        if self.repository.cacert:
            args += ["--cacert", self.repository.cacert]
        for option in self.repository.options:
            args += ["-o", option]
        return args

    @contextlib.contextmanager
    def _spawn(
        self,
        args: Sequence[str],
        stdin: Any = subprocess.DEVNULL,
        stdout: Any = subprocess.PIPE,
        locking: bool = True,
        env: Optional[Dict[str, str]] = None,
        source: Optional[Repository] = None,
    ) -> Iterator[_RunningRestic]:
        """Start restic; a repository location goes through a pipe when it holds a secret.

        `source` is the repository `restic copy` reads from (--from-repo).
        """
        self._check_version()
        read_fd = _location_pipe(self.repository)
        argv = self._global_args(read_fd)
        fds = [read_fd]
        if source is not None:
            fds.append(_location_pipe(source))
            argv += _from_args(source, fds[-1])
        if locking and self.repository.lock_wait:
            argv += ["--retry-lock", f"{self.repository.lock_wait}s"]
        argv += ["--stuck-request-timeout", f"{self.repository.network_timeout}s"]
        argv += list(args)
        passed = tuple(fd for fd in fds if fd is not None)
        try:
            popen = process.spawn(
                [self._executable(), *argv],
                env={**self._env(), **(env or {}), **self.repository.secret_env()},
                stdin=stdin,
                stdout=stdout,
                stderr=subprocess.PIPE,
                pass_fds=passed,
            )
        finally:
            for fd in passed:
                os.close(fd)
        self.processes_started += 1
        running = _RunningRestic(argv, popen, self.progress, self.repository.network_timeout)
        try:
            yield running
        except BaseException:
            _stop(popen)
            raise

    def _run(
        self, args: Sequence[str], ok_codes: Tuple[int, ...] = (0,), **kw: Any
    ) -> _RunningRestic:
        with self._spawn(args, **kw) as running:
            if running.process.stdout is not None:
                running.read_stdout_messages()
            code = running.wait()
        if code not in ok_codes:
            raise self._error(code, running, args[0])
        running.exit_code = code  # type: ignore[attr-defined]
        return running

    def _json_output(self, args: Sequence[str]) -> Any:
        running = self._run(args)
        text = "\n".join(running.stdout_text)
        for message in running.messages:
            if "message_type" not in message:
                return message
        try:
            return json.loads(text) if text.strip() else None
        except ValueError:
            raise ResticError(
                f"restic {args[0]} printed output shipper cannot read", text[:500]
            ) from None

    # ------------------------------------------------------------ errors

    def _error(self, code: int, running: _RunningRestic, command: str) -> ResticError:
        detail = _error_text(running)
        where = self.repository.display
        if is_disk_full(running.gave_up or detail):
            why = _last_line(running.gave_up or detail)
            if self.repository.full_advice:
                return RepositoryFull(
                    f"no space left at the {self.repository.what} {where} ({why}); "
                    f"{self.repository.full_advice}, then run again",
                    detail,
                )
            return RepositoryFull(
                f"slave disk full: the repository at {where} has no space left ({why}); free "
                "space on the slave (or run `shipper prune` there), then run again",
                detail,
            )
        if running.gave_up and is_certificate_error(running.gave_up):
            return self._certificate_error(running.gave_up, detail)
        if running.gave_up:
            advice = self.repository.unreachable_advice or (
                "check that the slave is up, its receiver runs (`shipper status` on the slave) "
                "and the network between them"
            )
            return Unreachable(
                f"cannot reach the {self.repository.what} at {where}: no answer for "
                f"{self.repository.network_timeout}s ({_last_line(running.gave_up)}); {advice}",
                detail,
            )
        if code == 10:
            return RepositoryMissing(
                f"no restic repository at {where}; create it with `shipper init`", detail
            )
        if code == 11:
            return RepositoryLocked(
                f"the repository {where} is locked by another restic process "
                f"(waited {self.repository.lock_wait}s): {detail or 'locked'}; "
                "if none is running, `shipper unlock` removes stale locks",
                detail,
            )
        if code == 12:
            return WrongPassword(
                f"wrong password for the repository {where}: check the file "
                f"{self.repository.password_file} (repository.password_file)",
                detail,
            )
        if code == 130 or code == -signal.SIGINT:
            return Interrupted(f"restic {command} was interrupted", detail)
        if code < 0:
            return Interrupted(f"restic {command} was killed by signal {-code}", detail)
        lowered = detail.lower()
        if is_certificate_error(detail):
            return self._certificate_error(detail, detail)
        if any(s in lowered for s in _UNREACHABLE_HINTS):
            advice = self.repository.unreachable_advice or (
                "check that the slave is up and its receiver runs (`shipper status` on the slave)"
            )
            return Unreachable(
                f"cannot reach the {self.repository.what} at {where}: {_last_line(detail)}; {advice}",
                detail,
            )
        if "wrong password" in lowered or "no key found" in lowered:
            return WrongPassword(
                f"wrong password for the repository {where}: check {self.repository.password_file}",
                detail,
            )
        if "no snapshot found" in lowered:
            return NoSnapshotFound(f"restic {command}: no snapshot matches", detail)
        if "unauthorized" in lowered or "401" in detail:
            return ResticError(
                f"the receiver at {where} refused shipper's credentials (HTTP 401): "
                "check repository.rest_user and rest_password_file",
                detail,
            )
        if "access denied" in lowered or "signaturedoesnotmatch" in lowered:
            return ResticError(
                f"the {self.repository.what} at {where} refused the credentials "
                f"({_last_line(detail)}); {self.repository.unreachable_advice or 'check them'}",
                detail,
            )
        return ResticError(f"restic {command} failed (exit {code}): {_last_line(detail)}", detail)

    def _certificate_error(self, text: str, detail: str) -> CertificateRejected:
        return CertificateRejected(
            f"the receiver at {self.repository.display} presented a certificate shipper does not "
            f"trust: {_last_line(text)}; check repository.cacert, or re-run `shipper setup master` "
            "with the slave's fingerprint",
            detail,
        )

    # ------------------------------------------------------------ version

    def version(self) -> Tuple[int, int, int]:
        if self._version is None:
            try:
                out = process.run([self._executable(), "version"], text=True, check=True).stdout
            except ResticError:
                raise
            except Exception as exc:
                raise ResticNotFound(f"cannot run restic ({self.binary}): {exc}") from None
            match = re.search(r"restic (\d+)\.(\d+)\.(\d+)", out)
            if not match:
                raise ResticNotFound(f"cannot tell restic's version from {out.strip()!r}")
            self._version = tuple(int(x) for x in match.groups())  # type: ignore[assignment]
        return self._version  # type: ignore[return-value]

    def _check_version(self) -> None:
        version = self.version()
        if version < MINIMUM_VERSION:
            raise ResticTooOld(
                f"restic {_dotted(version)} is installed ({self.binary}); shipper needs "
                f"{_dotted(MINIMUM_VERSION)} or newer (--stdin-from-command, exit codes)"
            )

    # ------------------------------------------------------------ calls

    def exists(self) -> bool:
        try:
            self._run(["cat", "config"], locking=False)
        except RepositoryMissing:
            return False
        return True

    def init(self) -> bool:
        """Create the repository; False when it already exists."""
        if self.exists():
            return False
        self._run(["init"], locking=False)
        return True

    def init_copying(self, source: Repository) -> None:
        """Create the repository with `source`'s chunker parameters, so copies deduplicate."""
        self._run(["init", "--copy-chunker-params"], locking=False, source=source)

    def copy(self, source: Repository, snapshot_ids: Sequence[str]) -> List[str]:
        """Copy these snapshots of `source` here; restic skips ones already copied.

        Returns the short ids (in `source`) of the snapshots restic copied.

        A copy that dies (killed, disk full) leaves its locks in both repositories, and
        they would block the slaves' exclusive prune and check until someone unlocks
        there: remove them now, while restic can still tell they are stale (this host,
        process gone). Not after Unreachable: that would wait for the network again.

        --no-lock drops only the lock on the source (restic always locks the
        destination, so a prune there still waits for the copy): it saves a lock
        file and restic's 200 ms wait after it on every copy. A prune of the source
        that repacks a pack mid-copy makes the copy fail before it saves the
        snapshot whose blobs it lacked, so a set is still whole there or absent,
        and the next run copies it.
        """
        try:
            running = self._run(["copy", "--no-lock", *snapshot_ids], source=source)
        except Unreachable:
            raise
        except ResticError:
            for repository in (self, Restic(source, self.binary, cache_dir=self.cache_dir)):
                with contextlib.suppress(ResticError):
                    repository.unlock_stale()
            raise
        return copied_ids(running.stdout_text)

    def snapshots(self, tags: Optional[Sequence[str]] = None) -> List[Snapshot]:
        args = ["snapshots", "--no-lock"]
        for tag in tags or ():
            args += ["--tag", tag]
        data = self._json_output(args) or []
        return sorted((Snapshot.from_json(s) for s in data), key=lambda s: s.time)

    def backup(
        self,
        paths: Sequence[str],
        tags: Sequence[str],
        host: str,
        excludes: Sequence[str] = (),
        time: Optional[dt.datetime] = None,
    ) -> BackupResult:
        args = ["backup", "--host", host, *_tag_args(tags), *_time_args(time)]
        for pattern in excludes:
            args += ["--exclude", pattern]
        args += ["--", *paths]
        return self._backup(args)

    def backup_command(
        self,
        command: Sequence[str],
        filename: str,
        tags: Sequence[str],
        host: str,
        time: Optional[dt.datetime] = None,
        env: Optional[Dict[str, str]] = None,
    ) -> BackupResult:
        """Store a command's stdout; a failing command makes no snapshot (exit 1).

        The command inherits restic's environment plus `env`, which must hold
        no secret (pass file paths, not passwords).
        """
        args = ["backup", "--host", host, *_tag_args(tags), *_time_args(time)]
        args += ["--stdin-filename", filename, "--stdin-from-command", "--", *command]
        return self._backup(args, env)

    def backup_bytes(
        self,
        data: bytes,
        filename: str,
        tags: Sequence[str],
        host: str,
        time: Optional[dt.datetime] = None,
    ) -> BackupResult:
        """Store a small in-memory document (written whole before restic reads it)."""
        args = ["backup", "--host", host, *_tag_args(tags), *_time_args(time)]
        args += ["--stdin", "--stdin-filename", filename]
        with self._spawn(args, stdin=subprocess.PIPE) as running:
            assert running.process.stdin is not None
            writer = threading.Thread(target=_write_and_close, args=(running.process.stdin, data))
            writer.start()
            running.read_stdout_messages()
            writer.join()
            code = running.wait()
        return self._backup_result(code, running)

    def _backup(self, args: List[str], env: Optional[Dict[str, str]] = None) -> BackupResult:
        with self._spawn(args, env=env) as running:
            running.read_stdout_messages()
            code = running.wait()
        return self._backup_result(code, running)

    def _backup_result(self, code: int, running: _RunningRestic) -> BackupResult:
        if code not in (0, 3):
            raise self._error(code, running, "backup")
        summary = next((m for m in running.messages if m.get("message_type") == "summary"), {})
        errors = backup_item_errors(running.messages)
        vanished = [e.item or e.message for e in errors if e.vanished]
        unreadable = [e.item or e.message for e in errors if not e.vanished]
        if code == 3 and not errors:
            unreadable = [_last_line(_error_text(running)) or "some source files were unreadable"]
        snapshot_id = summary.get("snapshot_id")
        if not snapshot_id:
            raise ResticError(
                "restic backup ended without naming its snapshot", _error_text(running)
            )
        return BackupResult(snapshot_id, summary, unreadable, vanished, errors)

    def restore(
        self,
        snapshot: str,
        target: str,
        includes: Sequence[str] = (),
        excludes: Sequence[str] = (),
        delete: bool = False,
        dry_run: bool = False,
        overwrite: Optional[str] = None,
        sparse: bool = True,
        tags: Sequence[str] = (),
    ) -> Dict[str, Any]:
        """Restore in place; sparse files stay sparse (holes are not written as zeros).

        With `tags`, snapshot `latest` is the newest snapshot carrying all of them.
        """
        try:
            running = self._restore(
                snapshot,
                target,
                includes,
                excludes,
                delete,
                dry_run,
                overwrite,
                sparse=sparse,
                tags=tags,
            )
        except RepositoryFull as exc:
            raise self._target_full(exc, target) from None
        return next((m for m in running.messages if m.get("message_type") == "summary"), {})

    def _target_full(self, exc: RepositoryFull, target: str) -> ResticError:
        """restore writes only under target: ENOSPC there is that disk's, unless restic names the repository."""
        if self.repository.url in exc.detail:
            return exc
        # restic's last line only counts the errors ("There were 176 errors"): show the first.
        lines = [line.strip() for line in exc.detail.splitlines() if is_disk_full(line)]
        line = lines[0] if lines else _last_line(exc.detail) or str(exc)
        return TargetFull(
            f"disk full where the files are restored: no space or no inodes left on the "
            f"filesystem of {target} ({line}); free space or inodes there (`df -h {target}`, "
            f"`df -i {target}`), then run again",
            exc.detail,
        )

    def restore_preview(
        self,
        snapshot: str,
        target: str,
        includes: Sequence[str] = (),
        delete: bool = False,
        overwrite: str = "if-changed",
        tags: Sequence[str] = (),
    ) -> Tuple[Dict[str, Any], List[Dict[str, Any]], List[str]]:
        """What a restore would do (--dry-run): the summary, one action per item, item errors.

        Items are restic's verbose_status messages: action restored, updated,
        unchanged or deleted; deleted items name the target path, the others
        the path in the snapshot. `if-changed` judges existing files by size
        and time instead of reading them. Errors about single items (restic
        exits 1 but finishes) are returned, not raised.
        """
        running = self._restore(
            snapshot, target, includes, (), delete, True, overwrite, (0, 1), tags=tags
        )
        summary = next((m for m in running.messages if m.get("message_type") == "summary"), None)
        if summary is None:
            raise self._error(1, running, "restore")
        items = [m for m in running.messages if m.get("message_type") == "verbose_status"]
        errors = [
            f"{m.get('item', '')}: {m.get('error', {}).get('message', '?')}"
            for m in running.messages
            if m.get("message_type") == "error"
        ]
        return summary, items, errors

    def _restore(
        self,
        snapshot: str,
        target: str,
        includes: Sequence[str],
        excludes: Sequence[str],
        delete: bool,
        dry_run: bool,
        overwrite: Optional[str],
        ok_codes: Tuple[int, ...] = (0,),
        sparse: bool = False,
        tags: Sequence[str] = (),
    ) -> _RunningRestic:
        args = ["restore", snapshot, "--target", target]
        if tags:
            args += ["--tag", ",".join(tags)]
        if sparse:
            args.append("--sparse")
        for path in includes:
            args += ["--include", path]
        for path in excludes:
            args += ["--exclude", path]
        if delete:
            args.append("--delete")
        if overwrite:
            args += ["--overwrite", overwrite]
        if dry_run:
            args += ["--dry-run", "--verbose=2"]
        return self._run(args, ok_codes)

    @contextlib.contextmanager
    def dump(
        self, snapshot: str, path: str, tags: Sequence[str] = (), lock: bool = True
    ) -> Iterator[IO[bytes]]:
        """Stream one file of a snapshot; raises after the stream if restic failed.

        With `tags`, snapshot `latest` is the newest snapshot carrying all of them.
        `lock=False` skips restic's shared lock (and its 200 ms wait): for small reads
        whose failure under a concurrent prune is harmless.
        """
        args = ["dump", snapshot, path, *(["--tag", ",".join(tags)] if tags else [])]
        args += [] if lock else ["--no-lock"]
        with self._spawn(args, stdout=subprocess.PIPE) as running:
            assert running.process.stdout is not None
            yield running.process.stdout
            running.process.stdout.close()
            code = running.wait()
        if code != 0:
            raise self._error(code, running, "dump")

    def read_file(
        self, snapshot: str, path: str, tags: Sequence[str] = (), lock: bool = True
    ) -> bytes:
        with self.dump(snapshot, path, tags, lock) as stream:
            return stream.read()

    def ls(self, snapshot: str, paths: Sequence[str] = ()) -> List[Dict[str, Any]]:
        running = self._run(["ls", "--no-lock", snapshot, *paths])
        return [m for m in running.messages if m.get("struct_type") == "node"]

    def diff(self, first: str, second: str, metadata: bool = False) -> List[Dict[str, Any]]:
        """restic's change messages (path, modifier +, -, M, T, U) and its statistics."""
        args = ["diff", "--no-lock", *(["--metadata"] if metadata else []), first, second]
        return self._run(args).messages

    def forget(self, snapshot_ids: Sequence[str], prune: bool = False) -> None:
        if snapshot_ids:
            self._run(["forget", *(["--prune"] if prune else []), "--", *snapshot_ids])

    def prune(self, max_unused: Optional[str] = None) -> None:
        """`max_unused`: restic's --max-unused ("unlimited": never repack, delete unused packs)."""
        self._run(["prune", *(["--max-unused", max_unused] if max_unused else [])])

    def check(self, read_data_subset: Optional[str] = None) -> Tuple[bool, str]:
        args = ["check"] + (["--read-data-subset", read_data_subset] if read_data_subset else [])
        with self._spawn(args) as running:
            running.read_stdout_messages()
            code = running.wait()
        text = "\n".join(running.stdout_text + running.stderr_lines)
        if code in (10, 11, 12) or code < 0:
            raise self._error(code, running, "check")
        return code == 0, text

    def check_report(self, read_data_subset: Optional[str] = None) -> CheckReport:
        """`restic check`: every problem restic names, as text, and its summary."""
        args = ["check"] + (["--read-data-subset", read_data_subset] if read_data_subset else [])
        with self._spawn(args) as running:
            running.read_stdout_messages()
            code = running.wait()
        if code in (10, 11, 12) or code < 0:
            raise self._error(code, running, "check")
        summary = next((m for m in running.messages if m.get("message_type") == "summary"), {})
        problems = [
            str(m.get("message", "")).strip()
            for m in running.messages
            if m.get("message_type") in ("error", "exit_error")
            and str(m.get("message", "")).strip()
        ]
        if code != 0 and not problems:
            problems = [line for line in running.stderr_lines if line.strip()] or [
                f"restic check exited {code}"
            ]
        return CheckReport(code == 0, problems, summary)

    def snapshots_using_packs(self, pack_ids: Sequence[str]) -> List[str]:
        """The ids of the snapshots that hold blobs of these packs (`restic find --pack`)."""
        if not pack_ids:
            return []
        found = self._json_output(["find", "--pack", *pack_ids]) or []
        return sorted({str(item["snapshot"]) for item in found if item.get("snapshot")})

    def pack_ids(self) -> List[str]:
        """Every pack file in the repository (`restic list packs`)."""
        running = self._run(["list", "packs", "--no-lock"], locking=False)
        return [line.strip() for line in running.stdout_text if line.strip()]

    def unlock_stale(self) -> None:
        """Remove only stale locks (restic's own judgement); never --remove-all."""
        self._run(["unlock"], locking=False)


def copied_ids(lines: Sequence[str]) -> List[str]:
    """The source snapshots `restic copy` copied: "snapshot ID of ..." then "copy started"
    (a skipped one, named only with --verbose=2, is followed by "skipping")."""
    found = []
    for line, after in zip(lines, [*lines[1:], ""]):
        match = re.match(r"snapshot ([0-9a-f]+) of ", line.strip())
        if match and "copy started" in after:
            found.append(match.group(1))
    return found


def is_disk_full(text: str) -> bool:
    """restic's words for a full repository disk: local ENOSPC, rest-server's HTTP 507."""
    lowered = text.lower()
    return any(hint in lowered for hint in _FULL_HINTS)


def is_certificate_error(text: str) -> bool:
    lowered = text.lower()
    return "x509" in lowered or "certificate" in lowered


_FULL_HINTS = ("no space left", "insufficient storage", "(507)", "disk quota exceeded")

_UNREACHABLE_HINTS = (
    "connection refused",
    "no route to host",
    "network is unreachable",
    "no such host",
    "i/o timeout",
    "timeout",
    "connection reset",
    "eof",
    "dial tcp",
)


def _location_pipe(repository: Repository) -> Optional[int]:
    """A pipe holding the location when it has a secret in it (read end), else None."""
    location = repository.location()
    if location == repository.url:
        return None
    read_fd, write_fd = os.pipe()
    os.write(write_fd, location.encode() + b"\n")
    os.close(write_fd)
    return read_fd


def _from_args(source: Repository, fd: Optional[int]) -> List[str]:
    args = ["--from-password-file", source.password_file]
    if fd is None:
        args += ["--from-repo", source.url]
    else:
        args += ["--from-repository-file", f"/proc/self/fd/{fd}"]
    if source.cacert:
        # restic has one --cacert for both ends: the pinned certificate of the source.
        args += ["--cacert", source.cacert]
    return args


def _stop(popen: subprocess.Popen, grace: float = 10) -> None:
    if popen.poll() is None:
        popen.terminate()
        try:
            popen.wait(grace)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()


def _write_and_close(stream: IO[bytes], data: bytes) -> None:
    try:
        stream.write(data)
    except BrokenPipeError:
        pass
    finally:
        with contextlib.suppress(BrokenPipeError):
            stream.close()


def _error_text(running: _RunningRestic) -> str:
    parts = []
    for message in running.messages:
        kind = message.get("message_type")
        if kind == "exit_error":
            parts.append(str(message.get("message", "")))
        elif kind == "error":
            err = message.get("error", {})
            parts.append(f"{message.get('item', '')}: {err.get('message', err)}")
    parts.extend(running.stderr_lines)
    return "\n".join(p for p in parts if p).strip()


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.lower().startswith("fatal:"):
            return line[len("fatal:") :].strip()
    return lines[-1] if lines else ""


def _tag_args(tags: Sequence[str]) -> List[str]:
    out: List[str] = []
    for tag in tags:
        if "," in tag:
            raise ValueError(f"a restic tag cannot hold a comma: {tag!r}")
        out += ["--tag", tag]
    return out


def _time_args(time: Optional[dt.datetime]) -> List[str]:
    if time is None:
        return []
    local_time = time.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    return ["--time", local_time]


def _dotted(version: Sequence[int]) -> str:
    return ".".join(str(x) for x in version)


def installed_version(binary: Optional[str] = None) -> str:
    """The installed restic's version ("0.18.0"): no repository is opened."""
    return _dotted(Restic(None, binary=binary).version())  # type: ignore[arg-type]
