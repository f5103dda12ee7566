"""Behind on a platform, said while it happens: `/api/health`, a metric and a log line, on the real broker.

Stripe events whose source times are ten minutes old keep arriving (a platform delivering late, or a
backlog): Stripe's watermark stays ten minutes back, so Stripe is reported behind, since when, while
`/readyz` stays ready. Once they stop and the partition has been quiet for the idle allowance, its
watermark advances with the clock and Stripe is reported caught up.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import orjson

from concord.core.settings import Settings
from concord.core.topics import topic_names
from tests.integration.harness import Infra, WorkerProcess, produce


def late_customer(n: int, created: int) -> bytes:
    customer = {"id": "cus_LATE1", "object": "customer", "name": "Late GmbH", "email": "ap@late.test",
                "currency": "eur", "address": {"country": "DE"}, "metadata": {"salesforce_account_id": "001LATE"}}
    return orjson.dumps({"id": f"evt_late{n}", "object": "event", "type": "customer.updated",
                         "api_version": "2024-06-20", "created": created, "livemode": False,
                         "data": {"object": customer}})


async def test_a_platform_behind_is_reported_with_its_lag_and_since_when(
        infra: Infra, settings: Settings, tmp_path: Path) -> None:
    configured = msgspec.structs.replace(settings, watermark_idle_seconds=4.0, platform_behind_seconds=60.0)
    names = topic_names(configured)
    worker = WorkerProcess([sys.executable, "-m", "concord.app.cli", "worker", "-l", "info"], configured,
                           tmp_path / "worker.log").start()
    health: dict[str, Any] = {}

    def stripe() -> dict[str, Any]:
        return next(p for p in health["platforms"] if p["platform"] == "stripe")

    try:
        await worker.wait_ready()
        behind_at = 0.0
        for n in range(40):  # one late event a second, until Stripe is reported behind
            late = late_customer(n, int(time.time()) - 600)
            await produce(infra.bootstrap, names.raw["stripe"], [(b"cus_LATE1", late)])
            health = await worker.get_json("/api/health")  # type: ignore[assignment]
            if health["behind"] == ["stripe"]:
                behind_at = time.time()
                break
            await asyncio.sleep(1)
        assert health["behind"] == ["stripe"], health
        assert 590 <= stripe()["lag_seconds"] <= 700 and stripe()["behind_since"] > 0
        assert health["ready"] is True  # behind is slower, not broken
        others = [p for p in health["platforms"] if p["platform"] != "stripe"]
        assert all(not p["behind"] and p["lag_seconds"] < 60 for p in others), others
        metrics = await worker.get_text("/metrics")
        assert 'concord_platform_watermark_lag_seconds{platform="stripe"}' in metrics
        since = stripe()["behind_since"]
        await asyncio.sleep(1.5)
        health = await worker.get_json("/api/health")  # type: ignore[assignment]
        assert stripe()["behind_since"] == since  # since when: kept while behind

        # The late events stop: once quiet for the idle allowance, Stripe's watermark follows the clock.
        for _ in range(30):
            health = await worker.get_json("/api/health")  # type: ignore[assignment]
            if not health["behind"]:
                break
            await asyncio.sleep(1)
        assert health["behind"] == [] and stripe()["lag_seconds"] < 60, health
        assert time.time() - behind_at >= 4
        log = worker.log_tail(2000)
        assert "stripe is behind" in log and "stripe caught up" in log
    finally:
        worker.stop()
