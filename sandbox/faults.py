"""Fault injection for the sandbox's platform APIs, and the plumbing their routes share.

`Faults` holds one `PlatformFaults` per platform and a seeded RNG, so a run with the same seed and
the same request order draws the same faults. Each platform's route handlers are wrapped by
`guard(faults, platform, error)`, which decides the request's fate *before* the handler touches the
world: a 5xx, 429 or hang injected there has applied nothing. The one exception is
`error_after_apply_rate`: the handler of a write (not GET) runs and applies, then the client gets
a 500, the "crash between the call and the ledger write" that idempotency keys and upserts must
survive.

Order of effects for one request: latency, then a queued 429 (`burst_429` counts down), then a
5xx (`error_rate`), then a hang (`timeout_rate`: sleep `hang_seconds`, far beyond any client
timeout, then serve the request), then the handler, then `error_after_apply_rate`.

One fault is not about requests: `gap_rate` (Salesforce) is the share of Salesforce change events
the emitter delivers as gap events instead (`GAP_CREATE`, `GAP_UPDATE`, `GAP_DELETE`, `GAP_UNDELETE`
of the same record, no fields), as Salesforce does when it cannot build a change event. Its draws
(`Faults.gap`) come from a generator of their own, so turning it on leaves the requests' faults
drawn as before.

Nor is `lose_rate` (every platform): the share of the platform's events the emitter drops instead
of delivering (`concord sandbox --lose-rate` sets it for all four at start). The world still
changes; only the event is lost, never retried, and recorded as ground truth (`GET /_sandbox/lost`).
Its draws (`Faults.lose`) come from one generator per platform, seeded with the seed, and one is
drawn for every event whatever the rate: the same seed and the same events lose the same ones, a
platform's losses do not depend on the other platforms' traffic, and a higher rate loses a superset.
One setting is a limit rather than a fault: `export_rate_limit` (Zendesk) turns on Zendesk's rate
limit of its incremental exports (10 a minute per credential on the real one; off by default, so a
reader paging through a big world is not throttled unless a test asks for it).

`GET/POST /_sandbox/faults` (sandbox/server.py) use `Faults.to_json()` and `Faults.update(body)`:
the body is JSON `{"stripe": {"error_rate": 0.3}, "netsuite": {"netsuite_concurrency": 2}}`; given
fields replace the current ones, the rest stay.

Shared by the four platforms' routes: `PlatformCredentials` (what the APIs accept as credentials:
the server passes Concord's connector settings in, so Concord's connectors authenticate),
`WriteCounter` (did a request change the world?) and `Replays` (stored responses per
`Idempotency-Key`).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final

import msgspec
from aiohttp import web
from msgspec import Meta, Struct

from concord.sandbox.world import Change, World

PLATFORMS: Final = ("stripe", "salesforce", "zendesk", "netsuite")
_ERROR_STATUSES: Final = (500, 502, 503)
# Requests that apply nothing: `error_after_apply_rate` leaves them alone.
_READS: Final = frozenset({"GET", "HEAD", "OPTIONS"})

_Rate = Annotated[float, Meta(ge=0.0, le=1.0)]
_Seconds = Annotated[float, Meta(ge=0.0, le=3600.0)]


class PlatformFaults(Struct, kw_only=True, forbid_unknown_fields=True):
    """What goes wrong with one platform's API (all off by default)."""

    error_rate: _Rate = 0.0  # share of requests answered 500/502/503 before anything is applied
    burst_429: Annotated[int, Meta(ge=0)] = 0  # the next N requests get 429 with Retry-After
    retry_after: _Seconds = 1.0  # Retry-After seconds sent with an injected 429
    latency_ms: Annotated[int, Meta(ge=0, le=600_000)] = 0  # added to every request
    timeout_rate: _Rate = 0.0  # share of requests that hang for `hang_seconds`, then are served
    hang_seconds: _Seconds = 30.0  # how long a hang lasts: longer than any sane client timeout
    error_after_apply_rate: _Rate = 0.0  # share of requests applied, then answered 500
    netsuite_concurrency: Annotated[int, Meta(ge=1)] | None = None  # NetSuite: in-flight limit override
    gap_rate: _Rate = 0.0  # Salesforce: share of change events delivered as gap events (no fields) instead
    lose_rate: _Rate = 0.0  # share of the platform's events never delivered (lost; see `GET /_sandbox/lost`)
    # Zendesk: incremental export requests per minute per credential, beyond which 429 (0: unlimited). Zendesk's
    # own limit is 10; off by default so a reader's hundreds of pages in a test run are not throttled.
    export_rate_limit: Annotated[int, Meta(ge=0)] = 0


