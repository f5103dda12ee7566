"""Command agents: corrective commands -> the executor (ledger, breaker, rate limit, connector) -> results.

Commands arrive on `concord.commands` (keyed by their target record). A router agent forwards each,
with its key and headers, to its platform's lane (`concord.commands.<platform>`, and
`concord.commands.concord` for Concord's own actions and unknown platforms). One executing agent per
lane reads it with `concurrency=1`: commands for one record stay in order, and a platform whose
breaker is open, which is rate-limited or halted (credentials refused) holds up only its own lane;
the other platforms' corrections go on. A command re-sent by `concord replay` carries the header
`concord-replay: 1` (kept by the router), which lets the ledger re-open a dead-lettered command.

Every command yields a `CommandResult` on `concord.command-results` (key: command id) and, when it is a
customer's, a checkpoint of it on `concord.audit` (key: the customer; connectors/timeline.py). Dead letters
go to `concord.dlq.commands`: the command JSON as value, the original key, and headers saying why
(`concord-dlq-reason`, `-kind`, `-attempts`, `concord-failed-at`, source topic/partition/offset).
A successful re-read (`Outcome.fetched`) is produced to the platform's raw topic (key: record id),
where the ingest agent decodes the record like any other delivery. Both are acknowledged by Kafka
before the ledger records the final state.

The message is acknowledged only after the executor returned (the router: after the broker
acknowledged the forwarded copy): while Redis is unreachable or a platform is halted, the lane waits
on its current command (nothing is skipped), and the other agents of the worker go on detecting drift.

Connectors (their HTTP sessions) are created on the first command, inside the worker's event loop,
and closed when the worker stops.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import faust
import msgspec

from concord.codecs.errors import as_decode_error
from concord.connectors.base import Connector, ErrorKind, Outcome
from concord.connectors.breaker import Breakers
from concord.connectors.executor import (
    DEAD_LETTERED,
    DONE,
    SKIPPED_FAILED,
    CommandResult,
    Executor,
    dead_letter_headers,
)
from concord.connectors.internal import SAGA_RESUME
from concord.connectors.ledger import RedisLedger
from concord.connectors.policy import RetryPolicy
from concord.connectors.ratelimit import RedisRateLimiter, limits_from_settings
from concord.connectors.registry import configured_connectors
from concord.connectors.timeline import command_result
from concord.core import messages, metrics
from concord.core.messages import Command
from concord.core.settings import Settings

if TYPE_CHECKING:
    from concord.agents.context import Concord

log = logging.getLogger("concord.commands")

ConnectorFactory = Callable[[Settings], Mapping[str, Connector]]

_decode_command = msgspec.json.Decoder(Command).decode


def decode_command(data: bytes) -> Command:
    """A command as the state agent encodes it (msgspec JSON)."""
    return _decode_command(data)


def header_pairs(headers: Any) -> Iterable[tuple[str, bytes]]:
    """Headers as (name, bytes) pairs, whether Faust gives them as pairs or as a mapping."""
    if not headers:
        return ()
    pairs: Iterable[tuple[str, Any]] = headers.items() if isinstance(headers, Mapping) else headers
    return [(k, v if isinstance(v, bytes) else str(v).encode()) for k, v in pairs]


def header(headers: Any, name: str) -> bytes | None:
    """One header of a Kafka message."""
    return next((value for key, value in header_pairs(headers) if key == name), None)


def is_replay(headers: Any) -> bool:
    """Whether the message was re-sent by `concord replay` (header `concord-replay: 1`)."""
    return header(headers, messages.REPLAY) == b"1"


class KafkaPublisher:
    """The executor's Kafka effects, each awaited until the broker acknowledged it."""

    def __init__(self, concord: Concord) -> None:
        self._concord = concord
        self._dlq = concord.topics[concord.names.dlq_commands]
        self.key: bytes | None = None
        self.source: tuple[str, int, int] = ("", -1, -1)

    def at(self, message: Any) -> None:
        """The command message being executed (its key and position go on a dead letter)."""
        self.key = message.key
        self.source = (message.topic, message.partition, message.offset)

    async def fetched(self, command: Command, outcome: Outcome) -> None:
        topic_name = self._concord.names.raw.get(command.platform)
        if topic_name is None:
            log.warning("command %s re-fetched a %s record, but there is no raw topic for that platform",
                        command.command_id, command.platform)
            return
        pending = await self._concord.topics[topic_name].send(
            key=outcome.record_id.encode() or None, value=outcome.fetched,
            headers=[(messages.REFETCHED_BY, command.command_id.encode())])
        await pending

    async def dead_letter(self, command: Command, result: CommandResult) -> None:
        pending = await self._dlq.send(key=self.key, value=messages.encode(command),
                                       headers=dead_letter_headers(result, *self.source))
        await pending


