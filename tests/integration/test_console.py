"""The console's backend on the real broker and Redis: search, the customer 360, the timeline, and the
worker that owns a customer answering for it whichever worker is asked (issue 14, parts 2 and 3)."""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import msgspec
import redis.asyncio as aioredis

from concord.app.sessions import COOKIE
from concord.bench.common import free_port
from concord.bench.workload import customer_key, history
from concord.codecs.model import AccountUpserted, CanonicalEvent, CustomerUpserted, SubscriptionChanged, Version
from concord.codecs.model import encode as encode_event
from concord.core.settings import Settings
from concord.core.topics import topic_names
from tests.integration.harness import READ_TOKEN, Infra, WorkerProcess, produce
from tests.integration.test_drift import rules_file

T = TypeVar("T")
N = 7
KEY = customer_key(N)
CUS, SUB = f"cus_B{N:012d}", f"sub_B{N:012d}"
NETSUITE_CUSTOMER, ZENDESK_ORG = f"{70_000 + N}", f"{360_000 + N}"
INVOICE = f"in_B{N:010d}0"
NEW_ROUTES = ("/api/search?q=x", f"/api/customers/{KEY}/view", f"/api/customers/{KEY}/timeline")


def customer_events(now: int) -> list[CanonicalEvent]:
    """A typical customer whose CRM account was renamed (with accents; the other systems keep the old name:
    D09 for each) and whose Stripe record has an email, and whose subscription has just been canceled while
    its support entitlement is still active (D01, and D15 for its open ticket)."""
    events = []
    for event in history(N, random.Random(3)):
        if isinstance(event, AccountUpserted):
            event = msgspec.structs.replace(event, name="Bäckerei Müller GmbH")
        elif isinstance(event, CustomerUpserted) and event.customer_id == CUS:
            event = msgspec.structs.replace(event, email="Billing@Mueller.example")
        events.append(event)
    sub = next(e for e in events if isinstance(e, SubscriptionChanged))
    events.append(msgspec.structs.replace(sub, event_id="evt_cancel", correlation_id="corr-cancel", status="canceled",
                                          canceled_at=now, occurred_at=now, version=Version(now, 9)))
    return events


async def until(probe: Callable[[], Awaitable[T | None]], what: str, timeout: float = 60.0) -> T:
    """The first non-None answer of `probe`, polled; fails after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await probe()
        if found is not None:
            return found
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


async def get(worker: WorkerProcess, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{worker.base_url}{path}",
                                                               headers=headers or {}) as resp:
        return resp.status, await resp.json(content_type=None)


async def sign_in(worker: WorkerProcess) -> str:
    """A browser's session cookie from `worker`'s sign-in page, as a `Cookie` header's value."""
    async with aiohttp.ClientSession() as session, session.post(
            f"{worker.base_url}/login", data={"token": READ_TOKEN, "next": "/"}, allow_redirects=False) as resp:
        assert resp.status == 303, await resp.text()
        morsel = resp.cookies[COOKIE]
        return f"{morsel.key}={morsel.value}"


async def page(worker: WorkerProcess, path: str, headers: dict[str, str]) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(f"{worker.base_url}{path}", headers=headers,
                                                               allow_redirects=False) as resp:
        return resp.status, await resp.text()


