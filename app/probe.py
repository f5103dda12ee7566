"""Is Kafka reachable? One probe, shared by the readiness of the worker (`app/web.py`) and of the
webhooks process (`app/webhooks.py`): a metadata request, answered from a cache for a couple of seconds
so a probe every second costs the broker little. No Faust here: the webhooks process runs without it.

Each check sets `concord_kafka_up`. Both processes check every `READINESS_SECONDS` on their own (and set
`concord_worker_ready`), so the gauges are current whether or not anything polls `/readyz`."""

from __future__ import annotations

import asyncio
import time
from typing import Final

from aiokafka import AIOKafkaClient

from concord.core import metrics
from concord.core.kafka_security import KafkaSecurity, kafka_client_options

#: How often a process refreshes its readiness gauges without being asked.
READINESS_SECONDS: Final = 5.0


class KafkaProbe:
    """Answers "is Kafka reachable?" with a metadata request, at most once per `ttl` seconds."""

    def __init__(self, bootstrap: str, security: KafkaSecurity, ttl: float = 2.0, timeout: float = 3.0) -> None:
        self._bootstrap = bootstrap
        self._security = security
        self._ttl = ttl
        self._timeout = timeout
        self._client: AIOKafkaClient | None = None
        self._checked_at = 0.0
        self._last: tuple[bool, str] = (False, "not checked yet")
        self._lock = asyncio.Lock()

    async def reachable(self) -> tuple[bool, str]:
        async with self._lock:
            if time.monotonic() - self._checked_at < self._ttl:
                return self._last
            self._last = await self._check()
            self._checked_at = time.monotonic()
            metrics.kafka_up.set(1 if self._last[0] else 0)
            return self._last

    async def _check(self) -> tuple[bool, str]:
        try:
            if self._client is None:
                client = AIOKafkaClient(bootstrap_servers=self._bootstrap, request_timeout_ms=3000,
                                        **kafka_client_options(self._security))
                await asyncio.wait_for(client.bootstrap(), self._timeout)
                self._client = client
            await asyncio.wait_for(self._client.fetch_all_metadata(), self._timeout)
            return True, ""
        except Exception as exc:  # any failure means "not reachable"; the reason is reported
            if self._client is not None:
                await self._client.close()
                self._client = None
            return False, f"kafka unreachable at {self._bootstrap}: {type(exc).__name__}: {exc}"

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
