"""The error policy of command execution, in one place: a failed call -> retry, dead letter or halt. Pure.

* `transient` (timeouts, 5xx, 429, NetSuite concurrency limits): retried after an exponential backoff
  with full jitter (a random delay in `[0, min(cap, base * 2^(attempt-1))]`, so workers that failed
  together do not retry together); a platform's `Retry-After` wins when it asks for longer. After
  `command_max_attempts` attempts the command is dead-lettered as `exhausted: <last error>`.
* `data`: the platform refused the content; the same request cannot succeed, so it is dead-lettered
  at once with the platform's reason.
* `auth`: every command to the platform would fail the same way: the platform halts until a person
  fixes the credentials (the executor keeps probing; after the fix and a restart it resumes).
"""

from __future__ import annotations

import random
from typing import Final

from msgspec import Struct

from concord.connectors.base import ConnectorError, ErrorKind
from concord.core.settings import Settings

#: Reason classes of dead letters (a metric label and the start of the reason text).
EXHAUSTED: Final = "exhausted"
REJECTED: Final = "data"


class Retry(Struct, frozen=True):
    """Call again after `delay` seconds."""

    delay: float


class DeadLetter(Struct, frozen=True):
    """Give up on this command: it goes to the dead-letter topic (replayable) with `reason`."""

    reason_class: str  # EXHAUSTED or REJECTED (or the executor's own, e.g. "no_connector")
    reason: str


class Halt(Struct, frozen=True):
    """Stop calling the platform until its credentials work again; the command waits, it is not lost."""

    reason: str


Decision = Retry | DeadLetter | Halt


class RetryPolicy(Struct, frozen=True, kw_only=True):
    """How long and how often transient failures are retried."""

    max_attempts: int
    backoff_seconds: float
    backoff_max_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        """`command_max_attempts`, `command_backoff_seconds` and `command_backoff_max_seconds`."""
        return cls(max_attempts=settings.command_max_attempts, backoff_seconds=settings.command_backoff_seconds,
                   backoff_max_seconds=settings.command_backoff_max_seconds)

    def backoff_ceiling(self, attempt: int) -> float:
        """The largest delay after failed attempt number `attempt` (1-based), before jitter."""
        # min() before the power would overflow: 2^1000 is a float error, not a long wait.
        exponent = min(attempt - 1, 64)
        return min(self.backoff_max_seconds, self.backoff_seconds * (2.0 ** exponent))


def decide(policy: RetryPolicy, error: ConnectorError, attempt: int, rng: random.Random) -> Decision:
    """What to do after attempt number `attempt` (1-based, counted against the budget) failed with `error`."""
    if error.kind is ErrorKind.AUTH:
        return Halt(f"auth: {error.reason}")
    if error.kind is ErrorKind.DATA:
        return DeadLetter(REJECTED, str(error))  # "data: <the platform's reason> (HTTP 4xx)"
    if attempt >= policy.max_attempts:
        return DeadLetter(EXHAUSTED, f"{EXHAUSTED}: {error}")
    delay = rng.uniform(0.0, policy.backoff_ceiling(attempt))
    if error.retry_after is not None and error.retry_after > delay:
        delay = error.retry_after
    return Retry(delay)
