"""Executes one corrective command so that it takes effect exactly once (ARCHITECTURE section 7).

`Executor.run(command, replay)`:

1. waits for `not_before`;
2. claims the command id in the ledger (connectors/ledger.py) BEFORE any call: `done` -> skip
   (`already_done`), `failed` -> skip unless replayed (`skipped_failed`), `new`/`pending`/replayed ->
   execute (a `pending` one is a crashed run: calling again is safe, the connector is idempotent);
3. loops: the platform's circuit breaker lets the call through (or the executor waits for the
   half-open probe), the attempt is noted in the ledger, the connector is called (the shared rate
   limit gives a token before each HTTP request it sends);
4. success -> re-fetched bytes published (if any), the ledger says `done`, result `done`;
   `ConnectorError` -> breaker, then the error policy (connectors/policy.py): retry after a delay,
   dead letter (published, then the ledger says `failed`), or halt (auth: logged loudly, the command
   waits and is retried every `breaker_reset_seconds` until the credentials work; nothing is lost).

Fail closed on Redis: no connector call happens without a ledger claim. While Redis is unreachable
every ledger or rate-limit operation is retried with capped backoff (logged once per outage, gauge
`concord_command_ledger_up`), so execution pauses with the message unacknowledged and resumes by
itself. Effects that must not be lost (a dead letter, re-fetched bytes) are published and
acknowledged by Kafka before the ledger records the final state: a crash in between leaves the
entry `pending`, so the command runs again rather than vanish.

Actions of platform "concord" go to connectors/internal.py (no breaker, no rate limit). Clock,
sleep and randomness are injected, so unit tests run in no time.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Protocol, TypeVar

from msgspec import Struct
from redis.exceptions import RedisError

from concord.connectors.base import Connector, ConnectorError, ErrorKind, Outcome
from concord.connectors.breaker import GAUGE_VALUE, Breaker, Breakers, BreakerStatus, State
from concord.connectors.http import HttpClient
from concord.connectors.internal import PLATFORM as INTERNAL_PLATFORM
from concord.connectors.internal import InternalActions
from concord.connectors.ledger import Claim, Ledger, StoredOutcome, Verdict
from concord.connectors.policy import DeadLetter, Halt, Retry, RetryPolicy, decide
from concord.connectors.ratelimit import RateLimiter
from concord.core import messages, metrics
from concord.core.messages import Command

log = logging.getLogger("concord.commands")

T = TypeVar("T")

# Result statuses.
DONE: Final = "done"
ALREADY_DONE: Final = "already_done"
DEAD_LETTERED: Final = "dead_lettered"
SKIPPED_FAILED: Final = "skipped_failed"

# Dead-letter reason classes of the executor itself (the policy has "exhausted" and "data").
NO_CONNECTOR: Final = "no_connector"
UNSUPPORTED: Final = "unsupported"

#: Errors that mean "Redis is unreachable" (connection refused, reset, timed out, restarting).
REDIS_ERRORS: Final = (RedisError, OSError)
REDIS_RETRY_FIRST_SECONDS: Final = 0.2
REDIS_RETRY_MAX_SECONDS: Final = 5.0

E_NO_CONNECTOR: Final = (
    "no connector for platform {platform!r} on this worker: it is not configured (set its CONCORD_* API URL "
    "and credentials), so the command was not sent; replay it once the platform is configured"
)
E_UNSUPPORTED: Final = "the {platform} connector does not execute {action!r} (it executes: {actions})"
E_HALTED: Final = (
    "HALTED: %s refused Concord's credentials (%s). Commands for %s wait and are retried every %.0f s; "
    "fix the credentials (CONCORD_%s_* settings) and restart the workers: the next probe then succeeds and "
    "execution resumes"
)
E_REDIS_DOWN: Final = (
    "command execution PAUSED: Redis (ledger, rate limits) is unreachable (%s: %s). No platform call is made "
    "without a ledger claim; retrying with backoff, execution resumes by itself when Redis answers"
)


class CommandResult(Struct, frozen=True, kw_only=True):
    """What became of a command: emitted on `<prefix>.command-results` (key: the command id)."""

    command_id: str
    action: str
    platform: str
    status: str  # done | already_done | dead_lettered | skipped_failed
    attempts: int
    finished_at: int  # epoch ms
    correlation_id: str = ""
    fingerprint: str = ""
    rule: str = ""
    customer_key: str = ""
    record_id: str = ""
    detail: dict[str, Any] = {}  # the platform's outcome detail (or the ledger's, for already_done)
    error_kind: str = ""  # transient | data | auth, for dead_lettered and skipped_failed
    reason: str = ""
    replay: bool = False


class Publisher(Protocol):
    """Kafka effects the executor needs acknowledged before the ledger records a final state."""

    async def fetched(self, command: Command, outcome: Outcome) -> None:
        """Publish a re-fetched record (`outcome.fetched`) to its platform's raw topic."""
        ...

    async def dead_letter(self, command: Command, result: CommandResult) -> None:
        """Publish the command to the command dead-letter topic."""
        ...


