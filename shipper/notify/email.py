"""The email channel: SMTP (notify.smtp_host) or the local sendmail."""

from __future__ import annotations

import logging
import smtplib
import socket
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Tuple

from shipper import __version__
from shipper.core import process
from shipper.core.config import Config
from shipper.notify.event import Event

log = logging.getLogger("shipper.notify")

SMTP_TIMEOUT = 30


def enabled(cfg: Config) -> bool:
    return bool(cfg.notify.email_to)


def send(cfg: Config, event: Event) -> bool:
    """Events with a body are emails: failures, recoveries, staleness, check problems."""
    if event.body is None:
        return False
    return send_email(cfg, event.subject, event.body)


def send_email(cfg: Config, subject: str, body: str) -> bool:
    """Send one email by SMTP (notify.smtp_host) or the local sendmail; False when it failed."""
    settings = cfg.notify
    if not settings.email_to:
        return False
    message = EmailMessage()
    message["From"] = settings.email_from or f"shipper@{socket.getfqdn()}"
    message["To"] = ", ".join(settings.email_to)
    message["Subject"] = f"[shipper] {cfg.hostname}: {subject}"
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain=socket.getfqdn())
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(body + f"\n\n-- \nshipper {__version__} on {socket.gethostname()}\n")
    try:
        if settings.smtp_host:
            host, port = _host_port(settings.smtp_host, 25)
            with smtplib.SMTP(host, port, timeout=SMTP_TIMEOUT) as smtp:
                smtp.send_message(message)
        else:
            process.run(
                [settings.sendmail, "-t", "-oi"], input=message.as_bytes(), timeout=60, check=True
            )
    except process.ProcessFailed as exc:
        detail = exc.stderr.strip().splitlines()[-1:] or [f"exit {exc.code}"]
        log.warning(
            "could not send the email %r: %s failed: %s", subject, settings.sendmail, detail[0]
        )
        return False
    except (OSError, smtplib.SMTPException, process.TimeoutExpired, ValueError) as exc:
        via = settings.smtp_host or settings.sendmail
        log.warning("could not send the email %r via %s: %s", subject, via, exc)
        return False
    log.info("emailed %s: %s", message["To"], subject)
    return True


def _host_port(text: str, default: int) -> Tuple[str, int]:
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and ":" not in host:
        return host, int(port)
    return text, default
