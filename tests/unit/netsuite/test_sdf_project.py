"""The NetSuite SDF project (netsuite/) against the engine it feeds.

The User Event script is JavaScript that runs inside NetSuite; Concord's ingress and codec are Python.
Nothing but these tests keeps the two in agreement, so they run the real scripts (concord_ue.js and
concord_lib.js, under Node with the N modules stubbed: netsuite/tests/emit.js) on sample records and
hand what they post to Concord's own signature check (`app.signatures.verify_netsuite`) and codec
(`codecs.netsuite.decode`). A change to the envelope, the signature or the event id on either side
fails here.

The sandbox (sandbox/netsuite.py, the test oracle) posts the same envelope from its own REST records:
the script, given those records as NetSuite shows them to SuiteScript, must make Concord decode the
very events the sandbox's envelopes decode to.

The second half checks the project itself, as `suitecloud project:deploy` would need it: the XML
parses, every object is named after its file, every script file an object references exists and has
the matching @NScriptType, and the ids the scripts use (script parameters, outbox fields, record
types, the CRM link field) are the ones the objects define.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from concord.app.signatures import SignatureError, verify_netsuite
from concord.codecs import netsuite
from concord.codecs.config import DEFAULT_CODEC_CONFIG
from concord.codecs.model import (
    CanonicalEvent,
    CustomerUpserted,
    FinancialFlagsChanged,
    InvoiceChanged,
    PaymentChanged,
    RefundChanged,
    SalesOrderChanged,
)
from concord.sandbox import netsuite as sandbox_netsuite
from concord.sandbox.events import EventConfig, NativeEvents, WebhookDelivery, netsuite_event_type
from concord.sandbox.world import Change, World
from tests.conftest import REPO_ROOT

PROJECT = REPO_ROOT / "netsuite"
SRC = PROJECT / "src"
OBJECTS = SRC / "Objects"
SCRIPTS = SRC / "FileCabinet" / "SuiteScripts" / "Concord"
NODE = shutil.which("node")
NO_NODE = "node is not installed: `make test-netsuite` installs it (apt-get install nodejs)"
needs_node = pytest.mark.skipif(NODE is None, reason=NO_NODE)

SECRET = "concord-sdf-test-secret"
NOW = "2026-11-02T10:00:00Z"
MODIFIED = "2026-11-02T09:48:00.125Z"


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


NOW_S = _ms(NOW) // 1000
MODIFIED_MS = _ms(MODIFIED)
# The record types Concord's codec maps (docs/netsuite-suitescript.md), as SDF names them.
TRACKED = {"customer", "invoice", "customerpayment", "creditmemo", "salesorder"}
# The account's currency records, internal id -> ISO code (the `symbol` the script looks up).
CURRENCIES = {sandbox_netsuite.currency_ref(code)["id"]: code for code in ("USD", "EUR", "GBP", "CAD")}


@pytest.fixture(scope="module")
def script_fields() -> dict[str, list[list[str]]]:
    """concord_lib.js's FIELDS: per record type, [REST name, SuiteScript field id, kind]."""
    if NODE is None:
        pytest.skip(NO_NODE)
    script = "process.stdout.write(JSON.stringify(require('./amd').load('concord_lib.js').FIELDS))"
    done = subprocess.run([NODE, "-e", script], cwd=PROJECT / "tests", capture_output=True, text=True, timeout=60,
                          check=True)
    fields: dict[str, list[list[str]]] = json.loads(done.stdout)
    return fields


def _record(type_: str, id_: str, values: dict[str, Any], texts: dict[str, str] | None = None,
            apply: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"type": type_, "id": id_, "values": {"lastmodifieddate": {"datetime": MODIFIED}, **values},
            "texts": texts or {}, "sublists": {"apply": apply or []}}


