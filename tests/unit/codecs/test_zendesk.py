"""Zendesk codec: every real fixture, webhook event shapes, REST shapes, dedup keys, fuzzing."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from concord.codecs import model, zendesk
from concord.codecs.config import CodecConfig
from concord.codecs.errors import DecodeError
from concord.codecs.model import (
    CanonicalEvent,
    CustomerUpserted,
    EntitlementChanged,
    EntityRef,
    Platform,
    ResyncRequired,
    SupportCaseChanged,
    Version,
)

from .fuzz_payloads import corrupted, mutated
from .zendesk_payloads import (
    ORG_ID,
    TICKET_ID,
    org_detail,
    rest_org,
    ticket_detail,
    webhook,
)

EVENT_ID = "a540ab78-88f2-49e1-93a7-16152a6f782c"


def ms(iso: str) -> int:
    """Epoch ms of an ISO time, computed independently of the codec."""
    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def fixture(shared_fixtures: Path, name: str) -> bytes:
    return (shared_fixtures / "zendesk" / name).read_bytes()


def decode(body: bytes | dict[str, Any], config: CodecConfig | None = None) -> list[CanonicalEvent]:
    """Decode and check every event survives the canonical model's own codec unchanged."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    events = zendesk.decode(raw) if config is None else zendesk.decode(raw, config)
    for event in events:
        assert model.decode(model.encode(event)) == event
    return events


def reason(body: bytes | dict[str, Any]) -> str:
    with pytest.raises(DecodeError) as caught:
        decode(body)
    return caught.value.reason


# --- every file under fixtures/zendesk/ -------------------------------------------------------

# Decided per file (see SOURCES.txt); test_every_fixture_has_a_decision keeps this list complete.
FIXTURE_OUTCOMES = {
    "organization.json": "events",
    "ticket.json": "events",
    "ticket_audit.json": "events",
    # A REST user: valid, Concord does not track users.
    "user.json": "ignored",
    # A user.* webhook: valid, of no interest.
    "webhook_event_user.active_changed.json": "ignored",
    # A ticket audit (Ticket Audits API): ticket history, not state; Concord reads tickets instead.
    "audit.json": "ignored",
    # An incremental ticket *event* export item: history again, same reason.
    "ticket_event.json": "ignored",
    # An organization field *definition* (url /organization_fields/): configuration, not data.
    "organization_field.json": "ignored",
    # An Amazon EventBridge envelope (Events Connector), not a Zendesk webhook or REST object.
    # It carries ticket changes, so silently ignoring it would lose data: DecodeError sends it to
    # the dead-letter topic, where an operator sees the misrouted delivery.
    "events_connector_eventbridge_ticket_agent_assignment_changed.json": "unknown_shape",
}


def test_every_fixture_has_a_decision(shared_fixtures: Path) -> None:
    names = {path.name for path in (shared_fixtures / "zendesk").glob("*.json")}
    assert names == set(FIXTURE_OUTCOMES)


@pytest.mark.parametrize("name", sorted(FIXTURE_OUTCOMES))
def test_fixture_outcome(shared_fixtures: Path, name: str) -> None:
    body = fixture(shared_fixtures, name)
    outcome = FIXTURE_OUTCOMES[name]
    if outcome == "unknown_shape":
        assert reason(body) == "unknown_shape"
    elif outcome == "ignored":
        assert decode(body) == []
    else:
        assert decode(body)


def test_organization_fixture(shared_fixtures: Path) -> None:
    customer, entitlement = decode(fixture(shared_fixtures, "organization.json"))
    updated = ms("2015-07-25T02:23:12Z")
    assert customer == CustomerUpserted(
        event_id=f"organization:256244608:{updated}",
        source=Platform.ZENDESK,
        entity=EntityRef("organization", "256244608"),
        occurred_at=updated,
        version=Version(ts=updated),
        customer_key=None,  # external_id is null
        local_customer="zendesk:256244608",
        system=Platform.ZENDESK,
        customer_id="256244608",
        name="Testing",
        crm_account_id=None,
    )
    assert entitlement == EntitlementChanged(
        event_id=f"organization:256244608:{updated}:entitlement",
        source=Platform.ZENDESK,
        entity=EntityRef("organization", "256244608"),
        occurred_at=updated,
        version=Version(ts=updated),
        local_customer="zendesk:256244608",
        organization_id="256244608",
        status=None,
        tier=None,
        end_date=None,
        tags=(),
    )


