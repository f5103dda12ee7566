"""Unknown is not absent, on the real broker: a rule reading a support entitlement that is not read yet
waits, reports "cannot judge" after its bound, and commands nothing blind.

The customer pays (an active Stripe subscription) and no entitlement was ever read for it: D02
("paying without a support entitlement") would report it after its 2 s grace and command a grant.
But a Zendesk organization webhook for the customer came first, which carries no custom fields, and
its re-read cannot be made (no Zendesk connector is configured, as when the re-reads fail): the
entitlement is unread, so D02 waits; after the 6 s bound it is reported "cannot judge", with no grant.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import orjson

from concord.bench.workload import customer_key, history
from concord.codecs.model import EntitlementChanged
from concord.codecs.model import encode as encode_event
from concord.core.settings import Settings
from concord.core.topics import topic_names
from concord.drift import catalog
from tests.integration.harness import Infra, WorkerProcess, produce, read_all
from tests.unit.codecs import zendesk_payloads as zd

BOUND_S = 6


async def test_a_rule_reading_an_unread_entitlement_waits_then_cannot_judge_and_commands_nothing(
        infra: Infra, settings: Settings, tmp_path: Path) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"rules": {r.id: {"grace_seconds": 2} for r in catalog.RULES},
                                 "correction_timeout_seconds": 3600, "unread_bound_seconds": BOUND_S}))
    configured = msgspec.structs.replace(settings, rules_file=str(rules), deadline_scan_seconds=0.2)
    names = topic_names(configured)
    key = customer_key(5)
    paying = [e for e in history(5, random.Random(5)) if not isinstance(e, EntitlementChanged)]
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    webhook = zd.webhook("organization.custom_field_changed", zd.org_detail(external_id=key, updated_at=now),
                         event_id="zd-unread-1", time=now)
    worker = WorkerProcess([sys.executable, "-m", "concord.app.cli", "worker", "-l", "info"], configured,
                           tmp_path / "worker.log").start()

    async def state() -> dict[str, Any]:
        found = await worker.get_json(f"/api/customers/{key}")
        assert isinstance(found, dict)
        return found

    async def d02() -> list[dict[str, Any]]:
        page = await worker.get_json(f"/api/drift?status=all&rule=D02&customer_key={key}")
        assert isinstance(page, dict)
        return list(page["items"])

    try:
        await worker.wait_ready()
        await produce(infra.bootstrap, names.raw["zendesk"], [(None, webhook)])
        for _ in range(100):  # the webhook reaches the customer's state: its entitlement is unread
            try:
                if (await state())["support"]["unread"]:
                    break
            except AssertionError:
                pass  # not a customer yet
            await asyncio.sleep(0.2)
        marked_at = time.monotonic()
        assert (await state())["support"]["unread"], await state()
        await produce(infra.bootstrap, names.canonical, [(key.encode(), encode_event(e)) for e in paying])

        await asyncio.sleep(4)  # past D02's grace, before the bound: nothing reported
        assert await d02() == [] or time.monotonic() - marked_at >= BOUND_S
        found: list[dict[str, Any]] = []
        for _ in range(100):
            found = await d02()
            if found:
                break
            await asyncio.sleep(0.3)
        (finding,) = found
        assert finding["status"] == "open" and finding["note"].startswith("cannot judge: support unreadable since ")
        await asyncio.sleep(1)  # nothing is commanded for it, then or later
        commands = [orjson.loads(r.value) for r in await read_all(infra.bootstrap, names.commands, timeout=10)]
        # Nothing by a rule that reads the entitlement (the organization's name, which the webhook does
        # carry, is judged as usual: D09 may correct it).
        assert [c for c in commands if c["rule"] in ("D01", "D02", "D03", "D15")] == [], commands
        rereads = [c for c in commands if c["action"] == "support.fetch_organization"]
        # The re-read was asked for when the webhook came, and once more when the finding could not be judged
        # (the first may have failed for good while the platform failed).
        assert len({c["command_id"] for c in rereads}) >= 2, rereads
    finally:
        worker.stop()
