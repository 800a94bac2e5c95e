"""The one place that reads shipper's configuration.

The YAML file is validated against schema.yaml (the single source of truth for
keys, types and defaults), every problem is reported with file, line and key,
and the result is a tree of typed, frozen dataclasses: no code outside this
module reads the configuration by string keys or knows a default.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import os
import re
import socket
import stat
import typing
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import yaml

# jsonschema and croniter are imported where they are used: together they
# cost more start-up time than a whole unchanged `restic backup` may add, and
# a config that validated before is read from the cache without them.

DEFAULT_PATH = "/etc/shipper/shipper.yml"


class ConfigError(Exception):
    """A configuration that cannot be used; str() lists every problem."""

    def __init__(self, problems: List[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


# ---------------------------------------------------------------- the typed tree


@dataclass(frozen=True)
class Repository:
    url: str
    password_file: str
    cacert: Optional[str]
    rest_user: Optional[str]
    rest_password_file: Optional[str]
    local_path: Optional[str]
    lock_wait: int
    network_timeout: int


@dataclass(frozen=True)
class DestinationRetention:
    """A destination's own retention; a key left out is the top-level retention's."""

    keep_within: Optional[str] = None
    hourly: Optional[int] = None
    daily: Optional[int] = None
    weekly: Optional[int] = None


@dataclass(frozen=True)
class DestinationConfig:
    name: str
    kind: str
    url: Optional[str] = None
    cacert: Optional[str] = None
    rest_user: Optional[str] = None
    rest_password_file: Optional[str] = None
    endpoint: Optional[str] = None
    bucket: Optional[str] = None
    region: Optional[str] = None
    access_key_id_file: Optional[str] = None
    secret_access_key_file: Optional[str] = None
    catch_up: Optional[int] = None
    retention: Optional[DestinationRetention] = None
    object_lock_days: Optional[int] = None

    def secret_files(self) -> List[Tuple[str, str]]:
        keys = ("rest_password_file", "access_key_id_file", "secret_access_key_file")
        return [(key, getattr(self, key)) for key in keys if getattr(self, key)]


@dataclass(frozen=True)
class MariaDBServer:
    socket: Optional[str]
    host: Optional[str]
    port: int
    user: str
    password_file: Optional[str]
    databases: List[str]
    exclude: List[str]
    dump_options: List[str] = dataclasses.field(default_factory=list)


@dataclass(frozen=True)
class PostgreSQLServer:
    host: str
    port: int
    user: str
    password_file: Optional[str]
    databases: List[str]
    exclude: List[str]
    dump_options: List[str] = dataclasses.field(default_factory=list)


@dataclass(frozen=True)
class Databases:
    enabled: bool
    parallel: int
    mariadb: Optional[List[MariaDBServer]]
    postgresql: Optional[List[PostgreSQLServer]]


@dataclass(frozen=True)
class Hooks:
    dirs: List[str]
    timeout: int


@dataclass(frozen=True)
class Receiver:
    listen: str
    repo_dir: str
    tls_cert: str
    tls_key: str
    htpasswd: str


@dataclass(frozen=True)
class Promote:
    services: List[str]


@dataclass(frozen=True)
class Standby:
    enabled: bool
    root: str
    hold: List[str] = dataclasses.field(default_factory=list)


@dataclass(frozen=True)
class Retention:
    keep_within: str
    hourly: int
    daily: int
    weekly: int


@dataclass(frozen=True)
class Check:
    read_data_subset: Optional[str]


@dataclass(frozen=True)
class Notify:
    max_age: Optional[int]
    email_to: List[str]
    email_from: Optional[str]
    smtp_host: Optional[str]
    sendmail: str
    repeat_after: Optional[int]
    webhook_start: Optional[str]
    webhook_success: Optional[str]
    webhook_failure: Optional[str]
    metrics_file: Optional[str]


@dataclass(frozen=True)
class Config:
    role: str
    enabled: bool
    schedule: str
    host: Optional[str]
    state_dir: str
    repository: Repository
    paths: List[str]
    exclude: List[str]
    volatile: List[str]
    machine_specific: List[str]
    databases: Databases
    hooks: Hooks
    receiver: Receiver
    promote: Promote
    standby: Standby
    retention: Retention
    check: Check
    notify: Notify
    source: str = "<defaults>"
    destinations: List[DestinationConfig] = dataclasses.field(default_factory=list)

    @property
    def hostname(self) -> str:
        return self.host or socket.gethostname()

    @property
    def state(self) -> Path:
        return Path(self.state_dir)


# ---------------------------------------------------------------- the schema


@lru_cache(maxsize=1)
def schema() -> Dict[str, Any]:
    text = resources.files("shipper.core").joinpath("schema.yaml").read_text()
    return yaml.safe_load(text)


_CRON_FIELD_SPAN = (60, 24, 31, 12, 8)  # minute, hour, day, month, weekday


def _check_cron(value: object) -> bool:
    from croniter import croniter

    if not isinstance(value, str):
        return True
    fields = value.split()
    if len(fields) != 5 or not croniter.is_valid(value):
        return False
    # croniter accepts steps wider than their field ("*/61"), which never
    # mean what the operator wanted.
    for field, span in zip(fields, _CRON_FIELD_SPAN):
        for item in field.split(","):
            _, _, step = item.partition("/")
            if step and (not step.isdigit() or not 0 < int(step) <= span):
                return False
    return True


def _validator() -> Any:
    import jsonschema

    formats = jsonschema.FormatChecker()
    formats.checks("cron")(_check_cron)
    return jsonschema.Draft202012Validator(schema(), format_checker=formats)


def _resolve(node: Dict[str, Any]) -> Dict[str, Any]:
    ref = node.get("$ref")
    if ref:
        name = ref.rsplit("/", 1)[-1]
        return schema()["$defs"][name]
    return node


def apply_defaults(data: Any, node: Dict[str, Any]) -> Any:
    """Fill every default the schema names into a validated document."""
    node = _resolve(node)
    if isinstance(data, dict):
        for key, prop in node.get("properties", {}).items():
            prop = _resolve(prop)
            if key not in data and "default" in prop:
                data[key] = copy.deepcopy(prop["default"])
            if key in data:
                data[key] = apply_defaults(data[key], prop)
    elif isinstance(data, list) and "items" in node:
        return [apply_defaults(item, node["items"]) for item in data]
    return data


# ---------------------------------------------------------------- YAML with lines


def _compose(text: str, source: str) -> Tuple[Any, Optional[yaml.Node]]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError([f"{source}{line}: not valid YAML: {problem}"]) from None
    return data, node


def _node_at(root: Optional[yaml.Node], path: typing.Sequence[Any]) -> Optional[yaml.Node]:
    node = root
    for part in path:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            node = node.value[part] if part < len(node.value) else None
        else:
            return node
        if node is None:
            return None
    return node


def _key_node(root: Optional[yaml.Node], path: typing.Sequence[Any], key: str):
    parent = _node_at(root, path)
    if isinstance(parent, yaml.MappingNode):
        return next((k for k, _ in parent.value if k.value == key), parent)
    return parent


def _line(node: Optional[yaml.Node]) -> str:
    return f":{node.start_mark.line + 1}" if node is not None else ""


def _dotted(path: typing.Sequence[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _known_keys(error: Any) -> List[str]:
    return sorted(error.schema.get("properties", {}))


def _describe(error: Any, root, source: str) -> List[str]:
    path = list(error.absolute_path)
    if error.validator == "additionalProperties":
        known = _known_keys(error)
        extra = sorted(set(error.instance) - set(known))
        out = []
        for key in extra:
            hint = difflib.get_close_matches(str(key), known, n=1)
            hint_text = (
                f"; did you mean '{hint[0]}'?" if hint else f"; known keys: {', '.join(known)}"
            )
            where = _line(_key_node(root, path, key))
            out.append(f"{source}{where}: {_dotted(path + [key])}: unknown key{hint_text}")
        return out
    node = _node_at(root, path)
    if error.validator == "required":
        return [f"{source}{_line(node)}: {_dotted(path)}: {error.message}"]
    if error.validator == "format" and error.validator_value == "cron":
        message = (
            f"{error.instance!r} is not a valid cron expression "
            "(five fields: minute hour day month weekday)"
        )
    elif error.validator == "pattern" and error.validator_value == "^/":
        message = f"{error.instance!r} must be an absolute path"
    elif error.validator == "pattern" and error.schema.get("description"):
        # The schema's own words for what fits, not the regular expression.
        message = f"{error.instance!r} does not fit: {error.schema['description']}"
    else:
        message = error.message
    return [f"{source}{_line(node)}: {_dotted(path)}: {message}"]


# ---------------------------------------------------------------- building


def _build(cls: type, data: Any) -> Any:
    hints = typing.get_type_hints(cls)
    values = {}
    for field in dataclasses.fields(cls):
        if field.name not in data:
            continue
        values[field.name] = _convert(hints[field.name], data[field.name])
    return cls(**values)


def _convert(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union:
        return _convert(next(a for a in args if a is not type(None)), value)
    if origin in (list, List):
        return [_convert(args[0], item) for item in value]
    if dataclasses.is_dataclass(hint):
        return _build(hint, value)
    return value


def _semantic_problems(data: Dict[str, Any], root, source: str) -> List[str]:
    """Checks JSON Schema cannot express."""
    problems = []
    schedule = data.get("schedule")
    if isinstance(schedule, str) and _check_cron(schedule) and not _fires(schedule):
        node = _node_at(root, ["schedule"])
        problems.append(f"{source}{_line(node)}: schedule: {schedule!r} never fires")
    problems += _dump_option_problems(data, root, source)
    problems += _destination_problems(data, root, source)
    return problems


# What each destination kind needs besides name and kind.
DESTINATION_KEYS = {
    "slave": ["url"],
    "local": ["url"],
    "s3": ["endpoint", "bucket", "access_key_id_file", "secret_access_key_file"],
}


def _destination_problems(data: Dict[str, Any], root, source: str) -> List[str]:
    problems, seen = [], {"primary"}
    for index, entry in enumerate(data.get("destinations") or []):
        where = f"{source}{_line(_node_at(root, ['destinations', index]))}: destinations[{index}]"
        for key in DESTINATION_KEYS.get(entry.get("kind"), []):
            if not entry.get(key):
                problems.append(f"{where}: a {entry['kind']} destination needs {key}")
        if entry.get("object_lock_days") and entry.get("kind") != "s3":
            problems.append(f"{where}: object_lock_days applies to s3 destinations only")
        if entry.get("name") in seen:
            problems.append(
                f"{where}: name {entry.get('name')!r} is used twice (primary is the repository)"
            )
        seen.add(entry.get("name"))
    return problems


# Dump tool options shipper sets itself, or that would break what it relies on: the dump
# on stdout, as SQL it loads, ending with the tool's trailer. Per engine: name -> why.
_CONNECTION = "shipper connects with the server entry's own keys and password_file"
_OUTPUT = "the dump must go to stdout as SQL that shipper loads and checks for completeness"
REFUSED_DUMP_OPTIONS = {
    "mariadb": {
        **dict.fromkeys(
            ["--host", "--port", "--socket", "--protocol", "--user", "--password"], _CONNECTION
        ),
        **dict.fromkeys(
            ["--defaults-file", "--defaults-extra-file", "--defaults-group-suffix"], _CONNECTION
        ),
        **dict.fromkeys(["--no-defaults", "--login-path", "--print-defaults"], _CONNECTION),
        **dict.fromkeys(["--result-file", "--tab", "--xml", "--help", "--version"], _OUTPUT),
        "--compact": "it drops the '-- Dump completed' line that proves a dump complete",
        "--skip-comments": "it drops the '-- Dump completed' line that proves a dump complete",
        "--databases": "shipper dumps one database per stream and loads it under any name",
        "--all-databases": "shipper dumps one database per stream and loads it under any name",
        "--default-character-set": "shipper dumps and loads in utf8mb4",
    },
    "postgresql": {
        **dict.fromkeys(
            ["--host", "--port", "--username", "--dbname", "--password", "--no-password"],
            _CONNECTION,
        ),
        **dict.fromkeys(["--file", "--format", "--help", "--version"], _OUTPUT),
    },
}


def _dump_option_problems(data: Dict[str, Any], root, source: str) -> List[str]:
    """Each server's dump_options: long options only, none that shipper must own."""
    problems = []
    databases = data.get("databases") if isinstance(data.get("databases"), dict) else {}
    for engine, refused in REFUSED_DUMP_OPTIONS.items():
        servers = databases.get(engine)
        for index, server in enumerate(servers if isinstance(servers, list) else []):
            options = server.get("dump_options") if isinstance(server, dict) else None
            for item, option in enumerate(options if isinstance(options, list) else []):
                path = ["databases", engine, index, "dump_options", item]
                why = _dump_option_refusal(option, refused)
                if why:
                    where = f"{source}{_line(_node_at(root, path))}: {_dotted(path)}"
                    problems.append(f"{where}: {option!r} is refused: {why}")
    return problems


