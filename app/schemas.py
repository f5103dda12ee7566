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

from concord.connectors.breaker import BreakerStatus
from concord.connectors.drift_index import IndexedFinding
from concord.connectors.ratelimit import Limit
from concord.connectors.timeline import Checkpoint
from concord.drift.config import RuleConfig
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
    """The optional JSON body of an accept: who accepts it and why."""

    by: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] = "admin"
    note: Annotated[str, msgspec.Meta(max_length=2000)] = ""


class Accepted(Struct, frozen=True):
    """An accept taken: the state agent resolves the finding as `accepted` when it reads it."""

    status: str
    fingerprint: str


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