class FaultSettings(Struct, kw_only=True, forbid_unknown_fields=True):
    """Faults of every platform: what `GET /_sandbox/faults` shows."""

    stripe: PlatformFaults = msgspec.field(default_factory=PlatformFaults)
    salesforce: PlatformFaults = msgspec.field(default_factory=PlatformFaults)
    zendesk: PlatformFaults = msgspec.field(default_factory=PlatformFaults)
    netsuite: PlatformFaults = msgspec.field(default_factory=PlatformFaults)

    @classmethod
    def losing(cls, lose_rate: float) -> FaultSettings:
        """No fault but every platform losing `lose_rate` of its events (`concord sandbox --lose-rate`)."""
        return cls(**{platform: PlatformFaults(lose_rate=lose_rate) for platform in PLATFORMS})


class FaultsError(ValueError):
    """A faults update that cannot be applied; the message says which field and why."""


class Verdict(Struct, frozen=True, kw_only=True):
    """What happens to one request, decided before its handler runs."""

    latency: float = 0.0  # seconds to wait first
    status: int = 0  # an error status to answer instead of serving (0: serve)
    retry_after: float | None = None  # with a 429
    hang: float = 0.0  # seconds to hang before serving
    error_after_apply: bool = False  # serve, then answer 500


ErrorResponder = Callable[[int, str, str, float | None], web.Response]
"""Builds a platform-shaped error response: (status, code, message, retry_after seconds)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_settings_decoder: Final = msgspec.json.Decoder(dict[str, dict[str, Any]])


class Faults:
    """Per-platform fault settings with a seeded RNG; `decide(platform)` draws one request's fate."""

    def __init__(self, settings: FaultSettings | None = None, *, seed: int = 0) -> None:
        self.settings = settings or FaultSettings()
        self._random = random.Random(seed)
        self._gaps = random.Random(f"gaps:{seed}")
        self._losses = {platform: random.Random(f"losses:{seed}:{platform}") for platform in PLATFORMS}

    def of(self, platform: str) -> PlatformFaults:
        """The current faults of `platform` (one of PLATFORMS)."""
        faults: PlatformFaults = getattr(self.settings, platform)
        return faults

    def decide(self, platform: str) -> Verdict:
        """Draw the fate of the next request to `platform` (counts down a 429 burst)."""
        faults = self.of(platform)
        latency = faults.latency_ms / 1000
        if faults.burst_429 > 0:
            faults.burst_429 -= 1
            return Verdict(latency=latency, status=429, retry_after=faults.retry_after)
        # One draw per rate, always in the same order, so the sequence depends only on the seed.
        error, hang, after = self._random.random(), self._random.random(), self._random.random()
        if error < faults.error_rate:
            return Verdict(latency=latency, status=self._random.choice(_ERROR_STATUSES))
        return Verdict(
            latency=latency,
            hang=faults.hang_seconds if hang < faults.timeout_rate else 0.0,
            error_after_apply=after < faults.error_after_apply_rate,
        )

    def gap(self, platform: str) -> bool:
        """Whether the platform's next change event is delivered as a gap event (`gap_rate`)."""
        rate = self.of(platform).gap_rate
        return rate > 0 and self._gaps.random() < rate

    def lose(self, platform: str) -> bool:
        """Whether the platform's next event is lost (`lose_rate`); one draw per event, whatever the rate."""
        return self._losses[platform].random() < self.of(platform).lose_rate

    def to_json(self) -> bytes:
        """The current settings as JSON (`GET /_sandbox/faults`)."""
        return msgspec.json.encode(self.settings)

    def update(self, body: bytes) -> FaultSettings:
        """Merge a JSON update (`POST /_sandbox/faults`) into the settings; returns the new settings.

        Raises FaultsError, changing nothing, when the body is not an object of platform -> fields,
        names an unknown platform or field, or gives a value out of range.
        """
        try:
            patch = _settings_decoder.decode(body)
        except msgspec.DecodeError as exc:
            raise FaultsError(f"faults must be a JSON object of platform -> settings: {exc}") from None
        merged = msgspec.to_builtins(self.settings)
        for platform, fields in patch.items():
            if platform not in PLATFORMS:
                raise FaultsError(f"unknown platform {platform!r}: expected one of {', '.join(PLATFORMS)}")
            merged[platform].update(fields)
        try:
            self.settings = msgspec.convert(merged, FaultSettings)
        except msgspec.ValidationError as exc:
            raise FaultsError(f"invalid faults: {exc}") from None
        return self.settings

    def reset(self) -> None:
        """Turn every fault off."""
        self.settings = FaultSettings()


