"""Editing the config file as text, key by key: the operator's comments and other keys stay.

Used by `shipper setup` (its keys), `shipper enable|disable` and promote (role:
master). Every edit is checked: the result must parse and say what was asked,
else nothing is written and the error says what to set by hand.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any, Dict, List, Tuple

import yaml

from shipper.core import config
from shipper.core.errors import ShipperError
from shipper.core.files import replace_file

KeyPath = Tuple[str, ...]


class EditError(ShipperError):
    pass


def yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if re.fullmatch(r"[A-Za-z0-9_/.][A-Za-z0-9_./-]*", text) and yaml.safe_load(text) == text:
        return text
    return json.dumps(text)


_COMMENT = re.compile(r"(\s+#.*)$")


def _key_line(indent: str, key: str) -> re.Pattern:
    return re.compile(rf"^{re.escape(indent)}{re.escape(key)}\s*:(\s|$)")


def _replace_value(line: str, prefix: str, value: str) -> str:
    comment = _COMMENT.search(line[len(prefix) :])
    return f"{prefix}: {value}{comment.group(1) if comment else ''}"


def _set_top(lines: List[str], key: str, value: str) -> List[str]:
    pattern = _key_line("", key)
    for i, line in enumerate(lines):
        if pattern.match(line):
            return [*lines[:i], _replace_value(line, key, value), *lines[i + 1 :]]
    return [*lines, f"{key}: {value}"]


def _set_nested(lines: List[str], section: str, key: str, value: str) -> List[str]:
    head = _key_line("", section)
    start = next((i for i, line in enumerate(lines) if head.match(line)), None)
    if start is None:
        return [*lines, f"{section}:", f"  {key}: {value}"]
    inline = lines[start].split(":", 1)[1].split("#", 1)[0].strip()
    if inline not in ("", "{}"):
        raise EditError(f"`{section}:` is not a block mapping")
    if inline == "{}":
        lines = [*lines[:start], f"{section}:", *lines[start + 1 :]]
    end = start
    for j in range(start + 1, len(lines)):
        text = lines[j]
        if not text.strip() or text.startswith("#"):
            continue
        if not text[0].isspace():
            break
        end = j
    block = [
        line
        for line in lines[start + 1 : end + 1]
        if line.strip() and not line.lstrip().startswith("#")
    ]
    indent = re.match(r"\s*", block[0]).group(0) if block else "  "
    pattern = _key_line(indent, key)
    for i in range(start + 1, end + 1):
        if pattern.match(lines[i]):
            replaced = _replace_value(lines[i], indent + key, value)
            return [*lines[:i], replaced, *lines[i + 1 :]]
    return [*lines[: end + 1], f"{indent}{key}: {value}", *lines[end + 1 :]]


def edit_yaml(text: str, values: Dict[KeyPath, Any]) -> str:
    """Set keys (top level or one level down) in YAML text, keeping everything else.

    The result is parsed back and must differ from the original only in those
    keys; otherwise EditError (a layout this editor does not handle).
    """
    lines = text.splitlines()
    try:
        for path, value in values.items():
            rendered = yaml_scalar(value)
            if len(path) == 1:
                lines = _set_top(lines, path[0], rendered)
            elif len(path) == 2:
                lines = _set_nested(lines, path[0], path[1], rendered)
            else:
                raise EditError(f"cannot set {'.'.join(path)}")
    except EditError as exc:
        raise EditError(f"{exc}; set {_listing(values)} by hand") from None
    result = "\n".join(lines) + "\n"
    _verify_edit(text, result, values)
    return result


def _listing(values: Dict[KeyPath, Any]) -> str:
    return ", ".join(f"{'.'.join(path)}: {yaml_scalar(value)}" for path, value in values.items())


def _verify_edit(before: str, after: str, values: Dict[KeyPath, Any]) -> None:
    try:
        old = yaml.safe_load(before) or {}
        new = yaml.safe_load(after) or {}
    except yaml.YAMLError:
        raise EditError(
            f"could not edit the config safely; set {_listing(values)} by hand"
        ) from None
    expected = copy.deepcopy(old)
    for path, value in values.items():
        node = expected
        for part in path[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[path[-1]] = value
    if new != expected:
        raise EditError(f"could not edit the config safely; set {_listing(values)} by hand")


def update_config(path: str, values: Dict[KeyPath, Any], fresh: str) -> bool:
    """Apply values to the config file (or to `fresh` when there is none); False if unchanged."""
    target = Path(path)
    exists = target.exists()
    before = target.read_text() if exists else ""
    after = edit_yaml(before if exists else fresh, values)
    if exists and after == before:
        return False
    config.parse(after, path)
    mode = target.stat().st_mode & 0o777 if exists else 0o600
    replace_file(target, after, mode=mode, sync=True)
    return True


def set_enabled(path: str, enabled: bool) -> bool:
    """`enabled:` in the config file; False when it already said so."""
    if not Path(path).exists():
        raise ShipperError(f"{path}: no such config file; run `shipper setup master` first")
    config.load(path)
    return update_config(path, {("enabled",): enabled}, "")


# ---------------------------------------------------------------- one entry of a list of mappings


def _render_entry(indent: str, entry: Dict[str, Any]) -> List[str]:
    keys = [key for key, value in entry.items() if value is not None]
    lines = [f"{indent}- {keys[0]}: {yaml_scalar(entry[keys[0]])}"]
    return lines + [f"{indent}  {key}: {yaml_scalar(entry[key])}" for key in keys[1:]]


def _block_end(lines: List[str], start: int) -> int:
    """The last line of the block that `lines[start]` (a top-level key) opens."""
    end = start
    for j in range(start + 1, len(lines)):
        text = lines[j]
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        if not text[0].isspace() and not text.startswith("-"):
            break
        end = j
    return end


def _item_starts(lines: List[str], start: int, end: int) -> List[int]:
    items = [i for i in range(start + 1, end + 1) if lines[i].lstrip().startswith("- ")]
    if not items:
        return []
    indent = len(lines[items[0]]) - len(lines[items[0]].lstrip())
    return [i for i in items if len(lines[i]) - len(lines[i].lstrip()) == indent]


def _set_entry(lines: List[str], section: str, entry: Dict[str, Any], position: int) -> List[str]:
    """Replace item number `position` of the list `section` with entry, or append it (-1)."""
    head = _key_line("", section)
    start = next((i for i, line in enumerate(lines) if head.match(line)), None)
    if start is None:
        return [*lines, f"{section}:", *_render_entry("  ", entry)]
    inline = lines[start].split(":", 1)[1].split("#", 1)[0].strip()
    if inline not in ("", "[]"):
        raise EditError(f"`{section}:` is not a block list")
    if inline == "[]":
        lines = [*lines[:start], f"{section}:", *lines[start + 1 :]]
    end = _block_end(lines, start)
    items = _item_starts(lines, start, end)
    indent = re.match(r"\s*", lines[items[0]]).group(0) if items else "  "
    rendered = _render_entry(indent, entry)
    if position < 0:
        return [*lines[: end + 1], *rendered, *lines[end + 1 :]]
    first = items[position]
    last = items[position + 1] - 1 if position + 1 < len(items) else end
    while last > first and not lines[last].strip():
        last -= 1
    return [*lines[:first], *rendered, *lines[last + 1 :]]


def _without_nulls(item: Any) -> Any:
    return {k: v for k, v in item.items() if v is not None} if isinstance(item, dict) else item


def edit_list_entry(text: str, section: str, entry: Dict[str, Any], key: str = "name") -> str:
    """Put `entry` into the top-level list `section`, replacing the item with the same `key`.

    Comments outside that item stay; the result is parsed back and must differ
    from the original only in that item, else EditError.
    """
    old = yaml.safe_load(text) or {}
    present = old.get(section) or []
    if not isinstance(present, list):
        raise EditError(f"`{section}:` is not a list; add the entry {entry} by hand")
    names = [item.get(key) if isinstance(item, dict) else None for item in present]
    position = names.index(entry[key]) if entry[key] in names else -1
    wanted = {k: v for k, v in entry.items() if v is not None}
    if position >= 0 and _without_nulls(present[position]) == wanted:
        return text
    try:
        after = "\n".join(_set_entry(text.splitlines(), section, wanted, position)) + "\n"
        new = yaml.safe_load(after) or {}
    except (EditError, yaml.YAMLError):
        raise EditError(
            f"could not edit `{section}:` safely; add the entry {wanted} by hand"
        ) from None
    expected = copy.deepcopy(old)
    items = list(present)
    if position >= 0:
        items[position] = wanted
    else:
        items.append(wanted)
    expected[section] = items
    if new != expected:
        raise EditError(f"could not edit `{section}:` safely; add the entry {wanted} by hand")
    return after


def update_list_entry(
    path: str, section: str, entry: Dict[str, Any], dry_run: bool = False
) -> bool:
    """edit_list_entry on the config file; False when it already held the entry."""
    target = Path(path)
    if not target.exists():
        raise ShipperError(f"{path}: no such config file; run `shipper setup master` first")
    before = target.read_text()
    after = edit_list_entry(before, section, entry)
    if after == before:
        return False
    config.parse(after, path)
    if not dry_run:
        replace_file(target, after, mode=target.stat().st_mode & 0o777, sync=True)
    return True
