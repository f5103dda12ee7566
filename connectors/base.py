"""The contract every platform connector keeps, and the one place errors are classified.

A connector turns a corrective `Command` (drift/lifecycle.py) into the platform's real API call and
returns an `Outcome`, or raises `ConnectorError` carrying its `ErrorKind`:

* `transient`: worth retrying (timeouts, connection errors, 5xx, 429, NetSuite concurrency limits);
  `retry_after` is set when the platform said how long to wait.
* `data`: the platform refused this command's content (4xx other than auth/429): retrying the same
  request cannot help; it goes to the dead-letter topic with the platform's reason.
* `auth`: credentials are missing, wrong or lack permission (401/403): every command to that
  platform would fail the same way, so execution for the platform halts until a person fixes it.

Idempotency toward the platform is the connector's job: Stripe and Zendesk requests carry
`Idempotency-Key: <command_id>` (a saga's Stripe creations carry the saga's own key, the same for every
run of the step: docs/saga.md); NetSuite writes are upserts by external id and Salesforce writes
PATCH the record by id (setting the same values twice changes nothing). A retry
of the same command therefore never applies twice, even after a crash between the call and the
ledger write.
"""

from __future__ import annotations

import enum
from typing import Any, Protocol

from msgspec import Struct

from concord.core.messages import Command


class ErrorKind(enum.StrEnum):
    TRANSIENT = "transient"
    DATA = "data"
    AUTH = "auth"


class ConnectorError(Exception):
    """A platform call failed; `kind` decides retry, dead letter or halt (connectors/policy.py)."""

    def __init__(self, kind: ErrorKind, reason: str, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{kind.value}: {reason}" + (f" (HTTP {status})" if status is not None else ""))
        self.kind = kind
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


def classify_status(status: int) -> ErrorKind:
    """The kind of an HTTP error status: the single mapping every connector uses."""
    if status in (401, 403):
        return ErrorKind.AUTH
    if status in (408, 409, 425, 429) or status >= 500:
        # 409: Stripe's "idempotent request in progress", NetSuite record lock: retry later.
        return ErrorKind.TRANSIENT
    return ErrorKind.DATA


class Outcome(Struct, frozen=True, kw_only=True):
    """What a successful call did on the platform."""

    status: int  # HTTP status the platform answered
    record_id: str = ""  # id of the record written (or read)
    detail: dict[str, Any] = {}  # a few fields of the response worth keeping in the result
    # A read (re-fetch) returns the record as the platform's REST API gave it: the command agent
    # feeds these bytes to the platform's raw topic, where the codec turns them into events.
    fetched: bytes = b""


class Connector(Protocol):
    """One platform's API, as the command agent sees it."""

    platform: str
    actions: frozenset[str]  # action names this connector executes (e.g. "support.suspend_entitlement")

    async def execute(self, command: Command) -> Outcome:
        """Perform `command` once on the platform; raise `ConnectorError` on failure."""
        ...

    async def close(self) -> None:
        """Release the HTTP session."""
        ...
