"""Records Concord writes to its own topics besides canonical events (identity control, audit)."""

from __future__ import annotations

from typing import Any, Final

import msgspec
from msgspec import Struct

from concord.codecs.model import CanonicalEvent

#: Header names on dead letters (`concord.dlq.ingest`): the original bytes and headers are kept
#: untouched; these say where the record came from and why it could not be used.
DLQ_REASON: Final = "concord-dlq-reason"
DLQ_DETAIL: Final = "concord-dlq-detail"
DLQ_SOURCE_TOPIC: Final = "concord-source-topic"
DLQ_SOURCE_PARTITION: Final = "concord-source-partition"
DLQ_SOURCE_OFFSET: Final = "concord-source-offset"
DLQ_CODEC_VERSION: Final = "concord-codec-version"
DLQ_PLATFORM: Final = "concord-platform"
DLQ_FAILED_AT: Final = "concord-failed-at"


class Repoint(Struct, frozen=True, kw_only=True, tag_field="kind", tag="repoint"):
    """Identity control: from now on `local_id` belongs to `customer_key` (after a CRM merge)."""

    local_id: str
    customer_key: str
    reason: str
    correlation_id: str = ""


IdentityMessage = CanonicalEvent | Repoint


class AuditRecord(Struct, frozen=True, kw_only=True):
    """A checkpoint on `concord.audit`: what happened, to what, when, under which correlation id."""

    kind: str
    at: int
    correlation_id: str = ""
    platform: str = ""
    customer_key: str | None = None
    detail: dict[str, Any] = {}


_identity_decoder = msgspec.json.Decoder(IdentityMessage)
_encoder = msgspec.json.Encoder()


def decode_identity(data: bytes) -> IdentityMessage:
    return _identity_decoder.decode(data)


def encode(record: Struct) -> bytes:
    return _encoder.encode(record)
