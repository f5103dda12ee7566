"""The Structs the JSON API answers with: what the handlers encode and what `/api/openapi.json` names.

One module of its own, below the handlers (app/api.py, app/web.py, app/commands_api.py) and the route
table (app/contract.py), so that the contract is generated from the very types the answers are
encoded with and neither imports the other. Structs of a lower layer that an answer embeds as they are
(a search hit, a checkpoint, a ledger entry, the customer view) stay where they are made.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Struct

from concord.app.sagas import MAX_NOTE
from concord.connectors.breaker import BreakerStatus
from concord.connectors.drift_index import IndexedFinding
from concord.connectors.ratelimit import Limit
from concord.connectors.reconcile import Schedule
from concord.connectors.timeline import Checkpoint
from concord.core.messages import ResumeSaga
from concord.drift.config import RuleConfig
from concord.drift.saga import SagaView
from concord.drift.watermarks import PlatformHealth


class ApiError(Struct, frozen=True):
    """Every refusal and failure of the API: a one-word `error` and what to do about it (`detail`)."""

    error: str
    detail: str = ""


class Timeline(Struct, frozen=True, kw_only=True):
    """`/api/customers/{key}/timeline`: the customer's newest checkpoints, newest first."""

    key: str
    limit: int
    checkpoints: list[Checkpoint]


class OwnedFinding(IndexedFinding, frozen=True, kw_only=True):
    """A finding as `/api/drift` shows it: the index's record and the team that owns its rule's exceptions."""

    owner: str


class OwnedPage(Struct, frozen=True):
    """`/api/drift`: one page of findings, newest first, and how many match in all."""

    total: int
    offset: int
    limit: int
    items: list[OwnedFinding]


class AcceptBody(Struct, frozen=True, forbid_unknown_fields=True):
    """The optional body of an accept, a retry, an approval or a rejection: why (who acts is whoever is signed
    in: app/access.py)."""

    note: Annotated[str, msgspec.Meta(max_length=2000)] = ""


#: The longest a finding can be snoozed: a longer silence is an accept.
MAX_SNOOZE_HOURS = 90 * 24


class SnoozeBody(Struct, frozen=True, forbid_unknown_fields=True):
    """The body of a snooze: for how many hours, or until when (epoch ms), and why."""

    hours: Annotated[float, msgspec.Meta(gt=0, le=MAX_SNOOZE_HOURS)] | None = None
    until: Annotated[int, msgspec.Meta(gt=0)] | None = None
    note: Annotated[str, msgspec.Meta(max_length=2000)] = ""

    def until_ms(self, now: int) -> int:
        """When the snooze ends; ValueError when the body does not say one time within the bound."""
        if (self.hours is None) == (self.until is None):
            raise ValueError("say how long: `hours` (up to 2160) or `until` (epoch ms), one of them")
        until = self.until if self.until is not None else now + int((self.hours or 0) * 3_600_000)
        if not now < until <= now + MAX_SNOOZE_HOURS * 3_600_000:
            raise ValueError(f"`until` must be in the future, at most {MAX_SNOOZE_HOURS} hours away")
        return until


class ActionTaken(Struct, frozen=True, kw_only=True):
    """An operator's action taken (the state agent applies it when it reads it): what, on which finding, by whom."""

    status: str  # accepted, snoozed, retry_requested, approved, rejected
    fingerprint: str
    by: str


class ListedRule(RuleConfig, frozen=True, kw_only=True):
    """A rule with its effective configuration (`/api/rules`, `concord rules`)."""

    id: str
    name: str
    title: str
    reads: list[str]


class Health(Struct, frozen=True):
    """`/api/health`: is Concord behind on a platform, by how much, since when (docs/reliability.md)."""

    ready: bool
    platforms: list[PlatformHealth]
    behind: list[str]  # the platforms behind, for a glance
    read_at: int  # when the watermarks were last read from Redis (epoch ms; 0: never)
    detail: str = ""


class CommandsStatus(Struct, frozen=True, kw_only=True):
    """`/api/commands/status`: this worker's command execution."""

    executing: bool  # this worker runs the commands role
    redis_reachable: bool
    breakers: list[BreakerStatus]
    halted: list[str]
    connectors: list[str]
    rate_limits: dict[str, Limit]
    detail: str = ""


class ReconcileStatus(Struct, frozen=True):
    """`/api/v1/reconcile`: each platform's reconciliation, its schedule and its last pass (docs/reconcile.md)."""

    platforms: list[Schedule]
    held: list[str]  # platforms a reconciliation holds now (their deadlines wait for its records)


class SagaList(Struct, frozen=True, kw_only=True):
    """`/api/v1/sagas`: the quote-to-cash sagas asked for, most recently changed first, and how many there are in
    each state (all of them, whatever the filters)."""

    sagas: list[SagaView]
    counts: dict[str, int]


class ResumeBody(Struct, frozen=True, forbid_unknown_fields=True):
    """The optional body of a saga's resume: why, or what was fixed (who resumes is whoever is signed in)."""

    note: Annotated[str, msgspec.Meta(max_length=MAX_NOTE)] = ""


class SagaResumed(Struct, frozen=True, kw_only=True):
    """A resume sent to the state agent (it continues the saga from the step that stopped it when it reads it):
    the message sent, and the saga's state and step as the index showed them when it was asked."""

    status: str  # resume_requested
    sent: ResumeSaga
    state: str
    step: str
