"""The executor with fake connectors, an in-memory ledger, a fake clock and instant sleeps.

The fake platform applies a command once per idempotency key (the command id), like Stripe's and
Zendesk's Idempotency-Key or an upsert by external id, and counts calls and applications apart.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from concord.connectors.base import ConnectorError, ErrorKind, Outcome
from concord.connectors.breaker import Breakers, State
from concord.connectors.executor import (
    ALREADY_DONE,
    DEAD_LETTERED,
    DONE,
    SKIPPED_FAILED,
    CommandResult,
    Executor,
    dead_letter_headers,
)
from concord.connectors.ledger import DONE as LEDGER_DONE
from concord.connectors.ledger import FAILED, PENDING, Claim, LedgerEntry, StoredOutcome, Verdict
from concord.connectors.policy import RetryPolicy
from concord.connectors.zendesk import ZendeskConnector
from concord.core import metrics
from concord.core.messages import Command
from tests.unit.connectors import platform_sandbox

T0 = 1_800_000_000.0


class FakeClock:
    """Time that only moves when the executor sleeps; every sleep is recorded."""

    def __init__(self) -> None:
        self.now = T0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class MemoryLedger:
    """The ledger's claim semantics (connectors/ledger.py) in a dict."""

    def __init__(self) -> None:
        self.entries: dict[str, LedgerEntry] = {}

    async def claim(self, command: Command, replay: bool, now_ms: int) -> Claim:
        entry = self.entries.get(command.command_id)
        if entry is None:
            entry = LedgerEntry(command_id=command.command_id, state=PENDING, created_at=now_ms, updated_at=now_ms,
                                action=command.action, platform=command.platform, rule=command.rule,
                                customer_key=command.customer_key)
            self.entries[command.command_id] = entry
            return Claim(Verdict.NEW, entry)
        if entry.state == FAILED and replay:
            entry = msgspec.structs.replace(entry, state=PENDING, attempts=0, replays=entry.replays + 1,
                                            error="", error_kind="", updated_at=now_ms)
            self.entries[command.command_id] = entry
            return Claim(Verdict.REPLAYED, entry)
        return Claim(Verdict(entry.state), entry)

    def _write(self, command: Command, state: str, now_ms: int, **fields: Any) -> None:
        entry = self.entries.get(command.command_id) or LedgerEntry(command_id=command.command_id, state=state)
        if entry.state == LEDGER_DONE and state != LEDGER_DONE:
            return
        self.entries[command.command_id] = msgspec.structs.replace(entry, state=state, updated_at=now_ms, **fields)

    async def record_attempt(self, command: Command, attempts: int, now_ms: int) -> None:
        self._write(command, PENDING, now_ms, attempts=attempts)

    async def record_done(self, command: Command, attempts: int, outcome: StoredOutcome, now_ms: int) -> None:
        self._write(command, LEDGER_DONE, now_ms, attempts=attempts, outcome=outcome)

    async def record_failed(self, command: Command, attempts: int, error_kind: str, error: str, now_ms: int) -> None:
        self._write(command, FAILED, now_ms, attempts=attempts, error_kind=error_kind, error=error)

    async def get(self, command_id: str) -> LedgerEntry | None:
        return self.entries.get(command_id)


class FakeLimiter:
    def __init__(self, waits: list[float] | None = None) -> None:
        self.waits = list(waits or [])
        self.taken: list[str] = []

    async def take(self, platform: str) -> float:
        if self.waits:
            return self.waits.pop(0)
        self.taken.append(platform)
        return 0.0


Step = ConnectorError | Exception | None  # None: succeed


class FakePlatform:
    """A connector whose calls follow a script; applies each command id once (idempotency)."""

    def __init__(self, platform: str = "stripe", script: list[Step] | None = None,
                 actions: frozenset[str] = frozenset({"billing.update_customer"})) -> None:
        self.platform = platform
        self.actions = actions
        self.script = list(script or [])
        self.calls = 0
        self.applied: Counter[str] = Counter()
        self.on_call: Callable[[], None] | None = None
        self.fetched = b""

    async def execute(self, command: Command) -> Outcome:
        self.calls += 1
        if self.on_call is not None:
            self.on_call()
        step = self.script.pop(0) if self.script else None
        if step is not None:
            raise step
        if command.command_id not in self.applied:
            self.applied[command.command_id] += 1
        return Outcome(status=200, record_id="cus_1", detail={"name": "Acme"}, fetched=self.fetched)

    async def close(self) -> None:
        pass