class ExecutorStatus(Struct, frozen=True, kw_only=True):
    """This worker's view of command execution (for `/api/commands/status`)."""

    breakers: list[BreakerStatus]
    halted: list[str]
    ledger_reachable: bool
    connectors: list[str]


def dead_letter_headers(result: CommandResult, topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    """Headers of a command dead letter: why, after how many attempts, when, and where it came from."""
    return [
        (messages.DLQ_REASON, result.reason[:1000].encode()),
        (messages.DLQ_KIND, result.error_kind.encode()),
        (messages.DLQ_ATTEMPTS, str(result.attempts).encode()),
        (messages.DLQ_FAILED_AT, str(result.finished_at).encode()),
        (messages.DLQ_PLATFORM, result.platform.encode()),
        (messages.DLQ_COMMAND_ID, result.command_id.encode()),
        (messages.DLQ_SOURCE_TOPIC, topic.encode()),
        (messages.DLQ_SOURCE_PARTITION, str(partition).encode()),
        (messages.DLQ_SOURCE_OFFSET, str(offset).encode()),
    ]


class Executor:
    """Runs commands one at a time per caller; breakers and the Redis state are shared by all calls."""

    def __init__(
        self,
        *,
        connectors: Mapping[str, Connector],
        ledger: Ledger,
        limiter: RateLimiter,
        breakers: Breakers,
        policy: RetryPolicy,
        publisher: Publisher | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        # Read at each command, so connectors created after the executor (on worker start) are seen.
        self.connectors = connectors
        self.ledger = ledger
        self._limiter = limiter
        self.breakers = breakers
        self._policy = policy
        self._publisher = publisher
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._internal = InternalActions(ledger)
        self.redis_up = True
        self._outage_since = 0.0
        metrics.command_ledger_up.set(1)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def status(self) -> ExecutorStatus:
        """Breakers, halted platforms, Redis as last seen, configured connectors."""
        statuses = self.breakers.statuses()
        return ExecutorStatus(
            breakers=statuses, halted=[s.platform for s in statuses if s.state == State.HALTED.value],
            ledger_reachable=self.redis_up, connectors=sorted(self.connectors),
        )

    async def run(self, command: Command, replay: bool = False) -> CommandResult:
        """Execute `command` at most once on its platform (see the module docstring); never raises for
        platform errors: their outcome is in the result."""
        delay = command.not_before / 1000 - self._clock()
        if delay > 0:
            await self._sleep(delay)
        claim: Claim = await self._redis(lambda: self.ledger.claim(command, replay, self._now_ms()))
        entry = claim.entry
        if claim.verdict is Verdict.DONE:
            outcome = entry.outcome or StoredOutcome(status=0)
            return self._finish(command, ALREADY_DONE, entry.attempts, replay, record_id=outcome.record_id,
                                detail=outcome.detail, reason="already applied (ledger: done)")
        if claim.verdict is Verdict.FAILED:
            return self._finish(command, SKIPPED_FAILED, entry.attempts, replay, error_kind=entry.error_kind,
                                reason=entry.error or "dead-lettered earlier; `concord replay commands` re-drives it")
        if claim.verdict is Verdict.PENDING:
            log.info("command %s (%s) was claimed before but not finished (a crash?): executing it again; "
                     "the platform applies it once", command.command_id, command.action)
        # A crashed run's attempts still count (a command killed mid-retry does not get a fresh budget).
        attempts = entry.attempts if claim.verdict is Verdict.PENDING else 0
        connector = self._connector(command)
        if isinstance(connector, DeadLetter):
            return await self._dead_letter(command, connector, ErrorKind.DATA, attempts, replay)
        return await self._execute(command, connector, attempts, replay)

    def _connector(self, command: Command) -> Connector | DeadLetter:
        if command.platform == INTERNAL_PLATFORM:
            connector: Connector | None = self._internal
        else:
            connector = self.connectors.get(command.platform)
        if connector is None:
            return DeadLetter(NO_CONNECTOR, E_NO_CONNECTOR.format(platform=command.platform))
        if command.action not in connector.actions:
            return DeadLetter(UNSUPPORTED, E_UNSUPPORTED.format(platform=command.platform, action=command.action,
                                                                actions=", ".join(sorted(connector.actions))))
        return connector

    async def _execute(self, command: Command, connector: Connector, attempts: int, replay: bool) -> CommandResult:
        platform = command.platform
        is_internal = platform == INTERNAL_PLATFORM
        breaker = None if is_internal else self.breakers[platform]
        while True:
            if breaker is not None:
                await self._breaker_turn(breaker)
            attempts += 1
            try:
                if not is_internal and not self._paces_requests(connector, platform):
                    await self._rate_token(platform)
                await self._redis(functools.partial(self.ledger.record_attempt, command, attempts, self._now_ms()))
                metrics.command_attempts.labels(platform).inc()
                outcome = await self._call(connector, command, is_internal)
            except ConnectorError as exc:
                error = exc
            except asyncio.CancelledError:
                if breaker is not None:
                    breaker.release()
                raise
            else:
                if breaker is not None:
                    self._answered(breaker)
                return await self._done(command, outcome, attempts, replay)
            if error.kind is ErrorKind.AUTH:
                attempts -= 1  # waiting for a person, not a failure of this command: no budget spent
            if breaker is not None:
                self._record_failure(breaker, error)
            decision = decide(self._policy, error, attempts, self._rng)
            if isinstance(decision, Retry):
                metrics.command_retries.labels(platform, error.kind.value).inc()
                log.info("command %s (%s) attempt %d failed: %s; retrying in %.2f s", command.command_id,
                         command.action, attempts, error, decision.delay)
                await self._sleep(decision.delay)
            elif isinstance(decision, DeadLetter):
                return await self._dead_letter(command, decision, error.kind, attempts, replay)
            elif isinstance(decision, Halt) and breaker is None:
                # Internal actions need no credentials; an auth error there is a bug: do not spin on it.
                return await self._dead_letter(command, DeadLetter("data", decision.reason), error.kind, attempts,
                                               replay)
            # Halt: the breaker is halted now; the next turn waits `breaker_reset_seconds`, then probes again.

    async def _call(self, connector: Connector, command: Command, is_internal: bool) -> Outcome:
        if is_internal:
            # The internal actions read the ledger: a Redis outage pauses them like the claim.
            return await self._redis(lambda: connector.execute(command))
        try:
            return await connector.execute(command)
        except ConnectorError:
            raise
        except Exception as exc:  # a connector bug must not lose the command: retried, then dead-lettered
            log.exception("connector %s raised %s on %s", command.platform, type(exc).__name__, command.action)
            raise ConnectorError(ErrorKind.TRANSIENT, f"connector error {type(exc).__name__}: {exc}") from exc

    async def _done(self, command: Command, outcome: Outcome, attempts: int, replay: bool) -> CommandResult:
        if outcome.fetched and self._publisher is not None:
            await self._publisher.fetched(command, outcome)
        stored = StoredOutcome(status=outcome.status, record_id=outcome.record_id, detail=outcome.detail)
        await self._redis(lambda: self.ledger.record_done(command, attempts, stored, self._now_ms()))
        return self._finish(command, DONE, attempts, replay, record_id=outcome.record_id, detail=outcome.detail)

    async def _dead_letter(self, command: Command, decision: DeadLetter, kind: ErrorKind, attempts: int,
                           replay: bool) -> CommandResult:
        result = self._finish(command, DEAD_LETTERED, attempts, replay, error_kind=kind.value, reason=decision.reason)
        metrics.command_dead_letters.labels(command.platform, decision.reason_class).inc()
        log.warning("command %s (%s %s, rule %s) dead-lettered after %d attempt(s): %s", command.command_id,
                    command.platform, command.action, command.rule, attempts, decision.reason)
        if self._publisher is not None:
            await self._publisher.dead_letter(command, result)
        await self._redis(lambda: self.ledger.record_failed(command, attempts, kind.value, decision.reason,
                                                            self._now_ms()))
        return result

    def _finish(self, command: Command, status: str, attempts: int, replay: bool, *, record_id: str = "",
                detail: dict[str, Any] | None = None, error_kind: str = "", reason: str = "") -> CommandResult:
        metrics.commands_executed.labels(command.platform, command.action, status).inc()
        return CommandResult(
            command_id=command.command_id, action=command.action, platform=command.platform, status=status,
            attempts=attempts, finished_at=self._now_ms(), correlation_id=command.correlation_id,
            fingerprint=command.fingerprint, rule=command.rule, customer_key=command.customer_key,
            record_id=record_id, detail=detail or {}, error_kind=error_kind, reason=reason, replay=replay,
        )

    async def _breaker_turn(self, breaker: Breaker) -> None:
        """Wait until the breaker lets a call through (closed, or this call is the probe)."""
        announced = False
        while True:
            wait = breaker.allow()
            self._gauge(breaker)
            if wait <= 0:
                return
            if not announced and breaker.state is State.OPEN:
                log.warning("%s circuit breaker open: next call in %.1f s", breaker.platform, wait)
                announced = True
            await self._sleep(wait)

    def _answered(self, breaker: Breaker) -> None:
        if breaker.state is State.HALTED:
            log.warning("%s accepts Concord's credentials again: halted commands resume", breaker.platform)
        breaker.on_success()
        self._gauge(breaker)

    def _record_failure(self, breaker: Breaker, error: ConnectorError) -> None:
        if error.kind is ErrorKind.DATA:
            self._answered(breaker)  # the platform answered; only this command was refused
        elif error.kind is ErrorKind.AUTH:
            if breaker.state is not State.HALTED:
                metrics.command_halts.labels(breaker.platform).inc()
                log.error(E_HALTED, breaker.platform, error.reason, breaker.platform,
                          self.breakers.reset_seconds, breaker.platform.upper())
            breaker.on_auth(error.reason)
        else:
            breaker.on_transient()
        self._gauge(breaker)

    @staticmethod
    def _gauge(breaker: Breaker) -> None:
        metrics.breaker_state.labels(breaker.platform).set(GAUGE_VALUE[breaker.state])

    def _paces_requests(self, connector: Connector, platform: str) -> bool:
        """Have the connector's HTTP client take a rate token before each request it sends.

        A platform's limit counts requests, and some actions make two (a lookup, then the write). A
        connector without an `HttpClient` takes one token per attempt instead.
        """
        http = getattr(connector, "http", None)
        if not isinstance(http, HttpClient):
            return False
        if http.pace is None:
            http.pace = functools.partial(self._rate_token, platform)
        return True

    async def _rate_token(self, platform: str) -> None:
        while True:
            wait = await self._redis(lambda: self._limiter.take(platform))
            if wait <= 0:
                return
            metrics.rate_limit_waits.labels(platform).inc()
            metrics.rate_limit_wait_seconds.labels(platform).inc(wait)
            await self._sleep(wait)

    async def _redis(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run a ledger or rate-limit operation, waiting out a Redis outage (fail closed)."""
        delay = REDIS_RETRY_FIRST_SECONDS
        while True:
            try:
                result = await operation()
            except REDIS_ERRORS as exc:
                if self.redis_up:
                    self.redis_up = False
                    self._outage_since = self._clock()
                    metrics.command_ledger_up.set(0)
                    log.error(E_REDIS_DOWN, type(exc).__name__, exc)
                await self._sleep(delay)
                delay = min(delay * 2, REDIS_RETRY_MAX_SECONDS)
                continue
            if not self.redis_up:
                self.redis_up = True
                metrics.command_ledger_up.set(1)
                log.warning("Redis reachable again after %.1f s: command execution resumes",
                            self._clock() - self._outage_since)
            return result