def reader(headers: dict[str, str] | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {READ_TOKEN}", **(headers or {})}


async def search(worker: WorkerProcess, q: str) -> list[dict[str, Any]]:
    status, body = await get(worker, f"/api/search?q={q}", reader())
    assert status == 200, body
    return list(body["hits"])


def field(view: dict[str, Any], system: str, kind: str, rid: str, name: str) -> dict[str, Any]:
    records = [r for s in view["systems"] if s["system"] == system for r in s["records"]
               if r["kind"] == kind and r["id"] == rid]
    assert len(records) == 1, (system, kind, rid)
    return next(f for f in records[0]["fields"] if f["name"] == name)


def console_settings(settings: Settings, tmp_path: Path) -> Settings:
    return msgspec.structs.replace(settings, rules_file=str(rules_file(tmp_path)), deadline_scan_seconds=0.2)


async def test_search_the_customer_view_and_the_timeline(infra: Infra, settings: Settings, tmp_path: Path) -> None:
    settings = console_settings(settings, tmp_path)
    names = topic_names(settings)
    # With commands: the suspension is dead-lettered (no Zendesk connector here), a result for the timeline.
    worker = WorkerProcess([sys.executable, "-m", "concord.app.cli", "worker", "--roles", "state,commands"],
                           settings, tmp_path / "worker.log").start()
    try:
        await worker.wait_ready()
        for path in NEW_ROUTES:  # customer data needs the read token
            for headers in ({}, {"Authorization": "Bearer not-the-read-token-at-all"}):
                assert (await get(worker, path, headers))[0] == 401, path
        assert (await get(worker, "/api/search?q=%20", reader()))[0] == 400
        status, body = await get(worker, f"/api/search?q={'x' * 201}", reader())
        assert status == 400 and "at most 200" in body["detail"]

        events = customer_events(int(time.time() * 1000))
        await produce(infra.bootstrap, names.canonical, [(KEY.encode(), encode_event(e)) for e in events])

        async def found(q: str) -> list[dict[str, Any]] | None:
            return await search(worker, q) or None

        # Any id a person has at hand, with the system and kind of record it names.
        (hit,) = await until(lambda: found(CUS), "the Stripe customer id in the search index")
        assert (hit["key"], hit["match"], hit["name"]) == (KEY, "id", "Bäckerei Müller GmbH")
        assert hit["records"] == [{"id": CUS, "system": "stripe", "kind": "customer"}]
        assert {"id": NETSUITE_CUSTOMER, "system": "netsuite", "kind": "customer"} in hit["ids"]
        assert hit["view"] == f"/api/customers/{KEY}/view"
        (hit,) = await search(worker, SUB)
        assert hit["records"] == [{"id": SUB, "system": "stripe", "kind": "subscription"}]
        (hit,) = await search(worker, NETSUITE_CUSTOMER)
        assert hit["records"] == [{"id": NETSUITE_CUSTOMER, "system": "netsuite", "kind": "customer"}]
        (hit,) = await search(worker, INVOICE)  # the Stripe invoice, and the NetSuite invoice booking it
        assert sorted((r["system"], r["kind"]) for r in hit["records"]) == [
            ("netsuite", "invoice_external_id"), ("stripe", "invoice")]
        (hit,) = await search(worker, ZENDESK_ORG)
        assert hit["records"] == [{"id": ZENDESK_ORG, "system": "zendesk", "kind": "organization"}]
        (hit,) = await search(worker, KEY)
        assert hit["records"] == [{"id": KEY, "system": "salesforce", "kind": "account"}]
        # An email (any case), a name by the beginning of any of its words, accents and case folded.
        (hit,) = await search(worker, "Billing@Mueller.EXAMPLE")
        assert (hit["key"], hit["match"], hit["matched"]) == (KEY, "email", "billing@mueller.example")
        for prefix in ("m%C3%BCller", "BACK", "b%C3%A4ckerei%20m"):  # müller, BACK, bäckerei m
            (hit,) = await search(worker, prefix)
            assert (hit["key"], hit["match"], hit["matched"]) == (KEY, "name", "Bäckerei Müller GmbH"), prefix
        assert await search(worker, "cus_nobody") == []

        # The cancellation opens D01; its suspension is dead-lettered (no connector), so it is escalated.
        async def escalated() -> dict[str, Any] | None:
            status, view = await get(worker, f"/api/customers/{KEY}/view", reader())
            assert status == 200, view
            d01 = [f for f in view["open_findings"] if f["rule"] == "D01" and f["status"] == "escalated"]
            return view if d01 else None

        view = await until(escalated, "D01 escalated in the customer view")
        d01 = next(f for f in view["open_findings"] if f["rule"] == "D01")
        status_field = field(view, "stripe", "subscription", SUB, "status")
        assert (status_field["value"], status_field["disagrees"]) == ("canceled", True)
        assert d01["fingerprint"] in status_field["findings"]
        entitlement = field(view, "zendesk", "entitlement", ZENDESK_ORG, "entitlement_status")
        assert (entitlement["value"], entitlement["disagrees"]) == ("active", True)
        assert not field(view, "stripe", "subscription", SUB, "plan")["disagrees"]
        name_row = next(r for r in view["master"] if r["field"] == "name")
        assert [(c["system"], c["value"], c["disagrees"]) for c in name_row["cells"]] == [
            ("salesforce", "Bäckerei Müller GmbH", True), ("stripe", f"Customer {N} GmbH", True),
            ("zendesk", f"Customer {N} GmbH", True), ("netsuite", f"Customer {N} GmbH", True)]
        assert sorted(f["rule"] for f in view["open_findings"]) == ["D01", "D09", "D09", "D09", "D15"]
        pair = next(p for p in view["invoices"] if p["billing_invoice_id"] == INVOICE)
        assert pair["billing"]["id"] == INVOICE and pair["erp"]["id"] == f"{NETSUITE_CUSTOMER}0"

        async def counted() -> int | None:  # the drift index is mirrored in the background
            (hit,) = await search(worker, SUB)
            return hit["open_findings"] if hit["open_findings"] == 5 else None

        await until(counted, "the 5 open findings counted in a search hit")

        # The timeline: the events in, the finding's steps, the command and its result, one correlation id.
        async def complete() -> list[dict[str, Any]] | None:
            status, body = await get(worker, f"/api/customers/{KEY}/timeline?limit=200", reader())
            assert status == 200, body
            kinds = {c["kind"] for c in body["checkpoints"]}
            wanted = {"events.applied", "drift.open", "command.issued", "command.dead_lettered", "drift.escalated"}
            return list(body["checkpoints"]) if wanted <= kinds else None

        timeline = await until(complete, "the timeline's checkpoints")
        assert [c["at"] for c in timeline] == sorted((c["at"] for c in timeline), reverse=True)  # newest first
        applied = [c for c in timeline if c["kind"] == "events.applied"]
        assert sum(c["detail"]["count"] for c in applied) == len(events)  # one checkpoint per event here
        chain = [c for c in timeline if c["detail"].get("fingerprint") == d01["fingerprint"]]
        assert {c["kind"] for c in chain} >= {"drift.open", "command.issued", "command.dead_lettered",
                                             "drift.escalated"}
        cancel = next(c for c in applied if c["detail"]["events"][0]["event_id"] == "evt_cancel")
        assert cancel["correlation_id"] == "corr-cancel"
        assert {c["correlation_id"] for c in chain} == {"corr-cancel"}  # the event that revealed the finding
        assert view["timeline"] and view["timeline_url"] == f"/api/v1/customers/{KEY}/timeline"

        # Redis loses the search index and the timelines: both are rebuilt (from the table, from the topic).
        client = aioredis.from_url(settings.redis_url)
        prefix = settings.topic_prefix
        lost = [k async for k in client.scan_iter(match=f"{prefix}:search:*")]
        lost += [k async for k in client.scan_iter(match=f"{prefix}:timeline:*")]
        await client.delete(*lost)
        await client.aclose()
        assert await search(worker, CUS) == []
        (hit,) = await until(lambda: found(CUS), "the search index mirrored again", timeout=30)
        assert hit["key"] == KEY

        async def refilled() -> list[dict[str, Any]] | None:
            checkpoints = (await get(worker, f"/api/customers/{KEY}/timeline?limit=200", reader()))[1]["checkpoints"]
            return checkpoints if len(checkpoints) == len(timeline) else None

        again = await until(refilled, "the timeline read again from the audit topic", timeout=30)
        assert again == timeline
    finally:
        assert worker.stop() == 0, worker.log_tail()


async def test_any_worker_answers_for_a_customer_the_worker_that_owns_it_holds(
    infra: Infra, settings: Settings, tmp_path: Path
) -> None:
    settings = console_settings(settings, tmp_path)
    other = msgspec.structs.replace(settings, web_port=free_port(), data_dir=str(tmp_path / "data2"))
    names = topic_names(settings)
    argv = [sys.executable, "-m", "concord.app.cli", "worker", "--roles", "state"]
    workers = [WorkerProcess(argv, s, tmp_path / f"worker{i}.log") for i, s in enumerate((settings, other))]
    keys = [customer_key(i) for i in range(100, 112)]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            await worker.wait_ready()
        rng = random.Random(5)
        await produce(infra.bootstrap, names.canonical, [
            (e.customer_key.encode(), encode_event(e)) for i in range(100, 112) for e in history(i, rng)
            if e.customer_key is not None])

        async def owners() -> dict[str, int] | None:
            """Each key's owner: asked as a forwarded request, only the owner answers (a non-owner: 503)."""
            found: dict[str, int] = {}
            for key in keys:
                answers = [(await get(w, f"/api/customers/{key}/view", reader({"X-Concord-Forwarded": "1"})))[0]
                           for w in workers]
                if sorted(answers) != [200, 503]:
                    return None  # rebalancing, or the state not written yet
                found[key] = answers.index(200)
            return found if set(found.values()) == {0, 1} else None  # both own customers

        owned = await until(owners, "both workers owning customers", timeout=90)
        for key in keys:
            mine = workers[owned[key]]
            theirs = workers[1 - owned[key]]
            for path in (f"/api/customers/{key}/view", f"/api/customers/{key}"):
                at_owner = await get(mine, path, reader())
                forwarded = await get(theirs, path, reader())
                assert at_owner[0] == 200 and forwarded == at_owner, (key, path)
            # Forwarded with the caller's own credential (the owner answered 200 above), and refused without one.
            assert (await get(theirs, f"/api/customers/{key}/view"))[0] == 401
            assert (await get(theirs, f"/api/customers/{key}/view",
                              {"Authorization": "Bearer not-the-read-token-at-all"}))[0] == 401
        # The customer page too, for a browser signed in at a worker that does not own the customer: its
        # session cookie goes along, the owner renders the page, and an unknown customer is a 404 page.
        cookie = await sign_in(workers[0])
        for key in keys[:4]:
            for worker in workers:
                status, text = await page(worker, f"/customers/{key}", {"Cookie": cookie})
                assert status == 200 and f"Salesforce account <code>{key}</code>" in text, (key, status, text)
            status, _ = await page(workers[1 - owned[key]], f"/customers/{key}", {})
            assert status == 303  # no credential: sent to sign in, not forwarded
        unknown = await page(workers[0], "/customers/001Nobody000000AAA", {"Cookie": cookie})
        assert unknown[0] == 404 and "No customer 001Nobody000000AAA" in unknown[1]
    finally:
        for worker in workers:
            # Not asserting a clean exit: the first one's leaving rebalances the second one, which Faust may
            # be in the middle of when the second is stopped.
            worker.stop()
