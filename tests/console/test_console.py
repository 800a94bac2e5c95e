"""The Cockpit page against a real master and slave, driven in chromium.

The slave's status is real: a rest-server receiver answers, the sets were
taken by the real CLI a moment before, and the overview turns WARNING and
CRITICAL as the newest set ages past notify.max_age (60 s, the schema's
minimum). The page's `shipper` runs under libfaketime with a clock the test
moves forward (faked_clock): the same status code, without a minute's wait.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest
import yaml

from tests.console.conftest import wait_until
from tests.dbservers import SUPERUSER_PASSWORD
from tests.shipperenv import (
    PASSWORD,
    ROOT,
    VENV_BIN,
    RestServer,
    ShipperEnv,
    tool_path,
    tree_digest,
)

pytestmark = pytest.mark.slow

MAX_AGE = 60  # the schema's minimum; WARNING after two thirds of it
TOKEN = "webhook-token-never-in-the-browser"


class FakedClock:
    """A PATH whose `shipper` runs under faketime, its offset read from a file at each
    start: the page's commands see a clock `offset` seconds ahead, restic (static Go)
    and everything outside the console see the real one."""

    def __init__(self, base: Path):
        faketime = shutil.which("faketime")
        assert faketime, "faketime is missing: run scripts/bootstrap (Debian package faketime)"
        self.offset_file = base / "clock-offset"
        self.set(0)
        self.bin = base / "faked-clock-bin"
        self.bin.mkdir()
        wrapper = self.bin / "shipper"
        wrapper.write_text(
            f'#!/bin/sh\nexec {faketime} -f "$(cat {self.offset_file})" '
            f'{VENV_BIN / "shipper"} "$@"\n'
        )
        wrapper.chmod(0o755)

    @property
    def path(self) -> str:
        return f"{self.bin}:{tool_path()}"

    def set(self, seconds: int) -> None:
        self.offset_file.write_text(f"{seconds:+d}s\n")


def status_of(env: ShipperEnv, config: Path) -> Dict[str, Any]:
    done = subprocess.run(
        [str(VENV_BIN / "shipper"), "status", "--json"],
        env={**env.env(), "SHIPPER_CONFIG": str(config)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return json.loads(done.stdout)


def slave_config(master: ShipperEnv, base: Path, **changes: Any) -> Path:
    settings = json.loads(json.dumps(master.settings))
    settings.update(role="slave", state_dir=str(base / "slave-state"), **changes)
    settings["repository"]["local_path"] = changes.get("local_path", settings["repository"]["url"])
    settings.pop("local_path", None)
    path = base / "slave.yml"
    path.write_text("# the slave\n" + yaml.safe_dump(settings, sort_keys=False))
    return path


def banner(page: Any) -> str:
    return page.get_attribute("#overview-state", "data-status")


@pytest.fixture
def app_database(postgresql_server: Any) -> Iterator[str]:
    """A database of the shared test PostgreSQL server, and its restored copy, dropped after."""
    name = f"console_{uuid.uuid4().hex[:6]}"
    postgresql_server.sql(f"CREATE DATABASE {name}")
    postgresql_server.sql("CREATE TABLE notes (id int PRIMARY KEY, body text)", name)
    yield name
    for db in (name, f"{name}_copy"):
        postgresql_server.sql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def test_overview_sets_settings_and_a_spare_that_goes_stale(
    tmp_path: Path,
    shipper_env: ShipperEnv,
    rest_server: RestServer,
    postgresql_server: Any,
    app_database: str,
    console_factory: Any,
) -> None:
    master = shipper_env
    server = postgresql_server
    master.write_config(
        repository={"url": rest_server.url + "master/"},
        databases={
            "enabled": True,
            "mariadb": [],
            "postgresql": [dataclasses.asdict(server.config(databases=[app_database]))],
        },
        notify={"email_to": []},
    )
    (master.src / "old.txt").write_text("first\n")
    (master.src / "kept.txt").write_text("kept\n")
    server.sql("INSERT INTO notes VALUES (1, 'first')", app_database)
    master.run("init", check=True)
    master.run("snapshot", check=True)
    first_state = tree_digest(master.src)
    (master.src / "old.txt").write_text("second\n")
    (master.src / "new.txt").write_text("new\n")
    server.sql("UPDATE notes SET body = 'second'", app_database)
    master.run("snapshot", check=True)
    config = slave_config(
        master,
        tmp_path,
        local_path=str(rest_server.data / "master"),
        receiver={"listen": f"127.0.0.1:{rest_server.port}", "repo_dir": str(rest_server.data)},
        notify={
            "max_age": MAX_AGE,
            "email_to": [],
            "webhook_failure": f"http://127.0.0.1:9/hook?token={TOKEN}",
        },
    )
    config.parent.joinpath("slave-state").mkdir()
    clock = FakedClock(tmp_path)
    console = console_factory(config, path=clock.path)
    page = console.page()

    # Overview: a fresh spare is OK, and says why in the same words as `shipper status`.
    console.open(page)
    assert banner(page) == "OK", page.inner_text("main")
    assert page.inner_text("#overview-server").count("slave") >= 1
    assert "answers" in page.inner_text("#overview-server")
    assert "(OK)" in page.inner_text("#overview-age")
    assert "2 (2 complete)" in page.inner_text("#overview-repo")
    page.wait_for_selector("#overview-chart .bar >> nth=1")
    page.wait_for_selector("#overview-durations .bar >> nth=1")
    took = page.locator("#overview-durations .bar").first.get_attribute("title") or ""
    assert re.search(r": \d+s to take, complete$", took), took  # restic's own backup_end
    console.screenshot(page, "overview.png")

    # Sets: the list, a manifest, the diff, a restore of the older set checked on disk.
    page.click("#tabs a[data-page=sets]")
    page.wait_for_selector("#sets-table tbody tr[data-set] >> nth=1")
    rows = page.locator("#sets-table tbody tr[data-set]")
    newest, older = rows.nth(0).get_attribute("data-set"), rows.nth(1).get_attribute("data-set")
    assert newest > older
    rows.nth(1).locator("button").click()
    assert f"Set {older}" in page.inner_text("#set-manifest")
    assert "files" in page.inner_text("#set-manifest .manifest-parts")
    page.click("#diff-run")
    page.wait_for_selector("#diff-result .diff-group")
    diff = page.inner_text("#diff-result")
    assert str(master.src / "new.txt") in diff and "Added (1)" in diff, diff
    assert str(master.src / "old.txt") in diff and "Changed (1)" in diff, diff
    target = tmp_path / "restored"
    page.select_option("#restore-set", older)
    page.fill("#restore-target", str(target))
    page.click("#restore-run")
    page.wait_for_selector("#restore-result .alert-success, #restore-result .alert-danger")
    assert f"restored set {older}" in page.inner_text("#restore-result")
    assert tree_digest(target / str(master.src).lstrip("/")) == first_state
    page.fill("#restore-target", "/")
    page.click("#restore-run")
    assert "use Promote" in page.inner_text("#restore-result")
    part = f"postgresql:{app_database}"
    assert part in page.inner_text("#sets-table")
    page.select_option("#restore-db-set", older)
    page.select_option("#restore-db-part", part)
    page.fill("#restore-db-as", f"{app_database}_copy")
    page.click("#restore-db-run")
    page.wait_for_selector("#restore-db-result .alert-success, #restore-db-result .alert-danger")
    assert page.locator("#restore-db-result .alert-success").count() == 1, page.inner_text(
        "#restore-db-result"
    )
    assert server.sql("SELECT body FROM notes", f"{app_database}_copy") == [("first",)]
    assert server.sql("SELECT body FROM notes", app_database) == [("second",)]
    console.screenshot(page, "sets.png")

    # Settings: the schedule off and on again (in the file), and the config check.
    page.click("#tabs a[data-page=settings]")
    page.wait_for_selector("#settings-schedule[data-enabled=true]")
    page.click("#settings-disable")
    page.wait_for_selector("#settings-schedule[data-enabled=false]")
    assert yaml.safe_load(config.read_text())["enabled"] is False
    page.click("#settings-enable")
    page.wait_for_selector("#settings-schedule[data-enabled=true]")
    assert yaml.safe_load(config.read_text())["enabled"] is True
    good = config.read_text()
    lines = good.splitlines()
    at = next(n for n, line in enumerate(lines) if line.strip().startswith("lock_wait:"))
    lines[at] = lines[at].split(":")[0] + ": -3"
    config.write_text("\n".join(lines) + "\n")
    page.click("#settings-validate")
    page.wait_for_selector("#settings-findings .alert-danger")
    finding = page.inner_text("#settings-findings .findings")
    assert f"{config} line {at + 1}" in finding and "lock_wait" in finding, finding
    console.screenshot(page, "settings.png")
    config.write_text(good)
    page.click("#settings-validate")
    page.wait_for_selector("#settings-findings .alert-success")
    assert "The configuration is valid" in page.inner_text("#settings-findings")

    # The spare goes stale: the page's clock moves the newest set past 2/3 of max_age
    # (WARNING after 40 s), then past max_age; the real clock's age says where it stands.
    age = status_of(master, config)["newest_complete"]["age"]
    clock.set(MAX_AGE * 5 // 6 - age)
    console.open(page)
    assert banner(page) == "WARNING", page.inner_text("main")
    assert "(WARNING)" in page.inner_text("#overview-age")
    age = status_of(master, config)["newest_complete"]["age"]
    clock.set(MAX_AGE + 10 - age)
    page.click("#overview-refresh")
    page.wait_for_selector("#overview-state[data-status=CRITICAL]")
    assert "the spare is stale" in page.inner_text("#overview-problems")
    console.screenshot(page, "overview-stale.png")

    assert not console.console_errors, console.console_errors
    console.assert_never_received(PASSWORD, SUPERUSER_PASSWORD, TOKEN, witness=older)


def test_promote_through_the_page_with_the_typed_host_name(
    tmp_path: Path,
    shipper_env: ShipperEnv,
    postgresql_server: Any,
    make_postgresql_server: Any,
    app_database: str,
    console_factory: Any,
) -> None:
    master = shipper_env
    master.write_config(
        databases={
            "enabled": True,
            "mariadb": [],
            "postgresql": [dataclasses.asdict(postgresql_server.config(databases=[app_database]))],
        },
        notify={"email_to": []},
    )
    (master.src / "app.conf").write_text("v1\n")
    postgresql_server.sql("INSERT INTO notes VALUES (1, 'v1')", app_database)
    master.run("init", check=True)
    master.run("snapshot", check=True)
    (master.src / "app.conf").write_text("v2\n")
    (master.src / "data.txt").write_text("data\n")
    postgresql_server.sql("UPDATE notes SET body = 'v2'", app_database)
    master.run("snapshot", check=True)
    expected = tree_digest(master.src)
    # The slave's own database server, with an older copy of the database.
    spare = make_postgresql_server()
    spare.sql(f"CREATE DATABASE {app_database}")
    spare.sql("CREATE TABLE notes (id int PRIMARY KEY, body text)", app_database)
    spare.sql("INSERT INTO notes VALUES (1, 'old')", app_database)
    config = slave_config(
        master,
        tmp_path,
        databases={
            "enabled": True,
            "mariadb": [],
            "postgresql": [dataclasses.asdict(spare.config(databases=[app_database]))],
        },
    )
    root = tmp_path / "root"
    (root / str(master.src).lstrip("/")).mkdir(parents=True)
    (root / str(master.src).lstrip("/") / "stale.txt").write_text("stale\n")
    host = status_of(master, config)["host"]
    console = console_factory(config)
    page = console.page()
    console.open(page, "promote")
    page.wait_for_selector("#promote-body:not([hidden])")
    page.fill("#promote-root", str(root))

    # The plan first, exactly as the CLI prints it; nothing changed yet.
    page.click("#promote-check")
    page.wait_for_selector("#promote-confirm:not([hidden])")
    plan = page.inner_text("#promote-plan")
    assert "OK   role: this server is the slave" in plan and "dry run: nothing was changed" in plan
    assert (root / str(master.src).lstrip("/") / "stale.txt").exists()

    # The button stays off until the host name is typed exactly.
    page.fill("#promote-typed", host + "x")
    assert page.is_disabled("#promote-run")
    page.fill("#promote-typed", host)
    assert page.is_enabled("#promote-run")
    page.click("#promote-run")
    page.wait_for_selector("#promote-result .alert-success, #promote-result .alert-danger")
    progress = page.inner_text("#promote-progress")
    assert "PROMOTED" in progress, progress + page.inner_text("#promote-result")
    assert "files: done" in progress or "done" in progress
    assert page.locator("#promote-result .alert-success").count() == 1

    assert tree_digest(root / str(master.src).lstrip("/")) == expected
    assert spare.sql("SELECT body FROM notes", app_database) == [("v2",)]
    assert yaml.safe_load(config.read_text())["role"] == "master"
    console.screenshot(page, "promote.png")
    set_id = progress.split("promote of set ")[1].split(":")[0]

    # Now a master: the page says promote runs on the slave, and offers nothing to press.
    console.open(page, "promote")
    page.wait_for_selector("#promote-role:not([hidden])")
    assert "This server is the master" in page.inner_text("#promote-role")
    assert page.is_hidden("#promote-body")
    assert not console.console_errors, console.console_errors
    console.assert_never_received(PASSWORD, SUPERUSER_PASSWORD, witness=set_id)
    spare.stop()


def test_missing_shipper_and_no_admin_access_are_explained(
    tmp_path: Path, shipper_env: ShipperEnv, console_factory: Any
) -> None:
    # A PATH without shipper: the page says it is not installed and how to install it.
    missing = console_factory(shipper_env.config_path, path="/usr/bin:/bin")
    page = missing.page()
    missing.open(page)
    text = page.inner_text("#fatal")
    assert "not installed" in text and "Install the shipper package" in text, text

    # A shipper from before --json: the page asks for an update instead of showing garbage.
    old = tmp_path / "old-bin"
    old.mkdir()
    (old / "shipper").write_text(
        "#!/bin/sh\necho 'shipper: error: unrecognized arguments: --json' >&2\nexit 2\n"
    )
    (old / "shipper").chmod(0o755)
    too_old = console_factory(shipper_env.config_path, path=f"{old}:/usr/bin:/bin")
    page = too_old.page()
    too_old.open(page)
    text = page.inner_text("#fatal")
    assert "too old" in text and "Update the shipper package" in text, text

    # A user who is not an administrator: cockpit refuses the superuser spawn.
    limited = console_factory(shipper_env.config_path, user="nobody")
    page = limited.page()
    limited.open(page)
    wait_until(lambda: page.is_visible("#fatal"), 20, "the access message")
    assert "administrative access" in page.inner_text("#fatal"), page.inner_text("#fatal")


def test_the_readme_shows_every_page() -> None:
    readme = (ROOT / "README.md").read_text()
    shown = re.findall(r"\(docs/console/([\w-]+\.png)\)", readme)
    for name in ("overview.png", "overview-stale.png", "sets.png", "promote.png", "settings.png"):
        assert name in shown, f"README.md does not show docs/console/{name}"
        assert (ROOT / "docs" / "console" / name).is_file(), f"docs/console/{name} is missing"
