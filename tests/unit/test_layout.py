"""The layout rules of docs/architecture.md: what each package may import, and
that child processes start in one place."""

from __future__ import annotations

import ast
from typing import Dict, Set

from tests.unit.test_import_cycles import PACKAGE, graph, modules

# package -> the packages it may import (itself always)
ALLOWED: Dict[str, Set[str]] = {
    "core": set(),
    "databases": {"core"},
    "notify": {"core"},
    "master": {"core", "databases", "notify"},
    "slave": {"core", "databases", "notify"},
    "setup": {"core", "databases", "master", "slave"},
}
# Where a child process may start. The engines' clients move to core/process.py
# once the engine fixes in flight have landed (docs/architecture.md).
PROCESS_STARTERS = {"shipper.core.process"}
STARTS = {
    ("subprocess", "Popen"),
    ("subprocess", "run"),
    ("subprocess", "call"),
    ("subprocess", "check_call"),
    ("subprocess", "check_output"),
    ("os", "execv"),
    ("os", "execvp"),
    ("os", "execve"),
    ("os", "spawnv"),
    ("os", "system"),
    ("os", "popen"),
}


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 else ""


def test_each_package_imports_only_what_it_may() -> None:
    wrong = []
    for module, imports in graph().items():
        mine = package_of(module)
        if mine not in ALLOWED:
            continue
        for target in imports:
            theirs = package_of(target)
            if theirs and theirs != mine and theirs not in ALLOWED[mine]:
                wrong.append(f"{module} -> {target}")
    assert not wrong, "\n".join(sorted(wrong))


def test_only_the_process_runner_starts_children() -> None:
    found = []
    for name, path in modules().items():
        if name in PROCESS_STARTERS:
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            func = node.func if isinstance(node, ast.Call) else None
            target = _dotted_call(func)
            if target in STARTS:
                found.append(f"{name}:{node.lineno} {'.'.join(target)}")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", "") or ""]
                if any(n.split(".")[0] == "plumbum" for n in names):
                    found.append(f"{name}:{node.lineno} plumbum")
    assert not found, "\n".join(found)
    assert PACKAGE.is_dir()


def _dotted_call(func: object) -> tuple:
    """("subprocess", "run") for `subprocess.run(...)`; () for anything else."""
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return (func.value.id, func.attr)
    return ()
