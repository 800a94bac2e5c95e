"""The shipper slave: rest-server --append-only behind pinned TLS and an htpasswd user."""

from __future__ import annotations

import socket
import urllib.parse
from typing import List, Optional, Tuple

from shipper.core.destinations.base import Destination, Repository

RECEIVER_UNIT = "shipper-receiver.service"
PROBE_TIMEOUT = 3.0


class RestServer(Destination):
    kind = "rest"

    def repository(self) -> Repository:
        repo = self.cfg.repository
        transport = self.entry or repo
        return Repository(
            url=self.url,
            password_file=repo.password_file,
            cacert=transport.cacert,
            rest_user=transport.rest_user,
            rest_password_file=transport.rest_password_file,
            lock_wait=repo.lock_wait,
            network_timeout=repo.network_timeout,
        )

    def probe(self) -> Optional[str]:
        """Why the master cannot reach the receiver, in a sentence; None when it answers.

        restic retries an unreachable repository for 15 minutes before it gives
        up; this probe takes seconds, so a run can fail fast with a clear message.
        """
        endpoint = endpoint_of(self.url)
        if endpoint is None:
            return None
        why = port_answers(*endpoint)
        if why is None:
            return None
        host, port = endpoint
        return (
            f"cannot reach the receiver at {host}:{port} ({why}): the slave is down, unreachable, or its "
            f"receiver is stopped; on the slave run {' and '.join(self.setup_hints())}"
        )

    def setup_hints(self) -> List[str]:
        return [f"`systemctl start {RECEIVER_UNIT}`", "`shipper status`"]


def endpoint_of(url: str) -> Optional[Tuple[str, int]]:
    """Host and port of a rest: repository URL; None for other kinds."""
    if not url.startswith("rest:"):
        return None
    parts = urllib.parse.urlsplit(url[len("rest:") :])
    if not parts.hostname:
        return None
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def port_answers(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> Optional[str]:
    """None when something accepts a TCP connection there, else why not."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)
