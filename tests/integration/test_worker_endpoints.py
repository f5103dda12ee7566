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
            # Faust's /table and /router endpoints would expose customer data and the cluster layout.
            for path in ("/table/", "/router/"):
                async with session.get(f"{worker.base_url}{path}") as resp:
                    assert resp.status == 404, path
            # Customer data needs the read token, on the running worker too; `/` is the board, not Faust's page.
            async with session.get(f"{worker.base_url}/api/drift") as resp:
                assert resp.status == 401
            async with session.get(f"{worker.base_url}/", allow_redirects=False) as resp:
                assert resp.status == 303 and resp.headers["Location"] == "/login?next=%2F"
            assert "Drift board" in await worker.get_text("/")
    finally:
        assert worker.stop() == 0, worker.log_tail()
