"""The one error a codec raises: the input cannot be read as the platform's payload."""

from __future__ import annotations

import re
import traceback
from pathlib import Path
from typing import Final

import msgspec

# Reasons that more than one codec gives, defined once so that the same failure is one metric label
# and one `concord-dlq-reason` value whichever platform it came from. A reason only one codec gives
# is a constant in that codec.
INVALID_JSON: Final = "invalid_json"
UNKNOWN_SHAPE: Final = "unknown_shape"
MISSING_FIELD: Final = "missing_field"
BAD_TYPE: Final = "bad_type"
BAD_TIME: Final = "bad_time"
BAD_CURRENCY: Final = "bad_currency"
# JSON nested deeper than the decoder recurses (msgspec stops at Python's recursion limit, about 1000
# levels of arrays or objects, with a RecursionError).
TOO_DEEP: Final = "too_deep"
# The input does not fit in memory while decoded.
TOO_LARGE: Final = "too_large"
# Anything else a codec raised: a codec bug (the detail names the exception type and the code line).
CODEC_ERROR: Final = "codec_error"


class DecodeError(Exception):
    """Undecodable input. `reason` is a short stable code (metric label); `detail` says what and where.

    Neither ever holds a payload value (docs/ingestion.md): field names, paths, types, lengths and
    positions only. The payload itself travels as the dead letter's value.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# msgspec quotes the offending value in a few messages ("Invalid enum value 'x' - at `$.a`").
_QUOTED_VALUE: Final = re.compile(r"^(Invalid (?:enum )?value) .*?( - at `[^`]*`)?$", re.DOTALL)


def msgspec_message(exc: msgspec.DecodeError) -> str:
    """msgspec's message without any payload value in it (types, paths and byte positions stay)."""
    message = str(exc)
    if message.startswith("Invalid"):
        match = _QUOTED_VALUE.match(message)
        if match is not None:
            return match.group(1) + (match.group(2) or "")
    return message


def as_decode_error(exc: BaseException, what: str = "payload") -> DecodeError:
    """`exc`, raised while decoding `what`, as a DecodeError with no payload value and no traceback.

    DecodeError passes unchanged; RecursionError is `too_deep`, MemoryError `too_large`; msgspec's
    own errors and invalid UTF-8 are `invalid_json` / `bad_type`; anything else is `codec_error`
    naming the exception type and the line of code that raised it (not its message, which may quote
    a value).
    """
    if isinstance(exc, DecodeError):
        return exc
    if isinstance(exc, RecursionError):
        return DecodeError(TOO_DEEP, f"{what} is nested too deeply: more levels of arrays or objects than "
                                     "the decoder allows (about 1000)")
    if isinstance(exc, MemoryError):
        return DecodeError(TOO_LARGE, f"{what} is too large to decode")
    if isinstance(exc, msgspec.ValidationError):
        return DecodeError(BAD_TYPE, f"{what}: {msgspec_message(exc)}")
    if isinstance(exc, msgspec.DecodeError):
        return DecodeError(INVALID_JSON, f"{what}: {msgspec_message(exc)}")
    if isinstance(exc, UnicodeDecodeError):
        return DecodeError(INVALID_JSON, f"{what}: invalid UTF-8 at byte {exc.start}")
    if isinstance(exc, ValueError) and "integer string conversion" in str(exc):
        return DecodeError(TOO_LARGE, f"{what} holds a number with too many digits")
    return DecodeError(CODEC_ERROR, f"unexpected {type(exc).__name__}{_raised_at(exc)} while decoding {what}")


def _raised_at(exc: BaseException) -> str:
    """` at <file>:<line> (<function>)`: the innermost frame in Concord's code, else the innermost one."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    ours = [f for f in frames if "concord" in f.filename or "/codecs/" in f.filename] or frames
    frame = ours[-1]
    return f" at {Path(frame.filename).name}:{frame.lineno} ({frame.name})"