def test_ticket_fixture(shared_fixtures: Path) -> None:
    (case,) = decode(fixture(shared_fixtures, "ticket.json"))
    updated = ms("2015-07-25T02:23:13Z")
    assert case == SupportCaseChanged(
        event_id=f"ticket:1:{updated}",
        source=Platform.ZENDESK,
        entity=EntityRef("ticket", "1"),
        occurred_at=updated,
        version=Version(ts=updated, seq=3),  # pending: its rank in the ticket lifecycle
        local_customer="zendesk:256244608",
        ticket_id="1",
        organization_id="256244608",
        requester_id="1159307768",
        status="pending",
        priority="high",
        subject="This is a sample ticket requested and submitted by you",
        created_at=ms("2015-07-25T02:21:13Z"),
    )


def test_ticket_audit_fixture_reads_the_ticket(shared_fixtures: Path) -> None:
    # {"ticket", "audit"} is what PUT /api/v2/tickets/{id} returns: the ticket is the state.
    (case,) = decode(fixture(shared_fixtures, "ticket_audit.json"))
    assert isinstance(case, SupportCaseChanged)
    assert (case.ticket_id, case.organization_id, case.status, case.priority) == (
        "7",
        "472989027",
        "open",
        None,
    )
    assert case.event_id == f"ticket:7:{ms('2015-08-29T03:45:36Z')}"
    assert case.version == Version(ts=ms("2015-08-29T03:45:36Z"), seq=2)


def test_fixture_objects_in_wrappers_and_pages(shared_fixtures: Path) -> None:
    org = json.loads(fixture(shared_fixtures, "organization.json"))
    ticket = json.loads(fixture(shared_fixtures, "ticket.json"))
    bare = decode(fixture(shared_fixtures, "organization.json"))
    assert decode({"organization": org}) == bare
    page = decode({"organizations": [org, org | {"id": 2}], "next_page": None, "count": 2})
    assert [e.entity.id for e in page] == ["256244608", "256244608", "2", "2"]
    export = decode({"tickets": [ticket], "next_page": "https://x/api/v2/...", "end_time": 1437790993})
    assert export == decode(fixture(shared_fixtures, "ticket.json"))
    assert decode({"tickets": [], "count": 0}) == []
    # Side-loaded organizations of a ticket listing are organizations too.
    mixed = decode({"tickets": [ticket], "organizations": [org]})
    assert [type(e).__name__ for e in mixed] == [
        "CustomerUpserted",
        "EntitlementChanged",
        "SupportCaseChanged",
    ]


# --- REST organizations: entitlement -------------------------------------------------------------


def test_rest_org_entitlement_from_configured_fields() -> None:
    customer, entitlement = decode(rest_org())
    assert isinstance(customer, CustomerUpserted)
    assert customer.customer_key == customer.crm_account_id == "001Dn00000AcmeAAA"
    assert customer.xrefs == {"salesforce": "001Dn00000AcmeAAA"}
    assert isinstance(entitlement, EntitlementChanged)
    assert (entitlement.status, entitlement.tier, entitlement.end_date) == ("active", "gold", "2025-12-31")
    assert entitlement.tags == ("enterprise", "priority")
    assert entitlement.customer_key == "001Dn00000AcmeAAA"


def test_rest_org_custom_field_keys_come_from_config() -> None:
    config = CodecConfig(
        zendesk_status_field="plan_state", zendesk_tier_field="level", zendesk_end_date_field="renews_on"
    )
    fields = {"plan_state": True, "level": 3, "renews_on": "2026-01-31T00:00:00Z", "support_status": "x"}
    _, entitlement = decode(rest_org(organization_fields=fields), config)
    assert isinstance(entitlement, EntitlementChanged)
    assert (entitlement.status, entitlement.tier, entitlement.end_date) == ("true", "3", "2026-01-31")


@pytest.mark.parametrize("value", ["", None])
def test_rest_org_empty_field_is_none(value: Any) -> None:
    _, entitlement = decode(rest_org(organization_fields={"support_status": value}))
    assert isinstance(entitlement, EntitlementChanged)
    assert entitlement.status is None


