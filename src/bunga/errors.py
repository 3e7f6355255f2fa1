"""The project's error type: a message a user can act on, and the exit code the CLI gives it."""

from __future__ import annotations


class BungaError(Exception):
    """An expected failure with a one-line message saying what to fix."""

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class GateRefused(BungaError):
    """The promotion gate refused a candidate."""

    exit_code = 3