class Publisher:
    """Records the executor's Kafka effects, and the ledger state at the moment of each."""

    def __init__(self, ledger: MemoryLedger) -> None:
        self.ledger = ledger
        self.dead_letters: list[CommandResult] = []
        self.fetched_records: list[tuple[str, bytes, str]] = []  # command id, bytes, ledger state then

    async def fetched(self, command: Command, outcome: Outcome) -> None:
        entry = self.ledger.entries[command.command_id]
        self.fetched_records.append((command.command_id, outcome.fetched, entry.state))

    async def dead_letter(self, command: Command, result: CommandResult) -> None:
        self.dead_letters.append(result)


def command(command_id: str = "c1", platform: str = "stripe", action: str = "billing.update_customer",
            **kw: Any) -> Command:
    return Command(command_id=command_id, action=action, platform=platform, target={"customer_id": "cus_1"},
                   payload=kw.pop("payload", {"name": "Acme"}), fingerprint="fp1", rule="D09", customer_key="001A",
                   generation=1, correlation_id="corr-1", created_at=int(T0 * 1000), **kw)


class Rig:
    """An executor wired to fakes."""

    def __init__(self, *platforms: FakePlatform, max_attempts: int = 4, threshold: int = 5, reset: float = 15.0,
                 limiter: FakeLimiter | None = None, ledger: Any = None) -> None:
        self.clock = FakeClock()
        self.memory = MemoryLedger()
        self.ledger = ledger or self.memory
        self.publisher = Publisher(self.memory)
        self.limiter = limiter or FakeLimiter()
        self.breakers = Breakers(threshold, reset, self.clock)
        self.executor = Executor(
            connectors={p.platform: p for p in platforms}, ledger=self.ledger, limiter=self.limiter,
            breakers=self.breakers,
            policy=RetryPolicy(max_attempts=max_attempts, backoff_seconds=0.5, backoff_max_seconds=8.0),
            publisher=self.publisher, clock=self.clock, sleep=self.clock.sleep, rng=random.Random(3),
        )

    async def run(self, cmd: Command, replay: bool = False) -> CommandResult:
        return await self.executor.run(cmd, replay)


def transient(retry_after: float | None = None) -> ConnectorError:
    return ConnectorError(ErrorKind.TRANSIENT, "upstream timeout", status=503, retry_after=retry_after)


def auth() -> ConnectorError:
    return ConnectorError(ErrorKind.AUTH, "Invalid API Key provided", status=401)


def metric(name: str, labels: dict[str, str] | None = None) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels or {}) or 0.0


async def test_retry_then_success() -> None:
    platform = FakePlatform(script=[transient(), transient()])
    rig = Rig(platform)
    result = await rig.run(command())
    assert (result.status, result.attempts, result.record_id, result.detail) == (DONE, 3, "cus_1", {"name": "Acme"})
    assert (result.correlation_id, result.fingerprint, result.rule, result.customer_key) == ("corr-1", "fp1", "D09",
                                                                                           "001A")
    assert platform.calls == 3 and platform.applied["c1"] == 1
    assert len(rig.clock.sleeps) == 2
    assert 0 <= rig.clock.sleeps[0] <= 0.5 and 0 <= rig.clock.sleeps[1] <= 1.0  # full jitter under the ceiling
    entry = rig.memory.entries["c1"]
    assert (entry.state, entry.attempts, entry.outcome) == ("done", 3, StoredOutcome(status=200, record_id="cus_1",
                                                                                     detail={"name": "Acme"}))
    assert rig.limiter.taken == ["stripe"] * 3  # a token for every call


async def test_retry_after_is_honoured() -> None:
    platform = FakePlatform(script=[transient(retry_after=42.0)])
    rig = Rig(platform)
    result = await rig.run(command())
    assert result.status == DONE and rig.clock.sleeps == [42.0]


async def test_exhausted_transient_errors_are_dead_lettered_with_their_attempts() -> None:
    before = metric("concord_command_dead_letters_total", {"platform": "stripe", "reason": "exhausted"})
    platform = FakePlatform(script=[transient()] * 10)
    rig = Rig(platform, max_attempts=4)
    result = await rig.run(command())
    assert (result.status, result.attempts, result.error_kind) == (DEAD_LETTERED, 4, "transient")
    assert result.reason == "exhausted: transient: upstream timeout (HTTP 503)"
    assert platform.calls == 4 and len(rig.clock.sleeps) == 3
    assert rig.publisher.dead_letters == [result]
    entry = rig.memory.entries["c1"]
    assert (entry.state, entry.attempts, entry.error_kind, entry.error) == ("failed", 4, "transient", result.reason)
    assert metric("concord_command_dead_letters_total", {"platform": "stripe", "reason": "exhausted"}) == before + 1
    headers = dict(dead_letter_headers(result, "t.commands", 2, 17))
    assert headers["concord-dlq-reason"] == result.reason.encode()
    assert (headers["concord-dlq-kind"], headers["concord-dlq-attempts"]) == (b"transient", b"4")
    assert (headers["concord-source-topic"], headers["concord-source-offset"]) == (b"t.commands", b"17")
    assert headers["concord-failed-at"] == str(result.finished_at).encode()