@pytest.mark.parametrize(
    "fields",
    [{"support_end_date": "31/12/2025"}, {"support_end_date": "2025-02-30"}, {"support_tier": ["a", "b"]}],
)
def test_rest_org_unreadable_entitlement_field(fields: dict[str, Any]) -> None:
    assert reason(rest_org(organization_fields=fields)) == "bad_type"


def test_rest_org_deleted_at_marks_both_events_deleted() -> None:
    events = decode(rest_org(deleted_at="2024-05-07T00:00:00Z"))
    assert [e.deleted for e in events if isinstance(e, CustomerUpserted | EntitlementChanged)] == [True, True]


def test_rest_org_without_entitlement_data_asks_for_a_resync() -> None:
    org = rest_org()
    del org["organization_fields"]
    _, resync = decode(org)
    assert resync == ResyncRequired(
        event_id=f"organization:361:{ms('2024-05-06T07:08:09Z')}:resync",
        source=Platform.ZENDESK,
        entity=EntityRef("organization", "361"),
        occurred_at=ms("2024-05-06T07:08:09Z"),
        version=Version(ts=ms("2024-05-06T07:08:09Z")),
        customer_key="001Dn00000AcmeAAA",
        local_customer="zendesk:361",
        xrefs={"salesforce": "001Dn00000AcmeAAA"},
        reason="zendesk_entitlement_not_in_payload",
        object_type="organization",
        record_ids=("361",),
    )


def test_rest_empty_external_id_is_no_crm_link() -> None:
    customer, _ = decode(rest_org(external_id=""))
    assert isinstance(customer, CustomerUpserted)
    assert (customer.customer_key, customer.crm_account_id, customer.xrefs) == (None, None, {})


def test_rest_ids_are_stable_across_rereads_and_change_with_the_version() -> None:
    first = decode(rest_org())
    assert decode(rest_org()) == first
    later = decode(rest_org(updated_at="2024-05-06T07:08:10Z"))
    assert later[0].event_id != first[0].event_id
    assert later[0].version > first[0].version


# --- webhooks: organizations ----------------------------------------------------------------------

ORG_TIME = "2099-07-07T03:44:14Z"


@pytest.mark.parametrize(
    ("action", "resync_expected"),
    [
        ("created", True),
        ("custom_field_changed", True),
        ("tags_changed", True),
        ("name_changed", False),
        ("external_id_changed", False),
    ],
)
def test_organization_webhooks(action: str, resync_expected: bool) -> None:
    body = webhook(f"organization.{action}", org_detail(), event_id=EVENT_ID, time=ORG_TIME)
    events = decode(body)
    customer = events[0]
    updated = ms("2099-07-07T03:44:13Z")
    assert customer == CustomerUpserted(
        event_id=EVENT_ID,
        source=Platform.ZENDESK,
        entity=EntityRef("organization", ORG_ID),
        occurred_at=updated,
        version=Version(ts=updated),
        customer_key="001Dn00000AcmeAAA",
        local_customer=f"zendesk:{ORG_ID}",
        xrefs={"salesforce": "001Dn00000AcmeAAA"},
        system=Platform.ZENDESK,
        customer_id=ORG_ID,
        name="Acme",
        crm_account_id="001Dn00000AcmeAAA",
    )
    if not resync_expected:
        assert len(events) == 1
        return
    # detail has no organization_fields/tags: the entitlement must be re-read, not guessed.
    (resync,) = events[1:]
    assert isinstance(resync, ResyncRequired)
    assert (resync.event_id, resync.version) == (f"{EVENT_ID}:resync", customer.version)
    assert (resync.object_type, resync.record_ids) == ("organization", (ORG_ID,))


def test_organization_deleted_webhook_orders_after_the_last_edit() -> None:
    body = webhook("organization.deleted", org_detail(), event_id=EVENT_ID, time=ORG_TIME)
    customer, entitlement = decode(body)
    # detail.updated_at is the last edit; the deletion happened at the event time, a second later.
    assert customer.version == entitlement.version == Version(ts=ms(ORG_TIME))
    assert isinstance(customer, CustomerUpserted) and customer.deleted
    assert isinstance(entitlement, EntitlementChanged) and entitlement.deleted
    assert (customer.event_id, entitlement.event_id) == (EVENT_ID, f"{EVENT_ID}:entitlement")


