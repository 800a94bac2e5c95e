"""The README says what the code does: its config reference is the schema's."""

from __future__ import annotations

import re
from pathlib import Path

from shipper.core import config

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def reference_block() -> str:
    return f"{START}\n```yaml\n{config.generate()}```\n{END}"


def test_readme_config_reference_is_the_generated_config():
    text = README.read_text()
    found = re.search(re.escape(START) + ".*?" + re.escape(END), text, re.S)
    assert found, "README.md lost its config reference markers"
    assert found.group(0) == reference_block(), (
        "README.md's config reference differs from `shipper config generate`; "
        "refresh it with: .venv/bin/python -m tests.test_readme"
    )


def refresh() -> None:
    text = README.read_text()
    text = re.sub(
        re.escape(START) + ".*?" + re.escape(END), lambda _: reference_block(), text, flags=re.S
    )
    README.write_text(text)


if __name__ == "__main__":
    refresh()


def named_tests() -> list:
    """(file, test function) for every test the README's fault tables name."""
    text = README.read_text()
    section = text[text.index("## What happens when things fail") : text.index("## Configuration")]
    found = []
    for row in section.splitlines():
        if not row.startswith("|"):
            continue
        current = None
        for file_ref, name in re.findall(r"(tests/[\w/]+\.py)?::(\w+)", row.split("|")[-2]):
            current = file_ref or current
            found.append((current, name))
    return found


def test_every_test_the_fault_table_names_exists():
    root = README.parent
    named = named_tests()
    assert len(named) > 30
    for file_ref, name in named:
        assert file_ref, f"a row names ::{name} without its file"
        source = (root / file_ref).read_text()
        assert re.search(rf"^def {name}\(", source, re.M), (
            f"README names {file_ref}::{name}, which does not exist"
        )


def test_every_fault_test_is_in_the_table():
    listed = {(f, n) for f, n in named_tests()}
    for path in sorted((README.parent / "tests" / "faults").glob("test_*.py")):
        rel = str(path.relative_to(README.parent))
        for name in re.findall(r"^def (test_\w+)\(", path.read_text(), re.M):
            assert (rel, name) in listed, f"{rel}::{name} is not in the README's fault table"
