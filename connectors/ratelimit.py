"""Platform rate limits as token buckets in Redis, shared by every worker of the deployment.

A platform's limit is per account, not per process: four workers each sending 25 requests/s to
Stripe would send 100. So the bucket lives in Redis (`<topic_prefix>:ratelimit:<platform>`: tokens
and the time they were counted) and one Lua script refills it by the time elapsed since (Redis'
own clock, the same for every worker) and takes a token, or says how long until one is there.

The bucket holds up to `burst` tokens (one second's worth by default), so an idle platform may see a
short burst; over any longer window the rate stays at `<platform>_rate_limit` requests per second.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Protocol

import redis.asyncio as aioredis
from msgspec import Struct

from concord.core.settings import Settings
from concord.core.topics import PLATFORMS

# ARGV: rate (tokens/s), burst (max tokens). Returns the wait in seconds as a string ("0": taken).
_TAKE: Final = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(bucket[1])
local at = tonumber(bucket[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


class Limit(Struct, frozen=True):
    """A platform's limit: `rate` requests per second, bursts of up to `burst`."""

    rate: float
    burst: float


def limits_from_settings(settings: Settings) -> dict[str, Limit]:
    """`<platform>_rate_limit` of each platform; the burst is one second's worth (at least one call)."""
    out: dict[str, Limit] = {}
    for platform in PLATFORMS:
        rate = float(getattr(settings, f"{platform}_rate_limit"))
        out[platform] = Limit(rate=rate, burst=max(1.0, rate))
    return out


class RateLimiter(Protocol):
    """Take a token for one call to a platform."""

    async def take(self, platform: str) -> float:
        """0 when a token was taken (call now); else the seconds until one will be there (take again then)."""
        ...


class RedisRateLimiter:
    """Token buckets in Redis. A platform without a configured limit is not limited."""

    def __init__(self, client: aioredis.Redis, prefix: str, limits: Mapping[str, Limit]) -> None:
        self._prefix = f"{prefix}:ratelimit:"
        self.limits = dict(limits)
        self._take = client.register_script(_TAKE)

    async def take(self, platform: str) -> float:
        limit = self.limits.get(platform)
        if limit is None:
            return 0.0
        return float(await self._take(keys=[self._prefix + platform], args=[limit.rate, limit.burst]))
