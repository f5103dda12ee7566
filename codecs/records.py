"""What Concord's identity and canonical topics carry: canonical events, their envelopes and the control
records beside them (the control records themselves are `core/messages.py`'s)."""

from __future__ import annotations

import msgspec
from msgspec import Struct

from concord.codecs.model import CanonicalEvent
from concord.core.messages import (
    AcceptFinding,
    CorrectionFailed,
    DecideCorrection,
    ParkSweep,
    Repoint,
    ResumeSaga,
    RetryFinding,
    SagaStepResult,
    SnoozeFinding,
    Tick,
)


class IdentityBatch(Struct, frozen=True, kw_only=True, tag_field="kind", tag="batch"):
    """Many events of one identity partition in one Kafka message (the ingest agent's envelopes).

    The identity agent takes each event as if it had come alone, keyed by its `local_customer`: every
    event must carry one, in the order it was read, and the message must go to the partition of
    those ids (`concord.core.partitioning.partition_for`).
    """

    events: list[CanonicalEvent]


#: One message of the identity topic, as the identity step takes it (an `IdentityBatch` holds many).
IdentityMessage = CanonicalEvent | Repoint | ParkSweep


class CanonicalBatch(Struct, frozen=True, kw_only=True, tag_field="kind", tag="batch"):
    """Many canonical events of one partition in one Kafka message (the ingest and identity agents'
    envelopes, bulk producers, benchmarks).

    The state agent handles it as one Faust event, grouping by customer key, so per-message costs
    are paid once for the batch. Every event must carry its customer key, and the message must go
    to the partition of those keys (`concord.core.partitioning.partition_for`).
    """

    events: list[CanonicalEvent]


StateMessage = (CanonicalEvent | CanonicalBatch | Tick | AcceptFinding | SnoozeFinding | RetryFinding
                | DecideCorrection | CorrectionFailed | SagaStepResult | ResumeSaga)


_identity_decoder = msgspec.json.Decoder(IdentityMessage | IdentityBatch)
_state_decoder = msgspec.json.Decoder(StateMessage)


def decode_state(data: bytes) -> StateMessage:
    return _state_decoder.decode(data)


def decode_identity(data: bytes) -> IdentityMessage | IdentityBatch:
    return _identity_decoder.decode(data)

