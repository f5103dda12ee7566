"""JSON API of command execution.

* `GET /api/commands/status`: this worker's command execution: the circuit breaker of each platform
  it called (state, consecutive failures, when the next call or probe may go), halted platforms
  (credentials refused), whether Redis (ledger, rate limits) answers now, the configured rate limits.
  Breakers are per worker: ask each worker running the `commands` role.
* `GET /api/commands/{command_id}`: the command's ledger entry (any worker answers: it is in Redis).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from faust.web import Request, Response, View

from concord.app.contract import page
from concord.app.schemas import ApiError, CommandsStatus
from concord.connectors.executor import REDIS_ERRORS, Executor
from concord.connectors.ledger import RedisLedger
from concord.connectors.ratelimit import limits_from_settings

if TYPE_CHECKING:
    from concord.agents.context import Concord

_encode = msgspec.json.Encoder().encode

E_REDIS = "Redis is unreachable ({error}): the command ledger cannot be read now; try again when it is back"


def register(concord: Concord, executor: Executor | None) -> None:
    """Add the command views; `executor` is None on a worker without the commands role."""
    app = concord.app
    settings = concord.settings
    client = concord.redis
    ledger = RedisLedger(client, settings.topic_prefix, settings.command_ledger_ttl_seconds)
    limits = limits_from_settings(settings)

    def json(view: View, value: Any, status: int = 200) -> Response:
        return view.bytes(_encode(value), content_type="application/json", status=status)

    @page(app, "/commands/status")
    class StatusView(View):
        async def get(self, request: Request) -> Response:
            detail = ""
            try:
                reachable = bool(await client.ping())
            except REDIS_ERRORS as exc:
                reachable, detail = False, f"redis: {type(exc).__name__}: {exc}"
            executing = executor.status() if executor is not None else None
            return json(self, CommandsStatus(
                executing=executing is not None, redis_reachable=reachable,
                breakers=executing.breakers if executing else [], halted=executing.halted if executing else [],
                connectors=executing.connectors if executing else [], rate_limits=limits, detail=detail,
            ))

    @page(app, "/commands/{command_id}")
    class CommandView(View):
        async def get(self, request: Request, command_id: str) -> Response:
            try:
                entry = await ledger.get(command_id)
            except REDIS_ERRORS as exc:
                return json(self, ApiError("redis_unavailable", E_REDIS.format(error=f"{type(exc).__name__}: {exc}")),
                            503)
            if entry is None:
                return json(self, ApiError("not_found", f"no ledger entry for command {command_id} (never executed, "
                                           f"or older than {settings.command_ledger_ttl_seconds} s)"), 404)
            return json(self, entry)
