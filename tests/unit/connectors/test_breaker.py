"""The circuit breaker: closed -> open after N transient failures -> half-open after the reset time with
exactly one probe -> closed on success, open again on failure; halted on auth until a probe is answered."""

from __future__ import annotations

from concord.connectors.breaker import GAUGE_VALUE, PROBE_POLL_SECONDS, Breaker, Breakers, State


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(threshold: int = 3, reset: float = 10.0) -> tuple[Breaker, Clock]:
    clock = Clock()
    return Breaker("stripe", threshold, reset, clock), clock


def test_opens_after_threshold_consecutive_transient_failures() -> None:
    b, clock = breaker(threshold=3)
    for _ in range(2):
        assert b.allow() == 0.0
        b.on_transient()
    assert b.state is State.CLOSED and b.status().failures == 2
    assert b.allow() == 0.0
    b.on_transient()
    assert b.state is State.OPEN
    assert b.allow() == 10.0  # no call until the reset time passed
    clock.now += 4
    assert b.allow() == 6.0
    assert b.status().retry_in == 6.0


def test_half_open_lets_exactly_one_probe_through_and_success_closes() -> None:
    b, clock = breaker(threshold=1)
    b.on_transient()
    clock.now += 10
    assert b.state is State.HALF_OPEN
    assert b.allow() == 0.0  # the probe
    assert b.status().probe_in_flight
    assert b.allow() == PROBE_POLL_SECONDS  # everyone else waits for the probe's answer
    assert b.allow() > 0
    b.on_success()
    assert b.state is State.CLOSED and b.status().failures == 0
    assert b.allow() == 0.0 and b.allow() == 0.0


def test_failed_probe_opens_again_for_a_full_reset_time() -> None:
    b, clock = breaker(threshold=2)
    b.on_transient()
    b.on_transient()
    clock.now += 10
    assert b.allow() == 0.0
    b.on_transient()
    assert b.state is State.OPEN
    assert b.allow() == 10.0


def test_a_cancelled_probe_frees_the_slot() -> None:
    b, clock = breaker(threshold=1)
    b.on_transient()
    clock.now += 10
    assert b.allow() == 0.0
    b.release()
    assert b.allow() == 0.0  # another call may be the probe


def test_data_errors_do_not_trip_it_the_platform_answered() -> None:
    b, _ = breaker(threshold=3)
    b.on_transient()
    b.on_transient()
    b.on_success()  # what the executor reports for a data error
    b.on_transient()
    b.on_transient()
    assert b.state is State.CLOSED and b.status().failures == 2


def test_auth_halts_until_a_probe_is_answered() -> None:
    b, clock = breaker(threshold=3, reset=15.0)
    b.on_auth("Invalid API Key provided")
    assert b.state is State.HALTED and b.halt_reason == "Invalid API Key provided"
    assert b.allow() == 15.0
    clock.now += 15
    assert b.allow() == 0.0  # one probe per reset period
    assert b.allow() == PROBE_POLL_SECONDS
    b.on_auth("Invalid API Key provided")
    assert b.allow() == 15.0
    clock.now += 15
    assert b.allow() == 0.0
    b.on_transient()  # a 503 proves nothing about the credentials
    assert b.state is State.HALTED
    clock.now += 15
    assert b.allow() == 0.0
    b.on_success()
    assert b.state is State.CLOSED and b.halt_reason == ""


def test_status_and_gauge_values() -> None:
    board = Breakers(threshold=1, reset_seconds=5.0, clock=Clock())
    board["zendesk"].on_auth("bad token")
    board["netsuite"].on_transient()
    assert board["stripe"] is board["stripe"]
    statuses = board.statuses()
    assert [(s.platform, s.state) for s in statuses] == [("netsuite", "open"), ("stripe", "closed"),
                                                         ("zendesk", "halted")]
    assert statuses[2].halt_reason == "bad token" and statuses[2].retry_in == 5.0
    assert [GAUGE_VALUE[State(s.state)] for s in statuses] == [2, 0, 3]
    assert GAUGE_VALUE[State.HALF_OPEN] == 1
