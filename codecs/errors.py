"""The one error a codec raises: the input cannot be read as the platform's payload."""

from __future__ import annotations

from typing import Final

# Reasons that more than one codec gives, defined once so that the same failure is one metric label
# and one `concord-dlq-reason` value whichever platform it came from. A reason only one codec gives
# is a constant in that codec.
INVALID_JSON: Final = "invalid_json"
UNKNOWN_SHAPE: Final = "unknown_shape"
MISSING_FIELD: Final = "missing_field"
BAD_TYPE: Final = "bad_type"
BAD_TIME: Final = "bad_time"
BAD_CURRENCY: Final = "bad_currency"


class DecodeError(Exception):
    """Undecodable input. `reason` is a short stable code (metric label); `detail` says what and where."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