def saga_signal(command: Command, result: CommandResult) -> messages.SagaStepResult | messages.ResumeSaga | None:
    """What the customer's saga must hear of this command (None: it is no saga's).

    Every result of a saga's own command goes back to the saga (it waits for it to take its next step);
    D10's `saga.resume`, once the ledger let it through, resumes the saga of its opportunity.
    """
    if not command.customer_key:
        return None
    opportunity = messages.saga_opportunity(command.fingerprint) if command.rule == messages.SAGA_RULE else None
    if opportunity is not None:
        return messages.SagaStepResult(
            customer_key=command.customer_key, opportunity_id=opportunity, command_id=command.command_id,
            action=command.action, status=result.status, at=result.finished_at, record_id=result.record_id,
            error_kind=result.error_kind, reason=result.reason)
    if command.action == SAGA_RESUME and result.status == DONE and command.target.get("opportunity_id"):
        return messages.ResumeSaga(customer_key=command.customer_key, opportunity_id=command.target["opportunity_id"],
                                   by=f"{command.rule or 'concord'}:{command.command_id[:12]}")
    return None


def correction_failed(command: Command, result: CommandResult) -> messages.CorrectionFailed | None:
    """What the state agent must hear of a finding's correction that no retry can make succeed.

    A `data` dead letter (the platform refused what was sent, or no connector can send it), also when
    the ledger remembers it as failed (the worker may have stopped before telling). Transient dead
    letters (attempts used up) are not: the finding's next generation tries again.
    """
    if result.status not in (DEAD_LETTERED, SKIPPED_FAILED) or result.error_kind != ErrorKind.DATA.value:
        return None
    if not command.fingerprint or not command.customer_key or command.rule == messages.SAGA_RULE:
        return None  # not a finding's correction (a re-read, a saga's step: `saga_signal`)
    return messages.CorrectionFailed(customer_key=command.customer_key, fingerprint=command.fingerprint,
                                     command_id=command.command_id, reason=result.reason, at=result.finished_at)


