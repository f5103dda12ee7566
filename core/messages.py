"""The messages that cross folders: findings' records, commands, control records, audit, Kafka headers.

One module, so that a codec, a rule, a connector, an agent and a view agree on a message by importing
it from the layer below them all, not from whichever folder needed it first. Canonical events and
the envelopes that carry them are the codecs' (`codecs/model.py`, `codecs/records.py`).

Every Kafka header Concord writes is named here: dead letters keep the original bytes and headers
untouched and add these to say where a record came from and why it could not be used.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
from msgspec import Struct

# ---------------------------------------------------------------- Kafka headers

#: Dead letters (`<prefix>.dlq.ingest`, `<prefix>.dlq.commands`): why, from where, when.
DLQ_REASON: Final = "concord-dlq-reason"
DLQ_DETAIL: Final = "concord-dlq-detail"
DLQ_SOURCE_TOPIC: Final = "concord-source-topic"
DLQ_SOURCE_PARTITION: Final = "concord-source-partition"
DLQ_SOURCE_OFFSET: Final = "concord-source-offset"
DLQ_CODEC_VERSION: Final = "concord-codec-version"
DLQ_PLATFORM: Final = "concord-platform"
DLQ_FAILED_AT: Final = "concord-failed-at"
#: Command dead letters only: the error class (transient, data, auth), attempts made, the command.
DLQ_KIND: Final = "concord-dlq-kind"
DLQ_ATTEMPTS: Final = "concord-dlq-attempts"
DLQ_COMMAND_ID: Final = "concord-command-id"
#: Headers the ingest path adds to an ingest dead letter; every other header is the original delivery's.
INGEST_DLQ_HEADERS: Final = frozenset({
    DLQ_REASON, DLQ_DETAIL, DLQ_SOURCE_TOPIC, DLQ_SOURCE_PARTITION, DLQ_SOURCE_OFFSET, DLQ_CODEC_VERSION,
    DLQ_PLATFORM, DLQ_FAILED_AT,
})
#: A command re-sent by `concord replay` (value "1"): the ledger may re-open a failed command.
REPLAY: Final = "concord-replay"
#: When the webhook ingress received a delivery (epoch ms), on the raw record beside the platform's headers.
RECEIVED_AT: Final = "concord-received-at"
#: A record a re-read command fetched from a platform's API (value: the command id), on the raw topic.
REFETCHED_BY: Final = "concord-refetched-by"
#: A record a reconciliation listed from a platform's list API (value: the pass id), on the raw topic.
SNAPSHOT: Final = "concord-snapshot"
#: On a snapshot of a pass run with `concord reconcile --dry-run` (value "1"): what it reveals is not corrected.
SNAPSHOT_DRY_RUN: Final = "concord-snapshot-dry-run"


# ---------------------------------------------------------------- findings


class Observation(Struct, gc=False, frozen=True, kw_only=True, array_like=True):
    """One side of a disagreement: a value as a system holds it, with its version and source time."""

    system: str  # salesforce, stripe, zendesk, netsuite, concord
    record: str  # the record's id in that system ("" when the record is missing)
    field: str
    value: Any
    version: int = 0  # the record's version (Stamp.ts) when read; 0 when missing
    at: int = 0  # source time (epoch ms) of that value


class DriftItem(Struct, gc=False, kw_only=True, frozen=True, array_like=True):
    """The lifecycle of one finding of a customer, kept in its state (see drift/lifecycle.py).

    Array-like, as the state's records: field names would repeat in every stored state (new fields go
    last, with a default, so that states stored before them still decode).
    """

    fingerprint: str
    rule: str
    subject: str
    status: str  # pending, open, commanded, escalated, resolved
    severity: str
    since: int  # when the disagreement began (source time)
    due: int  # since + grace: not reported before
    action: str = "review"
    dry_run: bool = False
    first_seen: int = 0  # when it was reported (0 while pending)
    last_seen: int = 0
    generation: int = 0  # corrections commanded so far
    last_command_at: int = 0
    command_id: str = ""
    resolution: str | None = None  # converged, corrected, accepted
    resolved_at: int = 0
    summary: str = ""
    evidence: tuple[Observation, ...] = ()
    note: str = ""  # why it was escalated (for the person who takes it over)
    # Of the event that first revealed it: the steps a deadline takes (no event) carry it, so a finding
    # opened when its grace expired, its commands and their results still name the event behind them.
    correlation_id: str = ""
    # Until when (epoch ms) a person snoozed it: neither reported, commanded nor escalated before (0: never).
    snoozed_until: int = 0
    # The command a rule in `approve` mode would send, waiting for a person ("" when none waits).
    awaiting: str = ""


class Transition(Struct, frozen=True, kw_only=True):
    """One lifecycle step of a finding, published on `concord.drift` (and checkpointed on audit)."""

    fingerprint: str
    rule: str
    customer_key: str
    subject: str
    status: str
    previous: str | None
    severity: str
    at: int
    since: int
    first_seen: int
    last_seen: int
    generation: int = 0
    command_id: str = ""
    action: str = "review"
    dry_run: bool = False
    resolution: str | None = None
    summary: str = ""
    evidence: tuple[Observation, ...] = ()
    correlation_id: str = ""
    note: str = ""  # why it was escalated


# ---------------------------------------------------------------- commands


class Command(Struct, frozen=True, kw_only=True):
    """A corrective command on `concord.commands` (executed by the command agent)."""

    command_id: str
    action: str
    platform: str
    target: dict[str, str]
    payload: dict[str, Any]
    fingerprint: str
    rule: str
    customer_key: str
    generation: int
    correlation_id: str
    created_at: int
    not_before: int = 0
    attempt: int = 0
    # When this occurrence of the finding began (its `since`): every correction of one occurrence
    # carries the same, a drift that comes back after its correction another. Connectors whose
    # platform has no idempotency key derive a record key from it (NetSuite payments).
    occurrence: int = 0


def command_id(fingerprint: str, action: str, generation: int, since: int = 0) -> str:
    """Deterministic: the same correction of the same finding always has the same id.

    `since` (when this occurrence of the disagreement began, from source times) tells occurrences
    apart: a drift that was corrected and comes back is a new occurrence whose first correction must
    not carry the id the ledger already holds as done (it would be skipped as already applied).
    """
    key = f"{fingerprint}|{action}|{generation}" + (f"|{since}" if since else "")
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def command_key(command: Command) -> bytes:
    """Kafka key of a command: its target record, so commands for one record stay in order."""
    target = next(iter(command.target.values()), command.customer_key)
    return f"{command.platform}:{target}".encode()


# ---------------------------------------------------------------- control records


class Repoint(Struct, frozen=True, kw_only=True, tag_field="kind", tag="repoint"):
    """Identity control: from now on `local_id` belongs to `customer_key` (after a CRM merge)."""

    local_id: str
    customer_key: str
    reason: str
    correlation_id: str = ""


class ParkSweep(Struct, frozen=True, kw_only=True, tag_field="kind", tag="park_sweep"):
    """Identity control, sent by the identity agent's own sweep: expire what waited too long for `local_id`.

    The sweep (a timer) may not write the table; this record, keyed by the local id, is processed in
    the stream in order with the id's events. It only ever expires: harmless if repeated or stale.
    """

    local_id: str
    at: int  # when the sweep found an expired event (epoch ms)


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


class SnoozeFinding(Struct, frozen=True, kw_only=True, tag_field="kind", tag="snooze"):
    """A person snoozed a finding until `until` (epoch ms; operator API): silent until then."""

    customer_key: str
    fingerprint: str
    by: str
    until: int
    note: str = ""


class RetryFinding(Struct, frozen=True, kw_only=True, tag_field="kind", tag="retry"):
    """A person asked for a finding's correction now (operator API): its next generation is commanded."""

    customer_key: str
    fingerprint: str
    by: str
    note: str = ""