def _dump_option_refusal(option: Any, refused: Dict[str, str]) -> Optional[str]:
    """Why an option is refused, or None. Both tools take an option's unambiguous prefix,
    and mariadb-dump its loose-/enable-/disable-/skip- forms: those are seen through."""
    if not isinstance(option, str) or not re.match(r"^--[A-Za-z0-9]", option):
        return "write each option in its long form, --name or --name=value, one per item"
    name, _, value = option.partition("=")
    name = re.sub(r"^--(loose-)?", "--", name.replace("_", "-"))
    name = re.sub(r"^--(disable|skip)-", "--skip-", re.sub(r"^--enable-", "--", name))
    if name == "--comments" and value.lower() in ("0", "false", "off"):
        name = "--skip-comments"
    for refused_name, why in refused.items():
        if refused_name.startswith(name) and len(name) >= 4:
            return why
    return None


def _fires(expression: str) -> bool:
    try:
        from croniter import croniter

        croniter(expression).get_next()
    except Exception:  # croniter raises several types for impossible dates
        return False
    return True


def parse(text: str, source: str = "<string>") -> Config:
    """Validate and build a Config from YAML text; raises ConfigError."""
    return _from_data(validated(text, source), source)


def _from_data(data: Dict[str, Any], source: str) -> Config:
    return dataclasses.replace(_build(Config, data), source=source)


