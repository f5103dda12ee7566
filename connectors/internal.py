"""Actions of the platform "concord": Concord's own corrective steps, executed like any connector's.

* `concord.probe` (D14, a correction that did not converge): look up the stuck command
  (`payload.command_id`) in the ledger and report its state in the outcome, so the result says
  whether the correction is still pending, failed (see the dead-letter topic) or done (then the
  platform did not keep it, or its events have not come back).
* `saga.resume` (D10, closed-won not provisioned): nothing to call; once the ledger let it through (once
  per command id), the command agent tells the opportunity's saga to resume (agents/commands.py
  `saga_signal`, drift/saga.py). The outcome names the opportunity.

Ledger errors (Redis away) propagate unchanged: the executor pauses on them like on its own.
"""

from __future__ import annotations

from typing import Final

from concord.connectors.base import ConnectorError, ErrorKind, Outcome
from concord.connectors.ledger import Ledger
from concord.core.messages import Command

PLATFORM: Final = "concord"
PROBE: Final = "concord.probe"
SAGA_RESUME: Final = "saga.resume"

E_PROBE_WITHOUT_ID: Final = "concord.probe needs payload.command_id (the stuck command to look up); got {keys}"
E_RESUME_WITHOUT_ID: Final = "saga.resume needs target.opportunity_id (the deal whose saga to resume); got {keys}"


class InternalActions:
    """The "concord" platform's connector."""

    platform = PLATFORM
    actions = frozenset({PROBE, SAGA_RESUME})

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    async def execute(self, command: Command) -> Outcome:
        if command.action == PROBE:
            return await self._probe(command)
        if command.action == SAGA_RESUME:
            opportunity = command.target.get("opportunity_id")
            if not opportunity:
                raise ConnectorError(ErrorKind.DATA, E_RESUME_WITHOUT_ID.format(keys=sorted(command.target)))
            return Outcome(status=202, record_id=opportunity, detail={"opportunity_id": opportunity,
                                                                      "customer_key": command.customer_key})
        raise ConnectorError(ErrorKind.DATA, f"unsupported action {command.action} for platform {PLATFORM}")

    async def _probe(self, command: Command) -> Outcome:
        stuck_id = command.payload.get("command_id")
        if not isinstance(stuck_id, str) or not stuck_id:
            raise ConnectorError(ErrorKind.DATA, E_PROBE_WITHOUT_ID.format(keys=sorted(command.payload)))
        entry = await self._ledger.get(stuck_id)
        if entry is None:
            # Never claimed (still queued behind others) or older than the ledger's TTL.
            return Outcome(status=200, record_id=stuck_id, detail={"command_id": stuck_id, "state": "unknown"})
        detail = {
            "command_id": stuck_id, "state": entry.state, "attempts": entry.attempts, "replays": entry.replays,
            "action": entry.action, "platform": entry.platform, "updated_at": entry.updated_at,
        }
        if entry.error:
            detail["error_kind"] = entry.error_kind
            detail["error"] = entry.error
        if entry.outcome is not None:
            detail["record_id"] = entry.outcome.record_id
        return Outcome(status=200, record_id=stuck_id, detail=detail)

    async def close(self) -> None:
        """Nothing to release: the ledger belongs to the executor."""