def test_organization_webhook_null_external_id() -> None:
    body = webhook("organization.created", org_detail(external_id=None), event_id=EVENT_ID, time=ORG_TIME)
    customer = decode(body)[0]
    assert isinstance(customer, CustomerUpserted)
    assert (customer.customer_key, customer.crm_account_id) == (None, None)


def test_organization_webhook_without_updated_at_uses_event_time() -> None:
    detail = org_detail()
    del detail["updated_at"]
    customer = decode(webhook("organization.name_changed", detail, event_id=EVENT_ID, time=ORG_TIME))[0]
    assert customer.version == Version(ts=ms(ORG_TIME))
    assert customer.occurred_at == ms(ORG_TIME)


# --- webhooks: tickets ----------------------------------------------------------------------------

TICKET_TIME = "2099-05-25T01:23:48Z"


@pytest.mark.parametrize(
    "action", ["created", "status_changed", "priority_changed", "comment_added", "agent_assignment_changed"]
)
def test_ticket_webhooks(action: str) -> None:
    body = webhook(f"ticket.{action}", ticket_detail(), event_id=EVENT_ID, time=TICKET_TIME)
    (case,) = decode(body)
    updated = ms("2099-05-25T01:23:45Z")
    assert case == SupportCaseChanged(
        event_id=EVENT_ID,
        source=Platform.ZENDESK,
        entity=EntityRef("ticket", TICKET_ID),
        occurred_at=updated,
        version=Version(ts=updated, seq=2),
        local_customer=f"zendesk:{ORG_ID}",
        ticket_id=TICKET_ID,
        organization_id=ORG_ID,
        requester_id="20978392",
        status="open",
        priority="high",
        subject="Cannot log in",
        created_at=ms("2099-05-20T22:55:29Z"),
    )


@pytest.mark.parametrize("action", ["soft_deleted", "permanently_deleted", "marked_as_spam"])
def test_ticket_deleted_webhooks(action: str) -> None:
    body = webhook(f"ticket.{action}", ticket_detail(), event_id=EVENT_ID, time=TICKET_TIME)
    (case,) = decode(body)
    assert isinstance(case, SupportCaseChanged) and case.deleted
    assert case.version == Version(ts=ms(TICKET_TIME), seq=6)  # a deletion outranks every status


def test_ticket_undeleted_webhook_is_not_deleted() -> None:
    (case,) = decode(webhook("ticket.undeleted", ticket_detail(), event_id=EVENT_ID, time=TICKET_TIME))
    assert isinstance(case, SupportCaseChanged) and not case.deleted


@pytest.mark.parametrize("org", [None, "0"])
def test_ticket_without_organization(org: str | None) -> None:
    body = webhook("ticket.created", ticket_detail(organization_id=org), event_id=EVENT_ID, time=TICKET_TIME)
    (case,) = decode(body)
    assert isinstance(case, SupportCaseChanged)
    assert (case.organization_id, case.local_customer) == (None, None)


def test_ticket_webhook_with_minimal_detail() -> None:
    detail = {"id": "5158", "status": "SOLVED"}
    (case,) = decode(webhook("ticket.status_changed", detail, event_id=EVENT_ID, time=TICKET_TIME))
    assert isinstance(case, SupportCaseChanged)
    assert (case.ticket_id, case.status, case.priority, case.created_at) == ("5158", "solved", None, None)
    assert case.version == Version(ts=ms(TICKET_TIME), seq=4)


def test_a_ticket_solved_in_the_second_it_was_opened_orders_after_the_opening() -> None:
    # Zendesk's times are whole seconds: within one, the state further along the lifecycle is the later.
    opened = decode(webhook("ticket.created", {"id": "5158", "status": "OPEN", "updated_at": TICKET_TIME},
                            event_id="01-open", time=TICKET_TIME))[0]
    solved = decode(webhook("ticket.status_changed", {"id": "5158", "status": "SOLVED", "updated_at": TICKET_TIME},
                            event_id="02-solved", time=TICKET_TIME))[0]
    reopened_later = decode(webhook("ticket.status_changed", {"id": "5158", "status": "OPEN",
                                                              "updated_at": "2099-05-25T01:23:49Z"},
                                    event_id="03-open", time="2099-05-25T01:23:49Z"))[0]
    assert opened.version.ts == solved.version.ts and opened.version < solved.version < reopened_later.version