class DecideCorrection(Struct, frozen=True, kw_only=True, tag_field="kind", tag="decide"):
    """A person approved (or rejected) the correction of a finding waiting for approval (operator API)."""

    customer_key: str
    fingerprint: str
    by: str
    approve: bool
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


#: The `rule` of a quote-to-cash saga's commands (their `fingerprint` is `saga_fingerprint(opportunity)`).
SAGA_RULE: Final = "Q2C"
_SAGA_PREFIX: Final = "q2c:"


def saga_fingerprint(opportunity_id: str) -> str:
    """The `fingerprint` of every command of one opportunity's saga: its results find their way back by it."""
    return f"{_SAGA_PREFIX}{opportunity_id}"


def saga_opportunity(fingerprint: str) -> str | None:
    """The opportunity a saga command's fingerprint names (None: not a saga's)."""
    return fingerprint[len(_SAGA_PREFIX):] if fingerprint.startswith(_SAGA_PREFIX) else None


class SagaStepResult(Struct, frozen=True, kw_only=True, tag_field="kind", tag="saga_step"):
    """What became of a saga's command: the command agents tell the customer's state agent, on the canonical
    topic keyed by customer, so that the saga (co-partitioned with the customer) takes its next step."""

    customer_key: str
    opportunity_id: str
    command_id: str
    action: str
    status: str  # the executor's: done, already_done, dead_lettered, skipped_failed
    at: int
    record_id: str = ""
    error_kind: str = ""  # transient, data, auth (when it failed)
    reason: str = ""


class ResumeSaga(Struct, frozen=True, kw_only=True, tag_field="kind", tag="saga_resume"):
    """Continue a paused (or failed, or compensated) saga from the step that stopped it: a person
    (`concord saga resume`, the console) or D10's `saga.resume` correction."""

    customer_key: str
    opportunity_id: str
    by: str
    note: str = ""


class AuditRecord(Struct, frozen=True, kw_only=True):
    """A checkpoint on `concord.audit`: what happened, to what, when, under which correlation id."""

    kind: str
    at: int
    correlation_id: str = ""
    platform: str = ""
    customer_key: str | None = None
    detail: dict[str, Any] = {}


def iso_minutes(at: int) -> str:
    """An epoch-ms time as a person reads it: ISO 8601, UTC, to the minute."""
    return datetime.fromtimestamp(at / 1000, UTC).isoformat(timespec="minutes")


def now_ms() -> int:
    """The wall clock in epoch ms, the unit of every time in these messages."""
    return int(time.time() * 1000)


_encoder = msgspec.json.Encoder()


def encode(message: Struct) -> bytes:
    """A message as JSON bytes, the value of its Kafka record."""
    return _encoder.encode(message)