def validated(text: str, source: str) -> Dict[str, Any]:
    """The document with every default filled in; raises ConfigError."""
    data, root = _compose(text, source)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            [f"{source}:1: the file must be a mapping of keys, not {type(data).__name__}"]
        )
    validator = _validator()
    problems: List[str] = []
    for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        problems.extend(_describe(error, root, source))
    problems.extend(_semantic_problems(data, root, source))
    if problems:
        raise ConfigError(problems)
    return apply_defaults(data, schema())


def config_path(explicit: Optional[str] = None) -> str:
    return explicit or os.environ.get("SHIPPER_CONFIG") or DEFAULT_PATH


def load(path: Optional[str] = None) -> Config:
    """Read the config file named by -c, $SHIPPER_CONFIG or the default path."""
    path = config_path(path)
    try:
        text = _read_regular(path)
    except FileNotFoundError:
        raise ConfigError(
            [
                f"{path}: no such config file; create it (`shipper config generate > {path}`) "
                "or name another with -c/--config"
            ]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read the config file: {exc}"]) from None
    return _from_data(_cached_validation(text, path), path)


MAX_CONFIG_BYTES = 1 << 20


def _read_regular(path: str) -> str:
    """The file's text; a FIFO, a device or a huge file is refused instead of read for ever."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(
                [f"{path}: not a regular file; name the config file with -c/--config"]
            )
        if info.st_size > MAX_CONFIG_BYTES:
            raise ConfigError([f"{path}: {info.st_size} bytes is too large for a config file"])
        with os.fdopen(os.dup(fd), "rb") as handle:
            return handle.read(MAX_CONFIG_BYTES + 1).decode()
    finally:
        os.close(fd)


def _cached_validation(text: str, path: str) -> Dict[str, Any]:
    """Validate once per content: a run reads the result instead of loading jsonschema.

    The cache holds what the config file holds (paths and settings, no
    secret), keyed by the file's text and the schema's, in a root-only folder.
    """
    schema_text = resources.files("shipper.core").joinpath("schema.yaml").read_bytes()
    key = hashlib.sha256(schema_text + b"\0" + text.encode()).hexdigest()
    cache = _cache_dir() / (
        hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:32] + ".json"
    )
    try:
        stored = json.loads(cache.read_text())
        if stored.get("key") == key:
            return stored["data"]
    except (OSError, ValueError, AttributeError):
        pass
    data = validated(text, path)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"key": key, "data": data}, handle)
        os.replace(tmp, cache)
    except OSError:
        pass  # a read-only cache only costs time
    return data


def _cache_dir() -> Path:
    explicit = os.environ.get("SHIPPER_CACHE_DIR")
    if explicit:
        return Path(explicit) / "config"
    if os.geteuid() == 0:
        return Path("/var/cache/shipper/config")
    return Path.home() / ".cache" / "shipper" / "config"


def secret_problems(cfg: Config) -> List[str]:
    """Secret files that are missing or readable by others than their owner."""
    problems = []
    for key, path in (
        ("repository.password_file", cfg.repository.password_file),
        ("repository.rest_password_file", cfg.repository.rest_password_file),
    ):
        if path:
            problems.extend(check_secret_file(path, f"{cfg.source}: {key}"))
    for dest in cfg.destinations:
        for key, path in dest.secret_files():
            problems.extend(
                check_secret_file(path, f"{cfg.source}: destinations.{dest.name}.{key}")
            )
    return problems


def check_secret_file(path: str, label: str) -> List[str]:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return [f"{label}: {path} does not exist"]
    except OSError as exc:
        return [f"{label}: cannot read {path}: {exc.strerror}"]
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return [
            f"{label}: {path} is readable by others (mode {stat.S_IMODE(mode):o}); run: chmod 600 {path}"
        ]
    return []


def read_secret(path: str) -> str:
    """A secret file's first line (restic's convention)."""
    with open(path) as handle:
        return handle.readline().rstrip("\r\n")


# ---------------------------------------------------------------- generation


def generate() -> str:
    """A commented config file made from the schema."""
    lines = ["# shipper configuration; generated from the schema (shipper config generate).", ""]
    _generate_object(schema(), 0, lines)
    return "\n".join(lines) + "\n"


def _generate_object(node: Dict[str, Any], indent: int, lines: List[str]) -> None:
    pad = "  " * indent
    required = set(node.get("required", []))
    for key, prop in node.get("properties", {}).items():
        prop = _resolve(prop)
        if prop.get("description"):
            lines.append(f"{pad}# {prop['description']}")
        if "enum" in prop:
            lines.append(f"{pad}# one of: {', '.join(map(str, prop['enum']))}")
        if prop.get("type") == "object" and "properties" in prop:
            lines.append(f"{pad}{key}:")
            _generate_object(prop, indent + 1, lines)
        elif key in required or "default" not in prop:
            example = "rest:https://slave.example:8000/master/" if key == "url" else "..."
            lines.append(f"{pad}{key}: {example}")
        else:
            lines.append(f"{pad}{key}: {json.dumps(prop['default'])}")
        if indent == 0:
            lines.append("")
