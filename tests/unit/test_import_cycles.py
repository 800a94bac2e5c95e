"""No import cycle between shipper's modules, lazy (function-level) imports included.

A cycle is what made the flat package need imports inside functions; this test
keeps them from coming back. It reads the source with ast, imports nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

PACKAGE = Path(__file__).resolve().parents[2] / "shipper"
LINE_LIMIT = 500
# Modules allowed over LINE_LIMIT; docs/architecture.md says why for each.
LONG_MODULES: Set[str] = {
    "shipper.core.config",
    "shipper.core.restic",
    "shipper.databases.base",
    "shipper.databases.mariadb",
    "shipper.databases.postgresql",
    "shipper.slave.receiver",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> Dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str, path: Path, known: Dict[str, Path]) -> Set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from package import module` imports the module; `from module import name`
            # the module. (A package's __init__ runs first either way; it is not counted.)
            modules_named = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
            targets = modules_named or [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and target != "shipper":
                found.add(target)
    return found


def graph() -> Dict[str, Set[str]]:
    known = modules()
    return {name: imported(name, path, known) for name, path in known.items()}


def cycles(edges: Dict[str, Set[str]]) -> List[List[str]]:
    found: List[List[str]] = []
    done: Set[str] = set()

    def visit(node: str, trail: List[str]) -> None:
        if node in trail:
            found.append(trail[trail.index(node) :] + [node])
            return
        if node in done:
            return
        for nxt in sorted(edges.get(node, ())):
            visit(nxt, trail + [node])
        done.add(node)

    for start in sorted(edges):
        visit(start, [])
    return found


def test_no_import_cycle() -> None:
    found = cycles(graph())
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_a_package_init_importing_its_own_modules_is_not_a_cycle() -> None:
    assert cycles({"a": {"a.b"}, "a.b": set()}) == []
    assert cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b", "a"]]


def test_no_module_is_over_the_line_limit() -> None:
    long = {
        name
        for name, path in modules().items()
        if len(path.read_text().splitlines()) > LINE_LIMIT and name not in LONG_MODULES
    }
    assert not long, (
        f"over {LINE_LIMIT} lines (split, or say why in docs/architecture.md): {sorted(long)}"
    )
