"""The API contract against a live worker: schemathesis generates requests for every operation of the
OpenAPI document the worker serves (`/api/openapi.json`), and no answer is a 5xx or breaks the document's
schema. The state-changing routes are called with the read token only: their documented refusal (403).
And the process APIs (app/lookups.py) answer for a customer fed through the pipeline."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import hypothesis
import msgspec
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from concord.app import contract
from concord.codecs.model import encode as encode_event
from concord.core.settings import Settings
from concord.core.topics import topic_names
from tests.integration.harness import READ_TOKEN, Infra, WorkerProcess, produce
from tests.integration.test_console import (
    INVOICE,
    KEY,
    NETSUITE_CUSTOMER,
    SUB,
    ZENDESK_ORG,
    console_settings,
    customer_events,
    get,
    reader,
    until,
)

CHECKS = [not_a_server_error, response_schema_conformance]
EXAMPLES = 20
#: A customer's routes called with the fed customer's key, so that a 200 is checked too (generated keys: 404).
KNOWN_KEY = ("/customers/{key}", "/customers/{key}/view", "/customers/{key}/timeline",
             "/customers/{key}/entitlement", "/customers/{key}/invoices", "/customers/{key}/subscriptions")


def fuzz(base_url: str) -> list[str]:
    """Every operation of the served document, `EXAMPLES` generated requests each (deterministic)."""
    schema = schemathesis.openapi.from_url(f"{base_url}{contract.OPENAPI_PATH}")
    headers = {"Authorization": f"Bearer {READ_TOKEN}"}
    tested = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @hypothesis.settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                             suppress_health_check=list(hypothesis.HealthCheck), phases=[hypothesis.Phase.generate])
        @hypothesis.given(case=operation.as_strategy())
        def call(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS)

        call()
        path = operation.path[len(contract.PREFIX):]
        if path in KNOWN_KEY:
            case = operation.Case(path_parameters={"key": KEY})
            response = case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS)
            assert response.status_code == 200, (path, response.text[:500])
        tested.append(f"{operation.method.upper()} {operation.path}")
    return tested


async def test_no_operation_answers_a_server_error_or_breaks_its_schema(infra: Infra, settings: Settings,
                                                                       tmp_path: Path) -> None:
    # An admin token configured, which the test never sends: an action answers its documented 403.
    settings = msgspec.structs.replace(console_settings(settings, tmp_path), admin_token="integration-admin-token")
    worker = WorkerProcess([sys.executable, "-m", "concord.app.cli", "worker", "--roles", "state,commands"],
                           settings, tmp_path / "worker.log").start()
    try:
        await worker.wait_ready()
        served = await worker.get_text(contract.OPENAPI_PATH)
        assert msgspec.json.decode(served) == msgspec.json.decode(contract.encoded_document())
        events = customer_events(int(time.time() * 1000))
        await produce(infra.bootstrap, topic_names(settings).canonical,
                      [(KEY.encode(), encode_event(e)) for e in events])

        async def fed() -> dict[str, Any] | None:
            status, view = await get(worker, f"/api/v1/customers/{KEY}/view", reader())
            return view if status == 200 and view["open_findings"] else None

        await until(fed, "the fed customer's findings")
        # The findings list and one finding answer with their owner (both raised a TypeError before: 500).
        async def indexed() -> dict[str, Any] | None:
            status, page = await get(worker, "/api/v1/drift?status=all", reader())
            assert status == 200, page
            return page if page["items"] else None

        page = await until(indexed, "the findings in the drift index")
        assert all(f["owner"] for f in page["items"]), page
        status, finding = await get(worker, f"/api/v1/drift/{page['items'][0]['fingerprint']}", reader())
        assert status == 200 and finding["owner"], finding
        await process_apis(worker)
        started = time.monotonic()
        tested = await asyncio.to_thread(fuzz, worker.base_url)
        assert len(tested) == len(contract.ROUTES), tested
        assert time.monotonic() - started < 120
    finally:
        assert worker.stop() == 0, worker.log_tail()


async def process_apis(worker: WorkerProcess) -> None:
    """The fed customer's subscription was canceled while its Zendesk entitlement stays active (D01)."""
    status, answer = await get(worker, f"/api/v1/customers/{KEY}/entitlement", reader())
    assert status == 200, answer
    assert (answer["entitled"], answer["tier"], answer["billing"]) == (False, None, "ended")
    assert [(e["id"], e["status"], e["paying"]) for e in answer["evidence"]] == [(SUB, "canceled", False)]
    assert [(g["organization_id"], g["active"]) for g in answer["support"]] == [(ZENDESK_ORG, True)]
    assert answer["disagrees"] and "D01" in {f["rule"] for f in answer["findings"]}

    status, answer = await get(worker, f"/api/v1/customers/{KEY}/invoices", reader())
    assert status == 200, answer
    pair = next(i for i in answer["invoices"] if i["billing_invoice_id"] == INVOICE)
    assert pair["billing"]["id"] == INVOICE and pair["erp"]["id"] == f"{NETSUITE_CUSTOMER}0"
    assert pair["status"] in ("paid", "open") and pair["findings"] == []  # the two systems agree

    status, answer = await get(worker, f"/api/v1/customers/{KEY}/subscriptions", reader())
    assert status == 200, answer
    (sub,) = answer["subscriptions"]
    assert (sub["id"], sub["status"], sub["paying"], sub["ended"]) == (SUB, "canceled", False, True)
    assert answer["not_provisioned"] == []  # a canceled customer was provisioned once (as D10 judges)

    # A support desk with only the Zendesk organization id, or the Stripe subscription id (search index).
    async def by_zendesk() -> dict[str, Any] | None:
        status, body = await get(worker, f"/api/v1/customers/{ZENDESK_ORG}/entitlement?by=zendesk", reader())
        assert status in (200, 404), body
        return body if status == 200 else None

    assert (await until(by_zendesk, "the organization id in the search index"))["key"] == KEY
    status, body = await get(worker, f"/api/v1/customers/{SUB}/subscriptions?by=stripe", reader())
    assert status == 200 and body["key"] == KEY, body
    status, body = await get(worker, f"/api/v1/customers/{SUB}/invoices?by=netsuite", reader())
    assert status == 404 and "search" in body["detail"], body  # a Stripe id is no NetSuite id
    status, body = await get(worker, f"/api/v1/customers/{SUB}/invoices?by=paypal", reader())
    assert status == 400 and "zendesk" in body["detail"], body

    for path in ("entitlement", "invoices", "subscriptions"):
        status, body = await get(worker, f"/api/v1/customers/001Nobody000000AAA/{path}", reader())
        assert status == 404 and body["error"] == "not_found", body
        assert (await get(worker, f"/api/v1/customers/{KEY}/{path}"))[0] == 401
        assert (await get(worker, f"/api/customers/{KEY}/{path}", reader()))[0] == 404  # versioned only
