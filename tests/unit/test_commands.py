"""The command table, the argv peek, and what --help imports."""

from __future__ import annotations

import subprocess
import sys

from shipper import cli, commands


def test_every_command_module_registers_and_runs() -> None:
    for name in commands.COMMANDS:
        module = commands.load(name)
        assert callable(module.register), name


def test_the_chosen_command_is_found_past_global_options() -> None:
    assert cli._chosen(["-c", "/x.yml", "-v", "promote", "--dry-run"]) == "promote"
    assert cli._chosen(["--config", "snapshot", "sets"]) == "sets"
    assert cli._chosen(["--help"]) == ""


def test_help_imports_no_command_and_no_role_module() -> None:
    code = (
        "import sys\n"
        "from shipper import cli\n"
        "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "roles = ('shipper.commands.', 'shipper.master', 'shipper.slave', 'shipper.notify',"
        " 'shipper.setup', 'shipper.databases')\n"
        "loaded = [m for m in sys.modules if m.startswith(roles) and m != 'shipper.commands.context']\n"
        "print(sorted(loaded), file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stderr.strip() == "[]", result.stderr


def test_json_and_text_printers_are_chosen_once() -> None:
    import argparse

    from shipper.commands.context import Context, JsonPrinter, TextPrinter

    assert isinstance(Context(argparse.Namespace(json=True)).out, JsonPrinter)
    assert isinstance(Context(argparse.Namespace()).out, TextPrinter)
