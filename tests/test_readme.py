"""The README says what the code does: its config reference is the schema's."""

from __future__ import annotations

import re
from pathlib import Path

from shipper import config

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
