"""One circuit breaker per platform. Pure: time comes from an injected clock.

* `closed`: calls go through; `breaker_failure_threshold` consecutive transient failures open it.
* `open`: no calls for `breaker_reset_seconds` (a platform that is down is not hammered by every
  queued command), then it becomes `half_open`.
* `half_open`: exactly one probe call is let through; success closes the breaker, a transient
  failure opens it again for another `breaker_reset_seconds`.
* `halted`: the platform refused our credentials (auth). Like `open`, one probe every
  `breaker_reset_seconds`, but only an answer from the platform (success, or a data error, which
  proves the credentials were accepted) closes it: a person must fix the credentials.

A data error does not count as a failure: the platform answered, it only refused that one command.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Final

from msgspec import Struct


class State(enum.StrEnum):
    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"
    HALTED = "halted"


#: Value of the breaker-state gauge per state (alert on >= 2).
GAUGE_VALUE: Final = {State.CLOSED: 0, State.HALF_OPEN: 1, State.OPEN: 2, State.HALTED: 3}

#: While another call is the probe, others look again this often (seconds, at most).
PROBE_POLL_SECONDS: Final = 1.0


class BreakerStatus(Struct, frozen=True, kw_only=True):
    """A breaker as `/api/commands/status` shows it."""

    platform: str
    state: str
    failures: int  # consecutive transient failures
    opened_at: float  # epoch seconds when it last opened or halted (0: never)
    retry_in: float  # seconds until the next call or probe may go (0: now)
    probe_in_flight: bool
    halt_reason: str = ""


class Breaker:
    """The circuit breaker of one platform."""

    def __init__(self, platform: str, threshold: int, reset_seconds: float, clock: Callable[[], float]) -> None:
        self.platform = platform
        self._threshold = threshold
        self._reset = reset_seconds
        self._clock = clock
        self._state = State.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False
        self.halt_reason = ""

    @property
    def state(self) -> State:
        """The state now (an open breaker whose reset time passed is half-open)."""
        self._advance(self._clock())
        return self._state

    def _advance(self, now: float) -> None:
        if self._state is State.OPEN and now >= self._opened_at + self._reset:
            self._state = State.HALF_OPEN

    def allow(self) -> float:
        """0 when a call may go now (in half-open or halted, that call is the probe); else seconds to wait."""
        now = self._clock()
        self._advance(now)
        if self._state is State.CLOSED:
            return 0.0
        if self._probe_in_flight:
            return min(PROBE_POLL_SECONDS, self._reset)
        if self._state is State.HALF_OPEN or (self._state is State.HALTED and now >= self._opened_at + self._reset):
            self._probe_in_flight = True
            return 0.0
        return max(self._opened_at + self._reset - now, 0.0)

    def on_success(self) -> None:
        """The platform answered (success or a data error): close."""
        self._state = State.CLOSED
        self._failures = 0
        self._probe_in_flight = False
        self.halt_reason = ""

    def on_transient(self) -> None:
        """A transient failure (timeout, 5xx, 429): count it; open at the threshold or after a failed probe."""
        now = self._clock()
        self._advance(now)
        self._probe_in_flight = False
        if self._state is State.HALTED:
            self._opened_at = now  # still no proof the credentials work: probe again later
            return
        self._failures += 1
        if self._state is State.HALF_OPEN or self._failures >= self._threshold:
            self._state = State.OPEN
            self._opened_at = now

    def on_auth(self, reason: str) -> None:
        """The platform refused the credentials: halt until a probe is answered."""
        self._state = State.HALTED
        self._opened_at = self._clock()
        self._probe_in_flight = False
        self.halt_reason = reason

    def release(self) -> None:
        """The call let through by `allow` never reached the platform (cancelled): free the probe slot."""
        self._probe_in_flight = False

    def status(self) -> BreakerStatus:
        """The breaker as the status endpoint shows it."""
        now = self._clock()
        self._advance(now)
        waiting = self._state in (State.OPEN, State.HALTED) and not self._probe_in_flight
        return BreakerStatus(
            platform=self.platform, state=self._state.value, failures=self._failures, opened_at=self._opened_at,
            retry_in=max(self._opened_at + self._reset - now, 0.0) if waiting else 0.0,
            probe_in_flight=self._probe_in_flight, halt_reason=self.halt_reason,
        )


class Breakers:
    """The breakers of every platform a worker calls, created on first use."""

    def __init__(self, threshold: int, reset_seconds: float, clock: Callable[[], float]) -> None:
        self._threshold = threshold
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._by_platform: dict[str, Breaker] = {}

    def __getitem__(self, platform: str) -> Breaker:
        breaker = self._by_platform.get(platform)
        if breaker is None:
            breaker = self._by_platform[platform] = Breaker(platform, self._threshold, self.reset_seconds,
                                                           self._clock)
        return breaker

    def statuses(self) -> list[BreakerStatus]:
        """Every breaker used so far, by platform name."""
        return [self._by_platform[p].status() for p in sorted(self._by_platform)]
