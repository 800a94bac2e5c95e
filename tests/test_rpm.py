"""The RPM: built from the checkout by scripts/build-rpm, linted, installed into a scratch root."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shipper.core import config
from tests.shipperenv import ROOT

pytestmark = pytest.mark.skipif(
    not (shutil.which("rpmbuild") and shutil.which("rpmlint")),
    reason="rpmbuild and rpmlint are needed (scripts/bootstrap installs them)",
)

UNITS = [
    "shipper.service",
    "shipper-receiver.service",
    "shipper-prune.service",
    "shipper-prune.timer",
    "shipper-check.service",
    "shipper-check.timer",
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rpm")
    result = subprocess.run(
        [str(ROOT / "scripts" / "build-rpm"), "--outdir", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    rpm_path = Path(result.stdout.strip().splitlines()[-1])
    assert rpm_path.is_file() and rpm_path.name.endswith(".noarch.rpm"), result.stdout
    return rpm_path


def _rpm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["rpm", *args], capture_output=True, text=True, timeout=120)


def test_the_package_holds_what_both_servers_need(built: Path) -> None:
    files = _rpm("-qlp", str(built)).stdout.split()
    assert "/usr/bin/shipper" in files
    assert "/etc/shipper/shipper.yml" in files
    assert "/usr/share/man/man1/shipper.1" in files or "/usr/share/man/man1/shipper.1.gz" in files
    assert "/usr/share/shipper/hooks/post-restore.d/50-services" in files
    assert "/var/lib/shipper" in files
    for unit in UNITS:
        assert f"/usr/lib/systemd/system/{unit}" in files
    sitelib = [f for f in files if f.endswith("/site-packages/shipper/cli.py")]
    assert sitelib, "the package's modules are missing"
    for module in (
        "core/schema.yaml",
        "master/daemon.py",
        "notify/state_machine.py",
        "notify/status.py",
        "slave/check.py",
        "master/snapshot.py",
        "slave/promote/steps.py",
        "commands/promote.py",
        "core/destinations/rest.py",
    ):
        assert any(f.endswith(f"/site-packages/shipper/{module}") for f in files), module

    configs = _rpm("-qcp", str(built)).stdout.split()
    assert configs == ["/etc/shipper/shipper.yml"]
    listing = _rpm("-qlvp", str(built)).stdout
    assert re.search(r"^-rw------- .* /etc/shipper/shipper\.yml$", listing, re.M)
    requires = _rpm("-qp", "--requires", str(built)).stdout
    for needed in (
        "restic >= 0.17",
        "python3-pyyaml",
        "python3-jsonschema",
        "python3-croniter",
        "python3-plumbum",
        "python3-PyMySQL",
        "python3-psycopg2",
    ):
        assert needed in requires, needed


def test_the_cockpit_subpackage_holds_the_page(built: Path) -> None:
    cockpit = next(built.parent.glob("shipper-cockpit-*.noarch.rpm"))
    files = _rpm("-qlp", str(cockpit)).stdout.split()
    for name in ("manifest.json", "index.html", "shipper.js", "shipper.css"):
        assert f"/usr/share/cockpit/shipper/{name}" in files, name
    requires = _rpm("-qp", "--requires", str(cockpit)).stdout
    assert (
        "cockpit-bridge" in requires
        and f"shipper = {built.name[8:].split('.noarch')[0]}" in requires
    )
    assert not any(
        f.startswith("/usr/share/cockpit") for f in _rpm("-qlp", str(built)).stdout.split()
    )


def test_rpmlint_reports_no_errors(built: Path) -> None:
    srpm = next(built.parent.glob("shipper-*.src.rpm"))
    spec = ROOT / "packaging" / "rpm" / "shipper.spec"
    rc = ROOT / "packaging" / "rpm" / "shipper.rpmlintrc"
    result = subprocess.run(
        [
            "rpmlint",
            "-r",
            str(rc),
            *map(str, built.parent.glob("*.noarch.rpm")),
            str(srpm),
            str(spec),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors = [line for line in result.stdout.splitlines() if re.search(r"\bE: ", line)]
    assert errors == [], result.stdout
    assert re.search(r"\b0 errors\b", result.stdout), result.stdout


def test_it_installs_into_a_scratch_root_and_works(built: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    result = _rpm("--root", str(root), "--nodeps", "-i", str(built))
    assert result.returncode == 0, result.stderr
    assert _rpm("--root", str(root), "-q", "shipper").stdout.startswith("shipper-")

    installed = root / "etc" / "shipper" / "shipper.yml"
    assert installed.stat().st_mode & 0o777 == 0o600
    cfg = config.parse(installed.read_text(), str(installed))
    assert cfg.role == "master" and cfg.repository.url.startswith("rest:")

    # The installed code runs, from the scratch root's site-packages (other modules from this venv).
    sitelib = next(root.glob("usr/lib/python3*/site-packages"))
    entry = (root / "usr" / "bin" / "shipper").read_text()
    assert entry.startswith("#!/usr/bin/python3")
    prologue = (
        f"import sys; sys.path[:0] = [{str(sitelib)!r}]; sys.argv = ['shipper', '--help']\n"
        "import shipper; print('from', shipper.__file__)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", prologue + entry], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert f"from {sitelib}/shipper/__init__.py" in run.stdout
    for command in ("daemon", "status", "check", "snapshot"):
        assert f"    {command} " in run.stdout, command

    man = root / "usr" / "share" / "man" / "man1" / "shipper.1"
    page = man.read_text() if man.exists() else ""
    for command in ("daemon", "status", "check", "snapshot", "promote"):
        assert f".SS {command}" in page, command
    if shutil.which("groff"):
        rendered = subprocess.run(
            ["groff", "-man", "-Tutf8", "-ww", str(man)], capture_output=True, text=True, timeout=60
        )
        assert rendered.returncode == 0 and "warning" not in rendered.stderr, rendered.stderr


def test_units_are_valid_systemd_units() -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    units = [str(ROOT / "packaging" / "systemd" / unit) for unit in UNITS]
    result = subprocess.run(
        [analyze, "verify", *units], capture_output=True, text=True, timeout=120
    )
    # Here the package is not installed: the binary and the man page are missing; nothing else may be.
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.strip()
        and "/usr/bin/shipper is not executable" not in line
        and "man shipper(1)" not in line
    ]
    assert problems == [], "\n".join(problems)
    daemon = (ROOT / "packaging" / "systemd" / "shipper.service").read_text()
    assert "ProtectSystem=full" in daemon and "KillMode=mixed" in daemon
    assert (
        "ExecStart=/usr/bin/shipper receiver"
        in (ROOT / "packaging/systemd/shipper-receiver.service").read_text()
    )


def test_default_config_is_the_generated_one() -> None:
    shipped = (ROOT / "config" / "shipper.yml").read_text()
    assert shipped == config.generate(), (
        "config/shipper.yml is out of date with the schema: "
        "run `shipper config generate > config/shipper.yml`"
    )
    config.parse(shipped, "config/shipper.yml")
