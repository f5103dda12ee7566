"""The error policy: transient -> backoff with full jitter (Retry-After wins when longer) until the
budget is spent, then dead letter; data -> dead letter at once; auth -> halt."""

from __future__ import annotations

import random

from concord.connectors.base import ConnectorError, ErrorKind
from concord.connectors.policy import DeadLetter, Halt, Retry, RetryPolicy, decide

POLICY = RetryPolicy(max_attempts=5, backoff_seconds=0.5, backoff_max_seconds=4.0)


class HighestRandom(random.Random):
    """Jitter that always picks the top of the range, so the ceiling itself is visible."""

    def uniform(self, a: float, b: float) -> float:
        return b


def transient(retry_after: float | None = None) -> ConnectorError:
    return ConnectorError(ErrorKind.TRANSIENT, "service unavailable", status=503, retry_after=retry_after)


def test_transient_errors_back_off_exponentially_up_to_the_cap() -> None:
    delays = [decide(POLICY, transient(), attempt, HighestRandom()) for attempt in (1, 2, 3, 4)]
    assert delays == [Retry(0.5), Retry(1.0), Retry(2.0), Retry(4.0)]
    assert POLICY.backoff_ceiling(60) == 4.0  # no overflow far past the cap


def test_full_jitter_stays_within_the_ceiling_and_is_reproducible_with_a_seed() -> None:
    first = [decide(POLICY, transient(), 3, random.Random(7)) for _ in range(3)]
    again = [decide(POLICY, transient(), 3, random.Random(7)) for _ in range(3)]
    assert first == again
    rng = random.Random(1)
    delays = [decide(POLICY, transient(), 3, rng) for _ in range(200)]
    assert all(isinstance(d, Retry) and 0.0 <= d.delay <= 2.0 for d in delays)
    assert len({d.delay for d in delays if isinstance(d, Retry)}) > 100  # spread, not one fixed delay


def test_retry_after_wins_when_longer_than_the_backoff() -> None:
    assert decide(POLICY, transient(retry_after=30.0), 1, HighestRandom()) == Retry(30.0)
    # Shorter than the drawn backoff: the backoff stands.
    assert decide(POLICY, transient(retry_after=0.1), 3, HighestRandom()) == Retry(2.0)


def test_transient_errors_are_dead_lettered_when_the_attempts_are_spent() -> None:
    decision = decide(POLICY, transient(), 5, random.Random(0))
    assert decision == DeadLetter("exhausted", "exhausted: transient: service unavailable (HTTP 503)")


def test_data_errors_are_dead_lettered_at_once() -> None:
    error = ConnectorError(ErrorKind.DATA, "No such customer: cus_X", status=404)
    assert decide(POLICY, error, 1, random.Random(0)) == DeadLetter("data", "data: No such customer: cus_X (HTTP 404)")


def test_auth_errors_halt_the_platform_whatever_the_attempt() -> None:
    error = ConnectorError(ErrorKind.AUTH, "Invalid API Key provided", status=401)
    assert decide(POLICY, error, 1, random.Random(0)) == Halt("auth: Invalid API Key provided")
    assert decide(POLICY, error, 99, random.Random(0)) == Halt("auth: Invalid API Key provided")


def test_policy_from_settings() -> None:
    from concord.core.settings import Settings

    policy = RetryPolicy.from_settings(Settings(command_max_attempts=3, command_backoff_seconds=1.0,
                                                command_backoff_max_seconds=9.0))
    assert policy == RetryPolicy(max_attempts=3, backoff_seconds=1.0, backoff_max_seconds=9.0)