def test_rest_ticket_deleted_status() -> None:
    ticket = {"id": 9, "requester_id": 1, "status": "deleted", "updated_at": "2024-01-01T00:00:00Z"}
    (case,) = decode(ticket)
    assert isinstance(case, SupportCaseChanged) and case.deleted


@pytest.mark.parametrize(
    "event_type", ["user.created", "article.published", "agent.state_changed", "community_post.created"]
)
def test_other_webhooks_are_ignored(event_type: str) -> None:
    assert decode(webhook(event_type, {"id": "1"}, event_id=EVENT_ID, time=TICKET_TIME)) == []


# --- errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", "invalid_json"),
        (b"{", "invalid_json"),
        (b"\xff\xfe{}", "invalid_json"),
        (b"[]", "unknown_shape"),
        (b"null", "unknown_shape"),
        (b"{}", "unknown_shape"),
        (b'{"id": 1, "name": "neither org nor ticket"}', "unknown_shape"),
        (b'{"type": 5}', "unknown_shape"),
        (b'{"type": {"nested": "zen:event-type:ticket.created"}, "url": 7}', "unknown_shape"),
        (b'{"type": "zen:event-type:ticket.created"}', "missing_field"),
        (b'{"organizations": {"id": 1}}', "bad_type"),
        (b'{"tickets": [{"id": 1}]}', "missing_field"),  # no updated_at: no version
        (b'{"tickets": [{"id": 1, "updated_at": "2024-01-01T00:00:00"}]}', "bad_time"),
        (b'{"tickets": [{"id": 1, "updated_at": "yesterday"}]}', "bad_type"),
        (b'{"organization": {"id": 1, "tags": "x", "updated_at": "2024-01-01T00:00:00Z"}}', "bad_type"),
        (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "too_deep"),
    ],
)
def test_errors(body: bytes, expected: str) -> None:
    assert reason(body) == expected


def test_webhook_with_bad_detail() -> None:
    body = webhook("ticket.created", {"status": "OPEN"}, event_id=EVENT_ID, time=TICKET_TIME)  # no id
    assert reason(body) == "missing_field"
    body = msgspec.json.encode(
        {"type": "zen:event-type:organization.created", "id": "x", "time": ORG_TIME, "detail": []}
    )
    assert reason(body) == "bad_type"


def test_error_detail_names_the_problem() -> None:
    with pytest.raises(DecodeError) as caught:
        decode(rest_org(organization_fields={"support_end_date": "soon"}))
    assert "support_end_date" in caught.value.detail and "organization" in caught.value.detail
    assert "361" not in caught.value.detail and "soon" not in caught.value.detail  # no payload value


# --- fuzzing ------------------------------------------------------------------------------------------


def _real_documents(shared_fixtures: Path) -> list[Any]:
    docs = [json.loads(path.read_bytes()) for path in sorted((shared_fixtures / "zendesk").glob("*.json"))]
    docs += [
        json.loads(webhook("organization.created", org_detail(), event_id=EVENT_ID, time=ORG_TIME)),
        json.loads(webhook("ticket.status_changed", ticket_detail(), event_id=EVENT_ID, time=TICKET_TIME)),
        rest_org(),
        {"tickets": [json.loads((shared_fixtures / "zendesk" / "ticket.json").read_bytes())]},
    ]
    return docs


def _only_events_or_decode_error(body: bytes) -> None:
    try:
        events = zendesk.decode(body)
    except DecodeError:
        return
    for event in events:
        assert model.decode(model.encode(event)) == event


FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(data=st.data())
def test_fuzz_mutated_real_payloads(shared_fixtures: Path, data: st.DataObject) -> None:
    _only_events_or_decode_error(data.draw(mutated(_real_documents(shared_fixtures))))


@FUZZ
@given(data=st.data())
def test_fuzz_corrupted_real_bytes(shared_fixtures: Path, data: st.DataObject) -> None:
    bodies = [path.read_bytes() for path in sorted((shared_fixtures / "zendesk").glob("*.json"))]
    _only_events_or_decode_error(data.draw(corrupted(bodies)))


@FUZZ
@given(body=st.binary(max_size=256))
def test_fuzz_random_bytes(body: bytes) -> None:
    _only_events_or_decode_error(body)
