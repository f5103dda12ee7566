"""Zendesk connector against the sandbox's Support API: entitlements, re-reads, idempotency, faults."""

from __future__ import annotations

import msgspec
import pytest

from concord.codecs import zendesk as zendesk_codec
from concord.codecs.model import EntitlementChanged
from concord.connectors.base import ConnectorError, ErrorKind, Outcome
from concord.connectors.zendesk import ZendeskConnector
from concord.sandbox import zendesk
from tests.unit.connectors.platform_sandbox import Sandbox, command, running


def _org(box: Sandbox, external_id: str | None = "001ACME") -> str:
    org = zendesk.create_organization(box.world, name="Acme", external_id=external_id,
                                      fields={"support_status": "active", "support_tier": "gold"})
    return str(org["id"])


def _fields(box: Sandbox, org_id: str) -> dict[str, str]:
    return dict(box.world.get("zendesk", "organization", org_id)["organization_fields"])


async def _run(box: Sandbox, action: str, target: dict[str, str], payload: dict[str, str] | None = None,
               command_id: str = "cmd-1") -> Outcome:
    connector = ZendeskConnector(box.settings)
    try:
        return await connector.execute(command(action, "zendesk", target, payload, command_id=command_id))
    finally:
        await connector.close()


async def test_suspend_set_tier_and_grant_by_organization() -> None:
    async with running() as box:
        org_id = _org(box)
        await _run(box, "support.suspend_entitlement", {"organization_id": org_id}, command_id="s")
        assert _fields(box, org_id)["support_status"] == "suspended"
        await _run(box, "support.set_tier", {"organization_id": org_id}, {"tier": "silver"}, command_id="t")
        assert _fields(box, org_id)["support_tier"] == "silver"
        outcome = await _run(box, "support.grant_entitlement", {"organization_id": org_id}, {"tier": "platinum"},
                             command_id="g")
        assert _fields(box, org_id) == {"support_status": "active", "support_tier": "platinum"}
        assert outcome.record_id == org_id


async def test_grant_by_crm_account_updates_the_linked_organization() -> None:
    async with running() as box:
        org_id = _org(box)
        zendesk.set_entitlement(box.world, org_id, status="inactive")
        outcome = await _run(box, "support.grant_entitlement", {"crm_account_id": "001ACME"}, {"tier": "gold"})
        assert _fields(box, org_id)["support_status"] == "active"
        assert outcome.record_id == org_id  # the organization id, what the saga suspends on compensation
        assert len(list(box.world.all("zendesk", "organization"))) == 1


async def test_grant_by_crm_account_creates_the_organization_once() -> None:
    async with running() as box:
        cmd = ("support.grant_entitlement", {"crm_account_id": "001NEW"}, {"tier": "gold"})
        first = await _run(box, *cmd)
        # The retry finds the organization and updates it with the values it already has.
        second = await _run(box, *cmd)
        [org] = box.world.all("zendesk", "organization")
        assert (org["external_id"], org["name"]) == ("001NEW", "001NEW")
        assert org["organization_fields"] == {"support_status": "active", "support_tier": "gold"}
        assert (first.status, second.status) == (201, 200)
        assert first.record_id == second.record_id == str(org["id"])
        assert box.effect("zendesk", "cmd-1:create") == (1, 1)
        assert box.effect("zendesk", "cmd-1") == (1, 0)


async def test_the_same_command_twice_is_replayed_not_reapplied() -> None:
    async with running() as box:
        org_id = _org(box)
        first = await _run(box, "support.suspend_entitlement", {"organization_id": org_id})
        second = await _run(box, "support.suspend_entitlement", {"organization_id": org_id})
        assert (first.detail["replayed"], second.detail["replayed"]) == (False, True)
        assert box.effect("zendesk", "cmd-1") == (2, 1)


async def test_update_customer_maps_name_and_crm_link() -> None:
    async with running() as box:
        org_id = _org(box)
        await _run(box, "support.update_customer", {"customer_id": org_id}, {"name": "Acme Corp",
                                                                              "crm_account_id": "001WIN"})
        org = box.world.get("zendesk", "organization", org_id)
        assert (org["name"], org["external_id"]) == ("Acme Corp", "001WIN")
        with pytest.raises(ConnectorError) as caught:
            await _run(box, "support.update_customer", {"customer_id": org_id}, {"country": "DE"}, command_id="c")
        assert caught.value.kind is ErrorKind.DATA
        assert "no field 'country'" in caught.value.reason


