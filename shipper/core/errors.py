"""The errors a user can meet, each with the exit code the CLI gives it."""

from __future__ import annotations


class ShipperError(Exception):
    """An expected failure: the message says what failed and what to do."""

    exit_code = 1


class LockHeld(ShipperError):
    exit_code = 3


class NotFound(ShipperError):
    pass


class Refused(ShipperError):
    """A safety check refused the operation; a flag may override it."""
