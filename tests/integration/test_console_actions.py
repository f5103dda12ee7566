"""The console's named actions on a real worker, broker and Redis (issue 14, part 4): an operator of the users
file signs in with their own token, gets a session cookie, is refused without the CSRF token, accepts a finding
from the board's form with a note and snoozes another, approves a correction waiting for approval (`mode:
approve`: the command is sent with the id it waited under), replays its dead letter, retries it and rejects the
retry, and the audit topic and the customer's timeline name them."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from concord.app import users
from concord.codecs.model import encode as encode_event
from concord.core import messages
from concord.core.settings import Settings
from concord.core.topics import topic_names
from tests.integration.harness import Infra, WorkerProcess, produce, wait_for_record
from tests.integration.test_console import KEY, console_settings, customer_events, get, reader, until


async def test_an_operator_signs_in_and_accepts_a_finding_with_a_note(infra: Infra, settings: Settings,
                                                                      tmp_path: Path) -> None:
    users_file = tmp_path / "users.toml"
    token = users.add(users_file, "alice", "operator")
    viewer = users.add(users_file, "bob", "viewer")
    settings = msgspec.structs.replace(console_settings(settings, tmp_path), users_file=str(users_file))
    rules = json.loads(Path(settings.rules_file).read_text())
    rules["rules"]["D01"]["mode"] = "approve"  # finance will not let a tool act unattended at first
    Path(settings.rules_file).write_text(json.dumps(rules))
    names = topic_names(settings)
    worker = WorkerProcess([sys.executable, "-m", "concord.app.cli", "worker", "--roles", "state,commands"],
                           settings, tmp_path / "worker.log").start()
    try:
        await worker.wait_ready()
        await produce(infra.bootstrap, names.canonical,
                      [(KEY.encode(), encode_event(e)) for e in customer_events(int(time.time() * 1000))])

        async def open_d15() -> dict[str, Any] | None:
            status, page = await get(worker, f"/api/drift?customer_key={KEY}&rule=D15", reader())
            assert status == 200, page
            return page["items"][0] if page["items"] else None

        finding = await until(open_d15, "D15 open on the drift index")
        fp = finding["fingerprint"]
        accept_url = f"{worker.base_url}/api/v1/drift/{fp}/accept"

        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            async with browser.post(f"{worker.base_url}/login", data={"token": viewer}) as resp:
                assert resp.status == 200  # after the redirect: the board
            async with browser.get(f"{worker.base_url}/") as resp:
                assert "csrf_token" not in await resp.text()  # a viewer is offered no action
            browser.cookie_jar.clear()

            async with browser.post(f"{worker.base_url}/login", data={"token": token}) as resp:
                assert resp.status == 200 and "Accept as alice" in await resp.text()
            async with browser.get(f"{worker.base_url}/?rule=D15") as resp:
                board = await resp.text()
            found = re.search(rf'action="/api/v1/drift/{fp}/accept">\s*<input type="hidden" name="csrf_token" '
                              r'value="([^"]+)"', board)
            assert found is not None, board
            csrf = found.group(1)
            async with browser.post(accept_url, data={"note": "grandfathered"}, allow_redirects=False) as resp:
                assert resp.status == 403 and (await resp.json())["error"] == "csrf"
            async with browser.post(accept_url, data={"note": "grandfathered", "csrf_token": csrf},
                                    allow_redirects=False) as resp:
                assert resp.status == 303, await resp.text()
            status, page = await get(worker, f"/api/drift?customer_key={KEY}&rule=D09", reader())
            d09 = page["items"][0]["fingerprint"]
            async with browser.post(f"{worker.base_url}/api/v1/drift/{d09}/snooze", allow_redirects=False,
                                    data={"hours": "4", "note": "rename in review", "csrf_token": csrf}) as resp:
                assert resp.status == 303, await resp.text()

        record = await wait_for_record(infra.bootstrap, names.audit, lambda r: b'"action.accept"' in r.value)
        action = msgspec.json.decode(record.value, type=messages.AuditRecord)
        assert (action.customer_key, action.detail["by"], action.detail["note"], action.detail["outcome"]) == (
            KEY, "alice", "grandfathered", "accepted")

        async def accepted() -> dict[str, Any] | None:
            status, item = await get(worker, f"/api/drift/{fp}", reader())
            return item if status == 200 and item["status"] == "resolved" else None

        record = await wait_for_record(infra.bootstrap, names.audit, lambda r: b'"action.snooze"' in r.value)
        snoozed = msgspec.json.decode(record.value, type=messages.AuditRecord)
        assert (snoozed.detail["by"], snoozed.detail["fingerprint"]) == ("alice", d09)
        assert snoozed.detail["outcome"].startswith("snoozed until ")

        item = await until(accepted, "D15 resolved as accepted")
        assert item["resolution"] == "accepted" and item["note"] == "accepted by alice: grandfathered"

        async def on_the_timeline() -> dict[str, Any] | None:
            body = (await get(worker, f"/api/customers/{KEY}/timeline?limit=200", reader()))[1]
            return next((c for c in body["checkpoints"] if c["kind"] == "action.accept"), None)

        checkpoint = await until(on_the_timeline, "the accept on the customer's timeline")
        assert checkpoint["summary"] == f"accept by alice (grandfathered): accepted, finding {fp}"

        # D01's rule is in `mode: approve`: its suspension waits on the board until alice approves it there.
        async def awaiting_d01() -> dict[str, Any] | None:
            status, page = await get(worker, f"/api/drift?customer_key={KEY}&rule=D01", reader())
            return page["items"][0] if status == 200 and page["items"] and page["items"][0]["awaiting"] else None

        d01 = await until(awaiting_d01, "D01's correction awaiting approval")
        waiting = d01["awaiting"]
        assert d01["status"] == "open" and waiting == messages.command_id(d01["fingerprint"], d01["action"], 1,
                                                                          d01["since"])
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            async with browser.post(f"{worker.base_url}/login", data={"token": token, "next": "/?rule=D01"}) as resp:
                board = await resp.text()
            assert "Awaiting approval" in board and waiting in board
            found = re.search(rf'action="/api/v1/drift/{d01["fingerprint"]}/approve">\s*<input type="hidden" '
                              r'name="csrf_token" value="([^"]+)"', board)
            assert found is not None, board
            async with browser.post(f"{worker.base_url}/api/v1/drift/{d01['fingerprint']}/approve",
                                    data={"csrf_token": found.group(1)}, allow_redirects=False) as resp:
                assert resp.status == 303, await resp.text()
        command = await wait_for_record(infra.bootstrap, names.commands, lambda r: waiting.encode() in r.value)
        assert msgspec.json.decode(command.value, type=messages.Command).generation == 1
        record = await wait_for_record(infra.bootstrap, names.audit, lambda r: b'"action.approve"' in r.value)
        approval = msgspec.json.decode(record.value, type=messages.AuditRecord)
        assert (approval.detail["by"], approval.detail["outcome"]) == ("alice", f"command {waiting} sent")

        # The suspension is dead-lettered (no Zendesk connector here): a script acts with alice's own token (no
        # CSRF token: no browser sends a bearer by itself): replays it (a dry run), retries it (which waits for
        # approval again), and rejects that.
        async def escalated_d01() -> dict[str, Any] | None:
            status, page = await get(worker, f"/api/drift?customer_key={KEY}&rule=D01&status=escalated", reader())
            return page["items"][0] if status == 200 and page["items"] else None

        d01 = await until(escalated_d01, "D01 escalated after its dead-lettered correction")
        fp = d01["fingerprint"]
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
            async with session.post(f"{worker.base_url}/api/dead-letters/replay",
                                    json={"kind": "commands", "ids": [waiting], "dry_run": True}) as resp:
                assert resp.status == 200, await resp.text()
                replay = await resp.json()
            assert replay["summary"]["matched"] == 1 and replay["by"] == "alice"
            assert len(replay["lines"]) == 1 and waiting in replay["lines"][0]
            assert not d01.get("awaiting")  # escalated: nothing waits for approval, so nothing can be approved
            async with session.post(f"{worker.base_url}/api/drift/{fp}/approve", json={}) as resp:
                assert resp.status == 409 and (await resp.json())["error"] == "not_awaiting", await resp.text()
            async with session.post(f"{worker.base_url}/api/drift/{fp}/retry", json={"note": "fixed"}) as resp:
                assert resp.status == 202 and (await resp.json())["by"] == "alice"
            second = messages.command_id(fp, d01["action"], 2, d01["since"])

            async def awaiting_again() -> dict[str, Any] | None:
                item = (await get(worker, f"/api/drift/{fp}", reader()))[1]
                return item if item.get("awaiting") == second else None

            await until(awaiting_again, "the retried correction awaiting approval")
            async with session.post(f"{worker.base_url}/api/drift/{fp}/reject", json={"note": "by hand"}) as resp:
                assert resp.status == 202, await resp.text()
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {viewer}"}) as session, session.post(
                f"{worker.base_url}/api/drift/{fp}/retry") as resp:
            assert resp.status == 403  # a viewer's token reads, never acts

        for kind, outcome in (("replay", None), ("retry", f"command {second} awaiting approval"),
                              ("reject", f"command {second} not sent: escalated")):
            record = await wait_for_record(infra.bootstrap, names.audit, lambda r, k=kind: f'"action.{k}"'.encode()
                                           in r.value)
            detail = msgspec.json.decode(record.value, type=messages.AuditRecord).detail
            assert detail["by"] == "alice" and (outcome is None or detail["outcome"] == outcome), detail

        async def rejected() -> dict[str, Any] | None:
            item = (await get(worker, f"/api/drift/{fp}", reader()))[1]
            return item if item["note"].startswith("correction rejected by alice") else None

        assert (await until(rejected, "D01 escalated by the rejection"))["status"] == "escalated"
    finally:
        worker.stop()