async def test_set_tier_without_a_tier_is_data() -> None:
    async with running() as box:
        with pytest.raises(ConnectorError) as caught:
            await _run(box, "support.set_tier", {"organization_id": _org(box)}, {})
        assert caught.value.kind is ErrorKind.DATA
        assert "plan_tiers" in caught.value.reason


async def test_fetch_returns_the_organization_as_zendesk_wraps_it() -> None:
    async with running() as box:
        org_id = _org(box)
        outcome = await _run(box, "support.fetch_organization", {"organization_id": org_id})
        assert msgspec.json.decode(outcome.fetched) == {"organization": box.world.get("zendesk", "organization",
                                                                                      org_id)}
        [entitlement] = [e for e in zendesk_codec.decode(outcome.fetched) if isinstance(e, EntitlementChanged)]
        assert (entitlement.organization_id, entitlement.status, entitlement.tier) == (org_id, "active", "gold")
        assert box.world.effects.all() == []


async def test_missing_organization_is_data() -> None:
    async with running() as box:
        with pytest.raises(ConnectorError) as caught:
            await _run(box, "support.fetch_organization", {"organization_id": "404"})
        assert (caught.value.kind, caught.value.status) == (ErrorKind.DATA, 404)
        assert "RecordNotFound" in caught.value.reason


async def test_wrong_token_is_auth() -> None:
    async with running(zendesk_api_token="nope") as box:
        with pytest.raises(ConnectorError) as caught:
            await _run(box, "support.suspend_entitlement", {"organization_id": _org(box)})
        assert (caught.value.kind, caught.value.status) == (ErrorKind.AUTH, 401)
        assert "Couldn't authenticate you" in caught.value.reason


async def test_rate_limit_is_transient_with_retry_after() -> None:
    async with running() as box:
        org_id = _org(box)
        box.faults.update(b'{"zendesk": {"burst_429": 1, "retry_after": 7}}')
        with pytest.raises(ConnectorError) as caught:
            await _run(box, "support.suspend_entitlement", {"organization_id": org_id})
        assert (caught.value.kind, caught.value.status, caught.value.retry_after) == (ErrorKind.TRANSIENT, 429, 7.0)
        assert _fields(box, org_id)["support_status"] == "active"


async def test_5xx_is_transient_and_applies_nothing() -> None:
    async with running() as box:
        org_id = _org(box)
        box.faults.update(b'{"zendesk": {"error_rate": 1}}')
        with pytest.raises(ConnectorError) as caught:
            await _run(box, "support.suspend_entitlement", {"organization_id": org_id})
        assert caught.value.kind is ErrorKind.TRANSIENT
        assert _fields(box, org_id)["support_status"] == "active"


async def test_crash_after_apply_then_retry_is_replayed() -> None:
    async with running() as box:
        org_id = _org(box)
        box.faults.update(b'{"zendesk": {"error_after_apply_rate": 1}}')
        with pytest.raises(ConnectorError):
            await _run(box, "support.suspend_entitlement", {"organization_id": org_id})
        box.faults.reset()
        outcome = await _run(box, "support.suspend_entitlement", {"organization_id": org_id})
        assert outcome.detail["replayed"] is True
        assert box.effect("zendesk", "cmd-1") == (2, 1)


async def test_timeout_is_transient() -> None:
    async with running(timeout=0.2) as box:
        org_id = _org(box)
        box.faults.update(b'{"zendesk": {"timeout_rate": 1, "hang_seconds": 0.4}}')
        with pytest.raises(ConnectorError) as caught:
            await _run(box, "support.fetch_organization", {"organization_id": org_id})
        assert caught.value.kind is ErrorKind.TRANSIENT


async def test_a_traversal_organization_id_cannot_reach_a_ticket() -> None:
    # "<org>/../../tickets/<n>" once normalized to the ticket's URL: a write there, or its body fetched.
    async with running() as box:
        org_id = _org(box)
        ticket = zendesk.create_ticket(box.world, organization_id=org_id, subject="private")
        traversal = f"{org_id}/../../tickets/{ticket['id']}"
        for action, payload in (("support.suspend_entitlement", None), ("support.fetch_organization", None),
                                ("support.update_customer", {"name": "pwned"})):
            target = {"customer_id" if action == "support.update_customer" else "organization_id": traversal}
            with pytest.raises(ConnectorError) as caught:
                await _run(box, action, target, payload)
            assert (caught.value.kind, caught.value.status) == (ErrorKind.DATA, 404)
            assert f"{org_id}%2F..%2F..%2Ftickets%2F{ticket['id']}.json" in caught.value.reason
        assert box.world.get("zendesk", "ticket", str(ticket["id"]))["subject"] == "private"
        assert _fields(box, org_id)["support_status"] == "active"