async def test_data_error_is_dead_lettered_at_once_and_does_not_trip_the_breaker() -> None:
    platform = FakePlatform(script=[ConnectorError(ErrorKind.DATA, "No such customer: cus_1", status=404)])
    rig = Rig(platform, threshold=1)
    result = await rig.run(command())
    assert (result.status, result.attempts, result.error_kind) == (DEAD_LETTERED, 1, "data")
    assert result.reason == "data: No such customer: cus_1 (HTTP 404)"
    assert rig.clock.sleeps == [] and platform.applied["c1"] == 0
    assert rig.breakers["stripe"].state is State.CLOSED


async def test_dead_letter_then_redelivery_is_skipped_and_replays_execute_once() -> None:
    platform = FakePlatform(script=[transient()] * 2)
    rig = Rig(platform, max_attempts=2)
    assert (await rig.run(command())).status == DEAD_LETTERED
    redelivered = await rig.run(command())  # the same message again (no replay header)
    assert (redelivered.status, redelivered.reason) == (SKIPPED_FAILED, "exhausted: transient: upstream timeout "
                                                                        "(HTTP 503)")
    assert platform.calls == 2
    replayed = await rig.run(command(), replay=True)  # the platform works again
    assert (replayed.status, replayed.attempts, replayed.replay) == (DONE, 1, True)
    assert rig.memory.entries["c1"].replays == 1
    second = await rig.run(command(), replay=True)
    assert second.status == ALREADY_DONE and second.record_id == "cus_1"
    assert platform.calls == 3 and platform.applied["c1"] == 1


async def test_auth_halts_the_platform_then_resumes_when_credentials_work() -> None:
    halts = metric("concord_command_halts_total", {"platform": "stripe"})
    platform = FakePlatform(script=[auth(), auth(), auth()])
    rig = Rig(platform, reset=15.0, max_attempts=2)
    seen: list[str] = []
    platform.on_call = lambda: seen.append(rig.breakers["stripe"].state.value)
    result = await rig.run(command())
    assert result.status == DONE and platform.applied["c1"] == 1
    # Auth waits are not failures of the command: 3 refusals did not spend the budget of 2 attempts.
    assert result.attempts == 1
    assert platform.calls == 4 and seen == ["closed", "halted", "halted", "halted"]
    assert rig.clock.sleeps == [15.0, 15.0, 15.0]  # probed every breaker_reset_seconds
    assert rig.breakers["stripe"].state is State.CLOSED
    assert metric("concord_command_halts_total", {"platform": "stripe"}) == halts + 1  # one halt, not three
    assert metric("concord_breaker_state", {"platform": "stripe"}) == 0


async def test_halted_status_is_visible_while_waiting() -> None:
    platform = FakePlatform(script=[auth()] * 100)
    rig = Rig(platform, reset=15.0)
    task = asyncio.create_task(rig.run(command()))
    for _ in range(50):
        await asyncio.sleep(0)
    status = rig.executor.status()
    assert status.halted == ["stripe"] and status.breakers[0].halt_reason == "Invalid API Key provided"
    assert metric("concord_breaker_state", {"platform": "stripe"}) == 3
    assert not task.done()  # nothing lost: the command waits
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert rig.memory.entries["c1"].state == "pending"


async def test_breaker_opens_after_n_failures_and_half_opens_with_one_probe() -> None:
    platform = FakePlatform(script=[transient(), transient(), transient()])
    rig = Rig(platform, threshold=2, reset=30.0, max_attempts=10)
    seen: list[tuple[str, float]] = []
    platform.on_call = lambda: seen.append((rig.breakers["stripe"].state.value, rig.clock.now))
    result = await rig.run(command())
    assert result.status == DONE and result.attempts == 4
    # Two failures open it; the third call is a probe after the reset time, fails, and re-opens it;
    # the fourth is the next probe, succeeds and closes it.
    assert [state for state, _ in seen] == ["closed", "closed", "half_open", "half_open"]
    gaps = [later - earlier for (_, earlier), (_, later) in zip(seen, seen[1:], strict=False)]
    assert gaps[0] < 30 and gaps[1] == pytest.approx(30.0) and gaps[2] == pytest.approx(30.0)
    assert rig.breakers["stripe"].state is State.CLOSED


