"""A real Prometheus (Debian's package, installed by infra/prometheus_server.py when missing) checks and
unit-tests Concord's alert rules, and scrapes a real worker with the configuration users get
(infra/prometheus/prometheus.yml): a Concord metric is read back through Prometheus' HTTP API."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
import yaml

from concord.bench.common import free_port
from concord.core.settings import Settings
from concord.infra import prometheus_server
from concord.infra.process import InfraError
from tests.integration.harness import WorkerProcess

RULES = Path(__file__).resolve().parents[2] / "infra" / "prometheus"


@pytest.fixture(scope="module")
def tools() -> prometheus_server.Tools:
    try:
        return prometheus_server.ensure_installed()
    except InfraError as exc:
        pytest.skip(f"Prometheus is not available: {exc}")


def test_promtool_checks_the_alert_rules(tools: prometheus_server.Tools) -> None:
    result = subprocess.run([tools.promtool, "check", "rules", "alerts.yml"], cwd=RULES, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_of_the_alerts_pass(tools: prometheus_server.Tools) -> None:
    result = subprocess.run([tools.promtool, "test", "rules", "alerts.test.yml"], cwd=RULES, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def scrape_config(worker_port: int, token_file: Path) -> dict[str, Any]:
    """infra/prometheus/prometheus.yml, as docs/alerts.md tells users to adapt it: the worker job pointed at
    this worker, with the read token (CONCORD_METRICS_REQUIRE_TOKEN); every second, for a quick test."""
    config = yaml.safe_load((RULES / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "concord-worker"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{worker_port}"]}]
    job["authorization"] = {"type": "Bearer", "credentials_file": str(token_file)}
    config["scrape_configs"] = [job]  # the compose services the other jobs name do not exist here
    return config


async def query(session: aiohttp.ClientSession, url: str, promql: str) -> list[dict[str, Any]]:
    async with session.get(f"{url}/api/v1/query", params={"query": promql}) as resp:
        answer = await resp.json()
    assert answer["status"] == "success", answer
    return list(answer["data"]["result"])


async def wait_query(session: aiohttp.ClientSession, url: str, promql: str,
                     timeout: float = 30) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await query(session, url, promql)
        if result:
            return result
        await asyncio.sleep(0.5)
    raise AssertionError(f"Prometheus has no {promql} after {timeout:.0f} s")


async def test_prometheus_scrapes_a_worker_and_answers_its_metrics(
        tools: prometheus_server.Tools, settings: Settings, tmp_path: Path) -> None:
    guarded = msgspec.structs.replace(settings, metrics_require_token=True)
    worker = WorkerProcess([sys.executable, "-m", "concord.app.cli", "worker", "-l", "info"], guarded,
                           tmp_path / "worker.log").start()
    node = prometheus_server.PrometheusNode(tmp_path / "prometheus", free_port())
    try:
        await worker.wait_ready()
        async with aiohttp.ClientSession() as session, session.get(f"{worker.base_url}/metrics") as resp:
            assert resp.status == 401  # the scrape below needs the token
        token = tmp_path / "concord-read-token"
        token.write_text(guarded.read_token)
        prometheus_server.start(node, yaml.safe_dump(scrape_config(guarded.web_port, token)),
                                {"alerts.yml": (RULES / "alerts.yml").read_text()})
        async with aiohttp.ClientSession() as session:
            (up,) = await wait_query(session, node.url, 'up{job="concord-worker"} == 1')
            assert up["metric"]["instance"] == f"127.0.0.1:{guarded.web_port}"
            (ready,) = await wait_query(session, node.url, 'concord_worker_ready{job="concord-worker"}')
            assert ready["value"][1] == "1"
            (kafka,) = await wait_query(session, node.url, "concord_kafka_up")
            (redis,) = await wait_query(session, node.url, "concord_redis_up")
            assert kafka["value"][1] == redis["value"][1] == "1"
            # The worker reports the lag of every partition it consumes (4 per topic in these tests).
            canonical = f"{guarded.topic_prefix}.canonical"
            lags = await wait_query(session, node.url, f'concord_consumer_lag{{topic="{canonical}"}}')
            assert sorted(int(lag["metric"]["partition"]) for lag in lags) == [0, 1, 2, 3]
            # The alert rules users get are loaded and evaluated, and none fires on a healthy worker.
            expected = {rule["alert"] for group in yaml.safe_load((RULES / "alerts.yml").read_text())["groups"]
                        for rule in group["rules"]}
            health: dict[str, str] = {}
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                async with session.get(f"{node.url}/api/v1/rules") as resp:
                    groups = (await resp.json())["data"]["groups"]
                health = {rule["name"]: rule["health"] for group in groups for rule in group["rules"]}
                if set(health.values()) == {"ok"}:
                    break
                await asyncio.sleep(0.5)
            assert health == dict.fromkeys(expected, "ok")
            assert await query(session, node.url, 'ALERTS{alertstate="firing"}') == []
    finally:
        prometheus_server.stop(node)
        worker.stop()
    assert not prometheus_server.stop(node)  # stopped once, nothing left running
