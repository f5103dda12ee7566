"""The one error a codec raises: the input cannot be read as the platform's payload."""

from __future__ import annotations


class DecodeError(Exception):
    """Undecodable input. `reason` is a short stable code (metric label); `detail` says what and where."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