def guard(faults: Faults, platform: str, error: ErrorResponder) -> Callable[[Handler], Handler]:
    """Wrap a route handler so `platform`'s faults apply to it (see the module docstring for the order)."""

    def wrap(handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            verdict = faults.decide(platform)
            if verdict.latency:
                await asyncio.sleep(verdict.latency)
            if verdict.status == 429:
                return error(429, "rate_limited", "Too many requests: slow down and retry after the given delay",
                             verdict.retry_after)
            if verdict.status:
                return error(verdict.status, "server_error", "The server had an error processing the request "
                             "(injected by the sandbox)", None)
            if verdict.hang:
                await asyncio.sleep(verdict.hang)
            response = await handler(request)
            if verdict.error_after_apply and request.method not in _READS:
                return error(500, "server_error", "The server failed after applying the request (injected by "
                             "the sandbox)", None)
            return response

        return guarded

    return wrap


# --- shared by the platform routes ----------------------------------------------------------------


class PlatformCredentials(Struct, frozen=True, kw_only=True):
    """Credentials the sandbox APIs accept; an empty value means that platform checks none."""

    stripe_api_key: str = ""
    salesforce_access_token: str = ""
    zendesk_api_email: str = ""
    zendesk_api_token: str = ""
    netsuite_access_token: str = ""
    # NetSuite's account concurrency limit (in-flight requests); a fault setting can override it.
    netsuite_concurrency: Annotated[int, Meta(ge=1)] = 5


class WriteCounter:
    """Counts the world's writes, so a route can tell whether a request changed anything."""

    def __init__(self, world: World) -> None:
        self.count = 0
        world.listen(self._changed)

    def _changed(self, change: Change) -> None:
        self.count += 1


class StoredResponse(Struct, frozen=True, kw_only=True):
    """The response first given to an idempotent request, replayed to its retries."""

    fingerprint: bytes  # method, path and parameters of the first request, canonical JSON
    status: int
    body: bytes
    headers: dict[str, str] = {}


class Replays:
    """Responses by idempotency key (kept for the sandbox's lifetime; Stripe keeps them 24 hours)."""

    def __init__(self) -> None:
        self._stored: dict[str, StoredResponse] = {}

    def get(self, key: str) -> StoredResponse | None:
        return self._stored.get(key)

    def store(self, key: str, response: StoredResponse) -> None:
        self._stored[key] = response