async def test_open_breaker_makes_the_next_command_wait_for_the_probe() -> None:
    platform = FakePlatform(script=[transient()])
    rig = Rig(platform, threshold=1, reset=20.0, max_attempts=1)
    assert (await rig.run(command("c1"))).status == DEAD_LETTERED
    assert rig.breakers["stripe"].state is State.OPEN
    result = await rig.run(command("c2"))
    assert result.status == DONE and rig.clock.sleeps == [20.0]


async def test_pending_claim_after_a_crash_is_executed_again_and_applied_once() -> None:
    class Crash(Exception):
        pass

    class CrashingLedger(MemoryLedger):
        async def record_done(self, command: Command, attempts: int, outcome: StoredOutcome, now_ms: int) -> None:
            raise Crash("worker killed between the platform call and the ledger write")

    platform = FakePlatform()
    crashing = CrashingLedger()
    with pytest.raises(Crash):
        await Rig(platform, ledger=crashing).run(command())
    assert platform.applied["c1"] == 1 and crashing.entries["c1"].state == "pending"

    # The restarted worker sees the same ledger entry (pending) and calls again: the platform's
    # idempotency key makes that a no-op.
    restarted = Rig(platform)
    restarted.memory.entries = crashing.entries
    result = await restarted.run(command())
    assert result.status == DONE and result.attempts == 2  # the crashed run's attempt counts
    assert platform.calls == 2 and platform.applied["c1"] == 1
    assert restarted.memory.entries["c1"].state == "done"


async def test_done_claim_is_skipped_without_calling_the_platform() -> None:
    platform = FakePlatform()
    rig = Rig(platform)
    first = await rig.run(command())
    again = await rig.run(command())
    assert first.status == DONE
    assert (again.status, again.attempts, again.record_id, again.detail) == (ALREADY_DONE, 1, "cus_1",
                                                                            {"name": "Acme"})
    assert "already applied" in again.reason
    assert platform.calls == 1


async def test_no_connector_and_unsupported_action_are_dead_lettered() -> None:
    rig = Rig(FakePlatform())
    missing = await rig.run(command("c1", platform="netsuite", action="erp.upsert_invoice"))
    assert (missing.status, missing.error_kind, missing.attempts) == (DEAD_LETTERED, "data", 0)
    assert "no connector for platform 'netsuite'" in missing.reason
    unsupported = await rig.run(command("c2", action="billing.refund_everything"))
    assert unsupported.status == DEAD_LETTERED and "does not execute 'billing.refund_everything'" in unsupported.reason
    assert [r.command_id for r in rig.publisher.dead_letters] == ["c1", "c2"]


async def test_probe_reports_the_stuck_commands_ledger_state() -> None:
    platform = FakePlatform(script=[transient()] * 2)
    rig = Rig(platform, max_attempts=2)
    await rig.run(command("stuck"))
    probe = command("p1", platform="concord", action="concord.probe", payload={"command_id": "stuck", "rule": "D09"})
    result = await rig.run(probe)
    assert result.status == DONE and result.record_id == "stuck"
    assert result.detail["state"] == "failed" and result.detail["attempts"] == 2
    assert result.detail["error"].startswith("exhausted:")
    unknown = await rig.run(command("p2", platform="concord", action="concord.probe",
                                    payload={"command_id": "never-seen"}))
    assert unknown.detail == {"command_id": "never-seen", "state": "unknown"}
    assert rig.limiter.taken == ["stripe", "stripe"]  # internal actions take no platform token


async def test_saga_resume_goes_through_once_and_names_its_opportunity() -> None:
    rig = Rig()
    saga = command("s1", platform="concord", action="saga.resume", payload={})
    saga = msgspec.structs.replace(saga, target={"opportunity_id": "006A"})
    result = await rig.run(saga)
    assert (result.status, result.record_id, result.detail["opportunity_id"]) == (DONE, "006A", "006A")
    again = await rig.run(saga)
    assert again.status == "already_done"  # the ledger: one resume per command id
    nameless = await rig.run(msgspec.structs.replace(saga, command_id="s2", target={}))
    assert (nameless.status, nameless.error_kind) == (DEAD_LETTERED, "data")
    assert "opportunity_id" in nameless.reason


