"""Database engines: one module per engine, the shared interface in base.py.

`engines_from_config(cfg.databases)` gives one Engine per configured server
(a local server on its default socket when the engine's list is null);
`detect_local()` says what that detection finds, for `shipper config validate`.

The engine modules are imported when first needed, so that
`python -m shipper.databases.mariadb` (a dump job's command) runs cleanly.
"""

from __future__ import annotations

import importlib
import os
import stat
from typing import Any, List, Optional, Sequence

from shipper.core import config

from .base import DatabaseError, DumpJob, Engine, wrap_with_hash
from .registry import KINDS

__all__ = [
    "DatabaseError",
    "DumpJob",
    "Engine",
    "MariaDB",
    "PostgreSQL",
    "detect_local",
    "engines_from_config",
    "wrap_with_hash",
]

ENGINES = {name: kind.class_name for name, kind in KINDS.items()}  # module: class
SERVER_TYPES = {name: kind.server_type for name, kind in KINDS.items()}


def __getattr__(name: str) -> Any:
    for module, cls in ENGINES.items():
        if name == cls:
            return getattr(importlib.import_module(f".{module}", __name__), cls)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def engines_from_config(databases: config.Databases) -> List[Engine]:
    """One Engine per configured server; [] when dumps are disabled.

    A second server of one engine gets its own label ("mariadb2"), so part
    and stream names stay unique: "mariadb2:app", "mariadb2-app.sql".
    """
    if not databases.enabled:
        return []
    engines: List[Engine] = []
    for name, cls_name in ENGINES.items():
        servers = getattr(databases, name)
        if servers is None:
            servers = [s for s in [default_server(name)] if local_socket(name, s)]
        cls = __getattr__(cls_name)
        for index, server in enumerate(servers):
            engines.append(cls(server, label=name if index == 0 else f"{name}{index + 1}"))
    return engines


def default_server(name: str) -> Any:
    """The schema's defaults for one engine's server (its default socket, user...)."""
    values = config.apply_defaults({}, {"$ref": f"#/$defs/{name}_server"})
    return SERVER_TYPES[name](**values)


def local_socket(name: str, server: Any) -> Optional[str]:
    """The server's Unix socket when it exists (a server listens there), else None."""
    path = server.socket if name == "mariadb" else pg_socket(server)
    try:
        return path if path and stat.S_ISSOCK(os.stat(path).st_mode) else None
    except OSError:
        return None


def pg_socket(server: Any) -> str:
    """Where a PostgreSQL server whose host is a folder listens."""
    return os.path.join(server.host, f".s.PGSQL.{server.port}")


def detect_local(names: Optional[Sequence[str]] = None) -> List[str]:
    """What autodetection finds on this machine, one line per engine (default: all)."""
    found = []
    for name in ENGINES if names is None else names:
        server = default_server(name)
        socket = local_socket(name, server)
        if socket:
            found.append(f"{name}: local server on {socket} (it will be dumped)")
        else:
            where = server.socket if name == "mariadb" else pg_socket(server)
            found.append(f"{name}: no local server (no socket at {where}): nothing to dump")
    return found
