"""The engine registry: everything shipper knows about an engine, by its config key.

To add an engine: a module here with its Engine subclass (base.py is the
shared shape), its server's settings in core/schema.yaml ($defs/<name>_server)
and core/config.py (the server dataclass), and one line in KINDS. Nothing
outside shipper/databases/ names an engine.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict

from shipper.core import config


def _major_postgresql(version: str) -> str:
    """PostgreSQL 10 and later: the first number (15.4 -> 15); before: two (9.6.3 -> 9.6)."""
    numbers = re.findall(r"\d+", version)
    if numbers and int(numbers[0]) >= 10:
        return numbers[0]
    return ".".join(numbers[:2])


def _major_two_numbers(version: str) -> str:
    """MariaDB: the first two numbers (10.11.6-MariaDB -> 10.11)."""
    return ".".join(re.findall(r"\d+", version)[:2])


@dataclass(frozen=True)
class EngineKind:
    name: str  # the key under `databases:` and the module in shipper/databases/
    class_name: str
    server_type: type  # the config dataclass of one server
    major_version: Callable[[str], str]  # a server's version string -> its major version

    def engine_class(self) -> Any:
        """Imported on use: the drivers are loaded only when databases are."""
        module = importlib.import_module(f"shipper.databases.{self.name}")
        return getattr(module, self.class_name)

    def schema_fragment(self) -> Dict[str, Any]:
        return config.schema()["$defs"][f"{self.name}_server"]


KINDS: Dict[str, EngineKind] = {
    "mariadb": EngineKind("mariadb", "MariaDB", config.MariaDBServer, _major_two_numbers),
    "postgresql": EngineKind(
        "postgresql", "PostgreSQL", config.PostgreSQLServer, _major_postgresql
    ),
}


def major_of(engine: str, version: str) -> str:
    """The major version in a server's version string: PostgreSQL 15, MariaDB 10.11."""
    kind = KINDS.get(re.sub(r"\d+$", "", engine))
    return kind.major_version(version) if kind else _major_two_numbers(version)
