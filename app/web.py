"""Operational HTTP endpoints of every worker: `/healthz`, `/readyz`, `/metrics`, `/api/v1/health`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST

from concord.agents import watermarks
from concord.agents.faust_internals.recovery import recovery_finished
from concord.agents.watermarks import HealthWatch
from concord.app.contract import page
from concord.app.probe import READINESS_SECONDS, KafkaProbe
from concord.app.schemas import Health
from concord.core import metrics
from concord.core.kafka_security import kafka_security
from concord.core.settings import kafka_bootstrap

if TYPE_CHECKING:
    from concord.agents.context import Concord


class Readiness(msgspec.Struct, frozen=True):
    ready: bool
    kafka: bool
    recovery_finished: bool
    detail: str = ""


def register(concord: Concord, health: HealthWatch | None = None) -> None:
    """Add the operational views to the app's web server (`health`: the worker's watch of the platforms'
    watermarks; one is started here when the caller has none)."""
    app = concord.app
    if health is None:
        health = watermarks.register(concord, None)
    watch = health
    probe = KafkaProbe(kafka_bootstrap(concord.settings), kafka_security(concord.settings))

    @app.page("/healthz")
    class Healthz(View):
        """The process is up and serving HTTP (a liveness probe: restart the process if this fails)."""

        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok"})

    @app.page("/readyz")
    class Readyz(View):
        """Kafka reachable and table recovery finished (a readiness probe: route traffic when 200)."""

        async def get(self, request: Request) -> Response:
            state = await readiness(concord, probe)
            return self.bytes(
                msgspec.json.encode(state), content_type="application/json", status=200 if state.ready else 503
            )

    @page(app, "/health")
    class HealthView(View):
        """Per platform: how far Concord has read (its watermark), how far behind, since when. `/readyz`
        stays ready while Concord is behind: it is working, only slower."""

        async def get(self, request: Request) -> Response:
            state = await readiness(concord, probe)
            platforms = list(watch.platforms.values())
            body = Health(ready=state.ready, platforms=platforms, behind=[p.platform for p in platforms if p.behind],
                          read_at=watch.read_at, detail="; ".join(d for d in (state.detail, watch.error) if d))
            return self.bytes(msgspec.json.encode(body), content_type="application/json")

    @app.page("/metrics")
    class Metrics(View):
        """Prometheus exposition of this worker's metrics."""

        async def get(self, request: Request) -> Response:
            # aiohttp refuses parameters in `content_type`; the full header goes in `headers`.
            return self.bytes(metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.timer(interval=READINESS_SECONDS)
    async def refresh_readiness() -> None:
        """`concord_worker_ready` and `concord_kafka_up` kept current, whether or not anything polls `/readyz`."""
        await readiness(concord, probe)

    @app.on_before_shutdown.connect
    async def _close_probe(app: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        await probe.close()


async def readiness(concord: Concord, probe: KafkaProbe) -> Readiness:
    """Kafka reachable and every assigned table partition recovered from its changelog (`concord_worker_ready`)."""
    finished = recovery_finished(concord.app)
    kafka_ok, detail = await probe.reachable()
    if not finished:
        detail = (detail + "; " if detail else "") + "table recovery in progress"
    metrics.worker_ready.set(1 if kafka_ok and finished else 0)
    return Readiness(ready=kafka_ok and finished, kafka=kafka_ok, recovery_finished=finished, detail=detail)
