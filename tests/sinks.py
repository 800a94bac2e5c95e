"""Real receivers for shipper's notifications: an SMTP sink (aiosmtpd) and a webhook server."""

from __future__ import annotations

import email
import email.policy
import json
import threading
import time
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest
from aiosmtpd.controller import Controller

from tests.shipperenv import free_port


class SmtpSink:
    """An SMTP server on loopback that keeps every message it receives."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: List[EmailMessage] = []
        self.envelopes: List[Dict[str, Any]] = []
        self._changed = threading.Condition()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd API)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._changed:
            self.messages.append(message)  # type: ignore[arg-type]
            self.envelopes.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos)})
            self._changed.notify_all()
        return "250 OK"

    def start(self) -> SmtpSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def subjects(self) -> List[str]:
        return [str(m["Subject"]) for m in self.messages]

    def wait_for(self, words: str, timeout: float = 30, after: int = 0) -> EmailMessage:
        """The first message (from index `after`) whose subject holds `words`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for message in self.messages[after:]:
                    if words in str(message["Subject"]):
                        return message
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"no email about {words!r} within {timeout}s; got {self.subjects()}"
                    )
                self._changed.wait(left)


class WebhookSink:
    """An HTTP server on loopback that records every request: (path, JSON body)."""

    def __init__(self) -> None:
        self.calls: List[Dict[str, Any]] = []
        self._changed = threading.Condition()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                try:
                    payload = json.loads(body or b"{}")
                except ValueError:
                    payload = {"raw": body.decode(errors="replace")}
                with sink._changed:
                    sink.calls.append({"path": self.path, "body": payload})
                    sink._changed.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def start(self) -> WebhookSink:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def paths(self) -> List[str]:
        return [c["path"] for c in self.calls]

    def wait_for(self, path: str, timeout: float = 30, after: int = 0) -> Dict[str, Any]:
        return self.wait_until(lambda call: call["path"] == path, timeout, after, path)

    def wait_until(
        self,
        predicate: Callable[[Dict[str, Any]], bool],
        timeout: float,
        after: int = 0,
        what: str = "",
    ) -> Dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for call in self.calls[after:]:
                    if predicate(call):
                        return call
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"no webhook call {what} within {timeout}s; got {self.paths()}"
                    )
                self._changed.wait(left)


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture
def webhook_sink() -> Iterator[WebhookSink]:
    sink = WebhookSink().start()
    yield sink
    sink.stop()


def notify_settings(smtp: SmtpSink, hooks: WebhookSink, **extra: Any) -> Dict[str, Any]:
    """The `notify:` section that sends everything to the sinks."""
    settings: Dict[str, Any] = {
        "email_to": ["ops@example.test"],
        "email_from": "shipper@master.example.test",
        "smtp_host": smtp.address,
        "webhook_start": hooks.url("/ping/start"),
        "webhook_success": hooks.url("/ping/success"),
        "webhook_failure": hooks.url("/ping/fail"),
    }
    settings.update(extra)
    return settings


def email_text(message: Optional[EmailMessage]) -> str:
    assert message is not None
    body = message.get_body(preferencelist=("plain",))
    return body.get_content() if body is not None else ""