def _invoice(id_: str = "1215", **values: Any) -> dict[str, Any]:
    return _record("invoice", id_, {
        "tranid": "INV1215", "externalid": "in_1OaBcDeFgHiJkLmN", "entity": "220", "status": "Open",
        "statusRef": "open", "total": 1000.5, "taxtotal": 80.25, "amountremaining": 400, "currency": "1",
        "duedate": {"date": "2026-12-08"}, **values,
    }, {"entity": "Dunder Mifflin", "currency": "USA"})


def _emit(event_type: str, *, new: dict[str, Any] | None = None, old: dict[str, Any] | None = None,
          records: tuple[dict[str, Any], ...] = (), answers: list[dict[str, int]] | None = None,
          now: str = NOW) -> dict[str, Any]:
    """Run the real User Event script on these records; what it posted and parked."""
    assert NODE is not None
    spec = {"now": now, "secret": SECRET, "accountId": "1234567_SB1", "currencies": CURRENCIES,
            "answers": answers or [{"code": 200}], "records": list(records),
            "context": {"type": event_type, "newRecord": new, "oldRecord": old}}
    done = subprocess.run([NODE, str(PROJECT / "tests" / "emit.js")], input=json.dumps(spec), capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    assert result["errors"] == [], result["errors"]
    return result


def _accepted(post: dict[str, Any]) -> list[CanonicalEvent]:
    """What Concord makes of one post: its signature checked at NOW, then decoded."""
    body = post["body"].encode()
    verify_netsuite(body, post["headers"], SECRET, now=NOW_S)
    assert post["headers"]["X-Concord-Account"] == "1234567_SB1"
    return netsuite.decode(body)


@needs_node
def test_an_invoice_edit_is_verified_and_decoded_as_the_record_says() -> None:
    (post,) = _emit("edit", new=_invoice())["posts"]
    (event,) = _accepted(post)
    assert isinstance(event, InvoiceChanged)
    assert event.event_id == f"invoice:1215:{MODIFIED_MS}"
    assert (event.version.ts, event.version.seq) == (MODIFIED_MS, 0)
    assert (event.invoice_id, event.billing_invoice_id, event.number) == ("1215", "in_1OaBcDeFgHiJkLmN", "INV1215")
    assert (event.customer_id, event.local_customer) == ("220", "netsuite:220")
    assert (event.status, event.currency) == ("open", "USD")
    assert (event.total, event.tax, event.amount_remaining) == (100050, 8025, 40000)
    assert event.due_at == _ms("2026-12-08T00:00:00Z")


@needs_node
def test_a_customer_is_keyed_by_its_crm_link_field_and_carries_its_financial_flags() -> None:
    customer = _record("customer", "220", {
        "companyname": "Dunder Mifflin", "email": "ap@dundermifflin.com", "externalid": "001A000001OldAcc",
        DEFAULT_CODEC_CONFIG.netsuite_crm_link_field: "001A000001DunDER", "currency": "1", "terms": "2",
        "overduebalance": 120.5, "creditholdoverride": "ON",
    }, {"currency": "USA", "terms": "Net 30", "creditholdoverride": "On"})
    (post,) = _emit("create", new=customer)["posts"]
    upserted, flags = _accepted(post)
    assert isinstance(upserted, CustomerUpserted) and isinstance(flags, FinancialFlagsChanged)
    assert (upserted.customer_key, upserted.crm_account_id) == ("001A000001DunDER", "001A000001DunDER")
    assert (upserted.name, upserted.email, upserted.payment_terms) == ("Dunder Mifflin", "ap@dundermifflin.com",
                                                                       "Net 30")
    assert (flags.overdue_balance, flags.currency, flags.credit_hold) == (12050, "USD", True)
    assert flags.event_id == f"customer:220:{MODIFIED_MS}:financial_flags"


@needs_node
def test_a_payment_and_the_invoice_it_pays_are_both_accepted() -> None:
    payment = _record("customerpayment", "3300", {
        "customer": "220", "status": "Deposited", "statusRef": "deposited", "payment": 400, "currency": "1",
    }, {"customer": "Dunder Mifflin", "currency": "USA"}, apply=[{"apply": True, "doc": "1215", "amount": 400}])
    paid = _invoice(status="Paid In Full", statusRef="paidInFull", amountremaining=0)
    first, second = _emit("create", new=payment, records=(paid,))["posts"]
    (paid_event,) = _accepted(first)
    assert isinstance(paid_event, PaymentChanged)
    assert (paid_event.payment_id, paid_event.invoice_id, paid_event.customer_id) == ("3300", "1215", "220")
    assert (paid_event.status, paid_event.amount, paid_event.currency) == ("succeeded", 40000, "USD")
    (invoice_event,) = _accepted(second)
    assert isinstance(invoice_event, InvoiceChanged)
    assert (invoice_event.status, invoice_event.amount_remaining) == ("paid", 0)


@needs_node
def test_a_credit_memo_in_euros_takes_its_code_from_the_currency_record() -> None:
    memo = _record("creditmemo", "4400", {
        "externalid": "re_3OaBcDeF", "entity": "220", "status": "Fully Applied", "statusRef": "applied",
        "total": 250, "currency": "4",
    }, {"entity": "Dunder Mifflin", "currency": "Euro zone"}, apply=[{"apply": True, "doc": "1215", "amount": 250}])
    posts = _emit("edit", new=memo, records=(_invoice(),))["posts"]
    (event,) = _accepted(posts[0])
    assert isinstance(event, RefundChanged)
    assert (event.document, event.refund_id, event.billing_refund_id) == ("credit_memo", "4400", "re_3OaBcDeF")
    assert (event.amount, event.currency, event.status, event.invoice_id) == (25000, "EUR", "applied", "1215")


@needs_node
def test_a_deleted_sales_order_orders_after_an_edit_of_the_same_moment() -> None:
    order = _record("salesorder", "5500", {
        "tranid": "SO5500", "externalid": "006A000000OppTy", "entity": "220", "status": "Pending Fulfillment",
        "statusRef": "pendingFulfillment", "total": 4800, "currency": "1",
    }, {"entity": "Dunder Mifflin", "currency": "USA"})
    (post,) = _emit("delete", old=order)["posts"]
    (event,) = _accepted(post)
    assert isinstance(event, SalesOrderChanged)
    assert event.deleted
    assert event.event_id == f"salesorder:5500:{NOW_S * 1000}:delete"
    assert (event.version.ts, event.version.seq) == (NOW_S * 1000, 1)
    assert (event.order_id, event.opportunity_id, event.total) == ("5500", "006A000000OppTy", 480000)


@needs_node
def test_the_signature_covers_the_body() -> None:
    (post,) = _emit("edit", new=_invoice())["posts"]
    tampered = post["body"].replace('"total":1000.5', '"total":1.5').encode()
    assert tampered != post["body"].encode()
    with pytest.raises(SignatureError) as refused:
        verify_netsuite(tampered, post["headers"], SECRET, now=NOW_S)
    assert refused.value.reason == "bad_signature"


@needs_node
@pytest.mark.parametrize("event_type", ["edit", "delete"])
def test_a_parked_envelope_keeps_the_body_and_the_event_id_concord_dedupes_on(event_type: str) -> None:
    record = {"new": _invoice()} if event_type == "edit" else {"old": _invoice()}
    result = _emit(event_type, **record, answers=[{"code": 503}])
    assert len(result["posts"]) == 3
    (parked,) = result["parked"]
    assert {post["body"] for post in result["posts"]} == {parked["custrecord_concord_body"]}
    (event,) = netsuite.decode(parked["custrecord_concord_body"].encode())
    assert parked["custrecord_concord_event_id"] == event.event_id


def _as_suitescript_sees_it(record_type: str, rest: dict[str, Any],
                            fields: dict[str, list[list[str]]]) -> dict[str, Any]:
    """A REST record (the sandbox's) as SuiteScript shows it: field ids, raw values and display texts."""
    values: dict[str, Any] = {"lastmodifieddate": {"datetime": rest["lastModifiedDate"]}}
    texts: dict[str, str] = {}
    for name, field_id, kind in fields[record_type]:
        value = rest.get(name)
        if value is None:
            continue
        if kind in ("ref", "select"):
            values[field_id], texts[field_id] = value["id"], value["refName"]
        elif kind == "status":
            values["status"], values["statusRef"] = value["refName"], value["id"]
        elif kind == "date":
            values[field_id] = {"date": value}
        else:
            values[field_id] = value
    lines = [{"apply": item["apply"], "doc": item["doc"]["id"], "amount": item.get("amount", 0)}
             for item in (rest.get("apply") or {}).get("items", [])]
    return {"type": record_type, "id": rest["id"], "values": values, "texts": texts, "sublists": {"apply": lines}}


def test_the_script_and_the_sandbox_make_concord_decode_the_same_events(
        script_fields: dict[str, list[list[str]]]) -> None:
    ticks = iter(range(10**6))
    world = World(clock=lambda: 1_793_613_600.0 + 1.5 * next(ticks))
    changes: list[Change] = []
    world.listen(changes.append)
    customer = sandbox_netsuite.upsert_customer(world, "001A000001DunDER", company_name="Dunder Mifflin",
                                                email="ap@dundermifflin.com", terms="Net 30")
    invoice = sandbox_netsuite.upsert_invoice(world, "in_1OaBcDeF", customer_id=customer["id"], number="INV-7",
                                              total=120_050, tax=20_050, due_date="2026-12-08")
    sandbox_netsuite.apply_payment(world, invoice["id"], amount=50_000)
    sandbox_netsuite.create_credit_memo(world, "re_3OaBcDeF", customer_id=customer["id"], amount=10_000,
                                        invoice_id=invoice["id"])
    sandbox_netsuite.upsert_sales_order(world, "006A000000OppTy", customer_id=customer["id"], total=480_000,
                                        currency="EUR")
    sandbox_netsuite.delete_record(world, "salesOrder", changes[-1].id)
    native = NativeEvents(EventConfig(salesforce_topic="concord.raw.salesforce"))
    invoices = tuple(_as_suitescript_sees_it("invoice", change.record, script_fields)
                     for change in changes if change.type == "invoice")
    compared: set[str] = set()
    for change in changes:
        record_type = change.type.lower()
        (delivery,) = native.build(change)
        assert isinstance(delivery, WebhookDelivery)
        seen = _as_suitescript_sees_it(record_type, change.record, script_fields)
        deleted = change.op == "delete"
        at = datetime.fromtimestamp(change.at / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        posts = _emit(netsuite_event_type(change), new=None if deleted else seen, old=seen if deleted else None,
                      records=invoices, now=at)["posts"]
        assert _accepted(posts[0]) == netsuite.decode(delivery.body), f"{change.type} {change.op}"
        compared.add(record_type)
    assert compared == TRACKED


# --- the project ------------------------------------------------------------------------------------


def _objects() -> dict[str, ET.Element]:
    return {path.stem: ET.parse(path).getroot() for path in sorted(OBJECTS.glob("*.xml"))}


def _script_ids(js: Path, prefix: str) -> set[str]:
    return set(re.findall(rf"\b{prefix}[a-z0-9_]+", js.read_text()))


def test_the_project_files_parse() -> None:
    assert ET.parse(SRC / "manifest.xml").getroot().get("projecttype") == "ACCOUNTCUSTOMIZATION"
    deploy = ET.parse(SRC / "deploy.xml").getroot()
    for path in deploy.iter("path"):
        assert path.text is not None and path.text.startswith("~/") and path.text.endswith("/*"), path.text
        assert (SRC / path.text[2:-2]).is_dir(), f"deploy.xml names {path.text}, which does not exist"
    assert (PROJECT / "suitecloud.config.js").is_file()
    assert set(_objects()) == {"customscript_concord_ue", "customscript_concord_outbox_mr",
                               "customrecord_concord_outbox", "custentity_sf_account_id"}


def test_every_object_is_named_after_its_file() -> None:
    for stem, root in _objects().items():
        assert root.get("scriptid") == stem


def test_every_script_an_object_references_exists_with_its_script_type() -> None:
    script_types = {"usereventscript": "UserEventScript", "mapreducescript": "MapReduceScript"}
    scripts = {stem: root for stem, root in _objects().items() if root.tag in script_types}
    assert set(scripts) == {"customscript_concord_ue", "customscript_concord_outbox_mr"}
    for root in scripts.values():
        reference = root.findtext("scriptfile") or ""
        assert re.fullmatch(r"\[/SuiteScripts/Concord/[a-z_]+\.js\]", reference), reference
        path = SRC / "FileCabinet" / reference.strip("[]/")
        assert path.is_file(), f"{root.get('scriptid')} references {reference}, which is not in the project"
        source = path.read_text()
        assert "@NApiVersion 2.1" in source
        assert f"@NScriptType {script_types[root.tag]}" in source
        for module in re.findall(r"'\./([a-z_]+)'", source):
            assert (path.parent / f"{module}.js").is_file(), f"{path.name} loads ./{module}, which is missing"


def test_the_script_parameters_the_scripts_read_are_the_ones_their_objects_define() -> None:
    for stem, script in (("customscript_concord_ue", "concord_ue.js"),
                         ("customscript_concord_outbox_mr", "concord_outbox_mr.js")):
        root = _objects()[stem]
        defined = {field.get("scriptid") for field in root.iter("scriptcustomfield")}
        assert defined == _script_ids(SCRIPTS / script, "custscript_")
        for field in root.iter("scriptcustomfield"):
            # The secret is referenced by the id of an API secret, never held in the project.
            default = field.findtext("defaultvalue")
            assert field.findtext("fieldtype") != "PASSWORD"
            assert default is None or default.startswith("custsecret_") or default == ""


def test_the_outbox_fields_the_library_writes_are_the_ones_the_record_type_defines() -> None:
    outbox = _objects()["customrecord_concord_outbox"]
    defined = {field.get("scriptid") for field in outbox.iter("customrecordcustomfield")}
    assert defined == _script_ids(SCRIPTS / "concord_lib.js", "custrecord_")
    assert "customrecord_concord_outbox" in _script_ids(SCRIPTS / "concord_lib.js", "customrecord_")


def test_the_crm_link_field_is_the_one_concord_reads_by_default() -> None:
    field = _objects()[DEFAULT_CODEC_CONFIG.netsuite_crm_link_field]
    assert field.tag == "entitycustomfield"
    assert (field.findtext("appliestocustomer"), field.findtext("fieldtype")) == ("T", "TEXT")


def test_the_user_event_is_deployed_on_every_record_type_the_script_and_the_codec_handle(
        script_fields: dict[str, list[list[str]]]) -> None:
    assert set(script_fields) == TRACKED
    deployed = {element.text for element in _objects()["customscript_concord_ue"].iter("recordtype")}
    assert deployed == {record_type.upper() for record_type in TRACKED}
    scheduled = _objects()["customscript_concord_outbox_mr"].find("scriptdeployments/scriptdeployment")
    assert scheduled is not None and scheduled.findtext("status") == "SCHEDULED"
    assert scheduled.findtext("recurrence/daily/repeat") == "PT15M"


def test_today_is_after_the_resender_schedule_starts() -> None:
    start = _objects()["customscript_concord_outbox_mr"].findtext(".//recurrence/daily/startdate")
    assert start is not None
    assert datetime.fromisoformat(start).replace(tzinfo=UTC) <= datetime.now(UTC)
