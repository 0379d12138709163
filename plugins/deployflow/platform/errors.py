"""One exception family for every backend, so operators handle failures the same way."""

from __future__ import annotations


class PlatformError(RuntimeError):
    """A platform call failed: the message says what was attempted and what to check."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class PlatformNotFoundError(PlatformError):
    """The endpoint, deployment or model named does not exist."""
