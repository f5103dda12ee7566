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


class CanonicalBatch(Struct, frozen=True, kw_only=True, tag_field="kind", tag="batch"):
    """Many canonical events of one partition in one Kafka message (bulk producers, benchmarks).

    The state agent handles it as one Faust event, grouping by customer key, so per-message costs
    are paid once for the batch. Every event must carry its customer key, and the message must go
    to the partition of those keys (`concord.app.partitioning.partition_for`).
    """

    events: list[CanonicalEvent]


class Tick(Struct, frozen=True, kw_only=True, tag_field="kind", tag="tick"):
    """A deadline of a customer is due: evaluate its drift rules now, even without a new event."""

    customer_key: str
    due: int


class AcceptFinding(Struct, frozen=True, kw_only=True, tag_field="kind", tag="accept"):
    """A person accepted a finding (admin API): resolve it as `accepted`."""

    customer_key: str
    fingerprint: str
    by: str
    note: str = ""


class CorrectionFailed(Struct, frozen=True, kw_only=True, tag_field="kind", tag="correction_failed"):
    """A finding's correction was dead-lettered for a reason that retrying cannot fix (a `data` error:
    the platform refused what was sent, or no connector can send it). The command agents tell the state
    agent, on the canonical topic keyed by customer; the finding is escalated at once."""

    customer_key: str
    fingerprint: str
    command_id: str
    reason: str
    at: int


StateMessage = CanonicalEvent | CanonicalBatch | Tick | AcceptFinding | CorrectionFailed


class AuditRecord(Struct, frozen=True, kw_only=True):
    """A checkpoint on `concord.audit`: what happened, to what, when, under which correlation id."""

    kind: str
    at: int
    correlation_id: str = ""
    platform: str = ""
    customer_key: str | None = None
    detail: dict[str, Any] = {}


_identity_decoder = msgspec.json.Decoder(IdentityMessage)
_state_decoder = msgspec.json.Decoder(StateMessage)


def decode_state(data: bytes) -> StateMessage:
    return _state_decoder.decode(data)
_encoder = msgspec.json.Encoder()


def decode_identity(data: bytes) -> IdentityMessage:
    return _identity_decoder.decode(data)


def encode(record: Struct) -> bytes:
    return _encoder.encode(record)
