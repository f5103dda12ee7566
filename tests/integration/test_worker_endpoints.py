"""The real `concord worker` on the real broker answers its operational endpoints."""

from __future__ import annotations

import sys
from pathlib import Path

import aiohttp

from concord.core.settings import Settings
from tests.integration.harness import WorkerProcess


async def test_worker_health_ready_metrics_and_no_table_endpoint(settings: Settings, tmp_path: Path) -> None:
    worker = WorkerProcess([sys.executable, "-m", "concord.app.cli", "worker", "-l", "info"], settings,
                           tmp_path / "worker.log").start()
    try:
        await worker.wait_ready()
        assert await worker.get_json("/healthz") == {"status": "ok"}
        ready = await worker.get_json("/readyz")
        assert ready == {"ready": True, "kafka": True, "recovery_finished": True, "detail": ""}
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{worker.base_url}/metrics") as resp:
                assert resp.status == 200
                assert "concord_worker_ready 1.0" in await resp.text()
            # Faust's /table endpoints would expose customer data: they must not exist.
            async with session.get(f"{worker.base_url}/table/") as resp:
                assert resp.status == 404
    finally:
        assert worker.stop() == 0, worker.log_tail()