def register(concord: Concord, connector_factory: ConnectorFactory = configured_connectors) -> Executor:
    """Add the router and one executing agent per lane; returns an executor (the status API reads the
    breakers and connectors, which every lane shares)."""
    app = concord.app
    settings = concord.settings
    names = concord.names
    results = concord.topics[names.command_results]
    audit = concord.topics[names.audit]
    canonical = concord.topics[names.canonical]
    dlq = concord.topics[names.dlq_commands]
    client = concord.redis
    connectors: dict[str, Connector] = {}
    ledger = RedisLedger(client, settings.topic_prefix, settings.command_ledger_ttl_seconds)
    limiter = RedisRateLimiter(client, settings.topic_prefix, limits_from_settings(settings))
    breakers = Breakers(settings.breaker_failure_threshold, settings.breaker_reset_seconds, time.time)
    policy = RetryPolicy.from_settings(settings)
    opened = False
    processed = metrics.events_processed.labels("commands")

    def open_connectors() -> None:
        nonlocal opened
        if not opened:
            connectors.update(connector_factory(settings))
            opened = True
            log.info("command execution ready: connectors for %s", ", ".join(sorted(connectors)) or "no platform")

    async def undecodable(message: Any, value: bytes, exc: Exception) -> None:
        # Only Concord writes commands: a bug or a foreign producer. Keep the bytes where a person looks.
        # Whatever the decode raised (too deep, too large), one line without a traceback or a value.
        failure = as_decode_error(exc, "command")
        log.error("unreadable command at %s[%d]@%d: %s: %s", message.topic, message.partition, message.offset,
                  failure.reason, failure.detail)
        metrics.command_dead_letters.labels("unknown", "undecodable").inc()
        result = CommandResult(command_id="", action="", platform="unknown", status="dead_lettered", attempts=0,
                               finished_at=int(time.time() * 1000), error_kind="data",
                               reason=f"undecodable command: {failure.reason}: {failure.detail}")
        headers = dead_letter_headers(result, message.topic, message.partition, message.offset)
        await dlq.send(key=message.key, value=value, headers=headers)

    async def failed(message: Any, value: bytes, command: Command, exc: Exception) -> None:
        # A bug while handling a readable command: loud (traceback), and the command is kept, not lost,
        # so that the lane goes on with the next one (replay it once the bug is fixed).
        log.exception("command %s at %s[%d]@%d failed in Concord itself (%s): dead-lettered", command.command_id,
                      message.topic, message.partition, message.offset, type(exc).__name__)
        metrics.command_dead_letters.labels(command.platform, "internal_error").inc()
        result = CommandResult(command_id=command.command_id, action=command.action, platform=command.platform,
                               status="dead_lettered", attempts=0, finished_at=int(time.time() * 1000),
                               error_kind="data", reason=f"internal_error: {type(exc).__name__} in Concord")
        headers = dead_letter_headers(result, message.topic, message.partition, message.offset)
        await dlq.send(key=message.key, value=value, headers=headers)

    async def commands_in(stream: faust.StreamT[bytes]) -> AsyncIterator[tuple[Any, Command]]:
        """The stream's events with their commands; an unreadable one is dead-lettered and skipped."""
        async for event in stream.events():
            try:
                command = decode_command(event.value)
            except Exception as exc:  # not only msgspec's errors: too deep is a RecursionError
                await undecodable(event.message, event.value, exc)
                continue
            yield event, command

    lanes = {lane: concord.topics[topic] for lane, topic in names.command_lanes.items()}

    @app.agent(concord.topics[names.commands], name="concord.commands", concurrency=1)
    async def route(stream: faust.StreamT[bytes]) -> None:
        async for event, command in commands_in(stream):
            message = event.message
            lane = lanes.get(command.platform, lanes["concord"])
            pending = await lane.send(key=message.key, value=event.value, headers=list(header_pairs(message.headers)))
            await pending

    def lane_agent(lane: str, topic: faust.TopicT) -> Executor:
        publisher = KafkaPublisher(concord)
        executor = Executor(connectors=connectors, ledger=ledger, limiter=limiter, breakers=breakers,
                            policy=policy, publisher=publisher)

        @app.agent(topic, name=f"concord.commands.{lane}", concurrency=1)
        async def execute(stream: faust.StreamT[bytes]) -> None:
            async for event, command in commands_in(stream):
                message = event.message
                started = time.perf_counter()
                try:
                    open_connectors()
                    publisher.at(message)
                    # `run` never raises for a platform's or Redis's faults (it waits or dead-letters).
                    result = await executor.run(command, replay=is_replay(message.headers))
                    await results.send(key=command.command_id.encode(), value=messages.encode(result))
                    checkpoint = command_result(result)
                    if checkpoint is not None:
                        await audit.send(key=result.customer_key.encode(), value=messages.encode(checkpoint))
                    refused = correction_failed(command, result)
                    if refused is not None:
                        await canonical.send(key=refused.customer_key.encode(), value=messages.encode(refused))
                    signal = saga_signal(command, result)
                    if signal is not None:
                        pending = await canonical.send(key=signal.customer_key.encode(), value=messages.encode(signal))
                        await pending  # the saga waits for it: acknowledged before the command is
                except Exception as exc:  # a bug: dead-letter this command, keep the lane running
                    await failed(message, event.value, command, exc)
                processed.inc()
                metrics.agent_batch_seconds.labels("commands").observe(time.perf_counter() - started)

        return executor

    executors = [lane_agent(lane, topic) for lane, topic in lanes.items()]

    async def close_connectors() -> None:
        for connector in connectors.values():
            try:
                await connector.close()
            except Exception:  # one connector failing to close must not keep the others' sessions open
                log.exception("closing the %s connector failed", connector.platform)
    concord.on_shutdown(close_connectors)

    return executors[0]