async def test_fetched_record_is_published_before_the_ledger_says_done() -> None:
    platform = FakePlatform(platform="zendesk", actions=frozenset({"support.fetch_organization"}))
    platform.fetched = b'{"organization": {"id": 7}}'
    rig = Rig(platform)
    result = await rig.run(command("f1", platform="zendesk", action="support.fetch_organization"))
    assert result.status == DONE
    assert rig.publisher.fetched_records == [("f1", b'{"organization": {"id": 7}}', "pending")]
    assert rig.memory.entries["f1"].state == "done"


async def test_not_before_is_honoured() -> None:
    rig = Rig(FakePlatform())
    result = await rig.run(command(not_before=int((T0 + 90) * 1000)))
    assert result.status == DONE and rig.clock.sleeps == [90.0]


async def test_rate_limit_waits_for_a_token() -> None:
    waits = metric("concord_rate_limit_waits_total", {"platform": "stripe"})
    rig = Rig(FakePlatform(), limiter=FakeLimiter([0.25, 0.1]))
    assert (await rig.run(command())).status == DONE
    assert rig.clock.sleeps == [0.25, 0.1]
    assert metric("concord_rate_limit_waits_total", {"platform": "stripe"}) == waits + 2


async def test_a_connector_bug_is_retried_like_a_transient_error() -> None:
    platform = FakePlatform(script=[KeyError("total")])
    rig = Rig(platform)
    result = await rig.run(command())
    assert result.status == DONE and result.attempts == 2


class FlakyLedger(MemoryLedger):
    """Redis is unreachable for the next `outage` ledger operations."""

    def __init__(self, platform: FakePlatform) -> None:
        super().__init__()
        self.outage = 0
        self.platform = platform
        self.calls_during_outage: list[int] = []

    def _check(self) -> None:
        if self.outage > 0:
            self.outage -= 1
            self.calls_during_outage.append(self.platform.calls)
            raise RedisConnectionError("Error 111 connecting to 127.0.0.1:16390. Connection refused.")

    async def claim(self, command: Command, replay: bool, now_ms: int) -> Claim:
        self._check()
        return await super().claim(command, replay, now_ms)

    async def record_done(self, command: Command, attempts: int, outcome: StoredOutcome, now_ms: int) -> None:
        self._check()
        await super().record_done(command, attempts, outcome, now_ms)


async def test_redis_outage_pauses_execution_without_calling_the_platform() -> None:
    platform = FakePlatform()
    ledger = FlakyLedger(platform)
    rig = Rig(platform, ledger=ledger)
    ledger.entries = rig.memory.entries
    ledger.outage = 6
    result = await rig.run(command())
    assert result.status == DONE and platform.calls == 1
    assert ledger.calls_during_outage == [0] * 6  # no platform call without a claim
    assert rig.clock.sleeps == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0]  # capped backoff
    assert rig.executor.redis_up and metric("concord_command_ledger_up") == 1


async def test_redis_outage_after_the_call_waits_to_record_the_outcome() -> None:
    platform = FakePlatform()
    ledger = FlakyLedger(platform)
    rig = Rig(platform, ledger=ledger)
    ledger.entries = rig.memory.entries

    def redis_dies() -> None:
        ledger.outage = 3

    platform.on_call = redis_dies
    task = asyncio.create_task(rig.run(command()))
    for _ in range(3):
        await asyncio.sleep(0)
    assert not rig.executor.redis_up and metric("concord_command_ledger_up") == 0
    result = await task
    assert result.status == DONE and platform.calls == 1 and platform.applied["c1"] == 1
    assert ledger.entries["c1"].state == "done"


async def test_every_http_request_of_an_action_takes_a_rate_token() -> None:
    # A grant by CRM account looks the organization up, then creates it: two requests, two tokens.
    async with platform_sandbox.running() as box:
        connector = ZendeskConnector(box.settings)
        limiter = FakeLimiter()
        memory = MemoryLedger()
        executor = Executor(connectors={"zendesk": connector}, ledger=memory, limiter=limiter,
                            breakers=Breakers(5, 15.0, FakeClock()),
                            policy=RetryPolicy(max_attempts=2, backoff_seconds=0.1, backoff_max_seconds=1.0),
                            publisher=Publisher(memory))
        try:
            result = await executor.run(platform_sandbox.command(
                "support.grant_entitlement", "zendesk", {"crm_account_id": "001Hp00000ACMEAAA"}, {"tier": "gold"}))
        finally:
            await connector.close()
        assert result.status == DONE
        assert limiter.taken == ["zendesk", "zendesk"]
        assert [o["external_id"] for o in box.world.all("zendesk", "organization")] == ["001Hp00000ACMEAAA"]
