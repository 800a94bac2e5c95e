"""The web console in a real browser: cockpit-ws with a local bridge, Debian's chromium.

`Console` starts `cockpit-ws --local-session=cockpit-bridge` on a free loopback
port with XDG_DATA_DIRS pointing at this repository (its `cockpit/shipper` is
the package) and the system's /usr/share (cockpit's own base1), and a bridge
environment whose `shipper` is this tree's and whose config is the test's.
`Console.page()` opens the package in chromium and records what a check
needs afterwards: JS console errors, and every byte the page received
(HTTP bodies and websocket frames), to look for secrets in.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

from tests.shipperenv import ROOT, free_port, tool_path, wait_for_port

COCKPIT_WS = Path("/usr/lib/cockpit/cockpit-ws")
CHROMIUM = Path("/usr/bin/chromium")
# The README's pictures are refreshed on purpose (SHIPPER_SCREENSHOTS=docs/console),
# never by an ordinary run: a test run must leave the checkout as it found it.
SCREENSHOTS = Path(
    os.environ.get("SHIPPER_SCREENSHOTS") or Path(tempfile.gettempdir()) / "shipper-console"
)
LOADED = "#overview-state[data-status]:not([data-status=LOADING])"


def missing_tools() -> Optional[str]:
    """Why the console tests cannot run here, or None. scripts/bootstrap installs all of these."""
    if not COCKPIT_WS.exists():
        return f"{COCKPIT_WS} is missing: scripts/bootstrap installs cockpit-ws"
    if not shutil.which("cockpit-bridge"):
        return "cockpit-bridge is missing: scripts/bootstrap installs it"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing: scripts/bootstrap installs chromium"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python playwright client is missing: pip install -e '.[test]'"
    return None


class Console:
    def __init__(self, base: Path, env: Dict[str, str], browser: Any, user: Optional[str] = None):
        self.base = base
        self.browser = browser
        self.port = free_port()
        self.user = user
        self.shared = self._readable_package() if user else None
        self.env = {
            **env,
            "XDG_DATA_DIRS": f"{self.shared or ROOT}:/usr/share",
            "LANG": "C.UTF-8",
        }
        self.process: Optional[subprocess.Popen] = None
        self.console_errors: List[str] = []
        self.received: List[bytes] = []
        self._context: Any = None

    @staticmethod
    def _readable_package() -> str:
        """A copy of cockpit/shipper that another user can read: the checkout may sit
        in a root-only folder (a clone under `mktemp -d`), and then cockpit-ws run as
        that user finds no page at all."""
        folder = tempfile.mkdtemp(prefix="shipper-console-")
        os.chmod(folder, 0o755)
        shutil.copytree(ROOT / "cockpit", Path(folder) / "cockpit")
        for top, dirs, files in os.walk(folder):
            for name in dirs:
                os.chmod(os.path.join(top, name), 0o755)
            for name in files:
                os.chmod(os.path.join(top, name), 0o644)
        return folder

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/cockpit/@localhost/shipper/index.html"

    def start(self) -> Console:
        cmd = [
            str(COCKPIT_WS),
            "--local-session=cockpit-bridge",
            "--address",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        self.log = (self.base / f"cockpit-ws-{self.port}.log").open("w")
        self.process = subprocess.Popen(
            cmd, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        wait_for_port("127.0.0.1", self.port)
        return self

    def page(self) -> Any:
        self._context = self.browser()
        page = self._context.new_page()
        page.set_default_timeout(30_000)

        def on_console(message: Any) -> None:
            if message.type == "error":
                self.console_errors.append(message.text)

        def on_response(response: Any) -> None:
            try:
                self.received.append(response.body())
            except Exception:  # a redirect or an aborted load has no body
                pass

        def on_websocket(ws: Any) -> None:
            def frame(payload: Any) -> None:
                self.received.append(payload if isinstance(payload, bytes) else payload.encode())

            ws.on("framereceived", frame)

        page.on("console", on_console)
        page.on("pageerror", lambda error: self.console_errors.append(f"uncaught: {error}"))
        page.on("response", on_response)
        page.on("websocket", on_websocket)
        return page

    def open(self, page: Any, tab: str = "overview") -> None:
        """The page loaded afresh on `tab`, once its first status has arrived."""
        same_document = page.url.startswith(self.url)
        page.goto(f"{self.url}#{tab}")
        if same_document:  # only the hash changed: load it again, as a person's reload would
            page.reload()
        page.wait_for_selector(LOADED, state="attached")

    def assert_never_received(self, *secrets: str, witness: str) -> None:
        """No secret in anything the page got; `witness`, a value only the CLI's output
        holds (a set id), shows that the recorder saw the spawned commands' output."""
        assert any(witness.encode() in chunk for chunk in self.received), (
            f"the recorder never saw {witness!r}: the secret check would prove nothing"
        )
        for secret in secrets:
            needle = secret.encode()
            leaks = [chunk[:200] for chunk in self.received if needle in chunk]
            assert not leaks, f"a secret reached the page: {leaks[:3]}"

    def screenshot(self, page: Any, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / name), full_page=True)

    def stop(self) -> None:
        if self._context:
            self._context.close()
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(10)
        self.log.close()
        if self.shared:
            shutil.rmtree(self.shared, ignore_errors=True)


@pytest.fixture
def console_factory(tmp_path: Path) -> Iterator[Any]:
    reason = missing_tools()
    if reason:
        pytest.skip(reason)
    started: List[Console] = []
    shared: Dict[str, Any] = {}

    def browser() -> Any:
        """One chromium per test (the sync API allows one playwright per thread); a context per page."""
        if "browser" not in shared:
            from playwright.sync_api import sync_playwright

            shared["playwright"] = sync_playwright().start()
            shared["browser"] = shared["playwright"].chromium.launch(
                executable_path=str(CHROMIUM), args=["--no-sandbox"]
            )
        return shared["browser"].new_context(viewport={"width": 1200, "height": 900})

    def start(config: Path, path: Optional[str] = None, user: Optional[str] = None) -> Console:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RESTIC_", "SHIPPER_"))}
        env.update(
            PATH=path if path is not None else tool_path(),
            SHIPPER_CONFIG=str(config),
            RESTIC_CACHE_DIR=str(tmp_path / "restic-cache"),
        )
        console = Console(tmp_path, env, browser, user)
        started.append(console)
        return console.start()

    yield start
    for console in started:
        console.stop()
    if "browser" in shared:
        shared["browser"].close()
        shared["playwright"].stop()


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout}s: {what}")
