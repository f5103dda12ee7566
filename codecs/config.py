"""Codec options a user sets per deployment (field names differ between orgs)."""

from __future__ import annotations

from msgspec import Struct

from concord.core.settings import Settings


class CodecConfig(Struct, frozen=True, kw_only=True):
    # Salesforce Opportunity field holding the plan sold (a custom field in most orgs).
    salesforce_plan_field: str = "Plan__c"
    # Zendesk organization_fields keys that carry the support entitlement.
    zendesk_status_field: str = "support_status"
    zendesk_tier_field: str = "support_tier"
    zendesk_end_date_field: str = "support_end_date"
    # NetSuite customer custom field holding the CRM account id (else its externalId is the link).
    netsuite_crm_link_field: str = "custentity_sf_account_id"


DEFAULT_CODEC_CONFIG = CodecConfig()


def codec_config(settings: Settings) -> CodecConfig:
    """The codec options among the settings."""
    return CodecConfig(
        salesforce_plan_field=settings.salesforce_plan_field,
        zendesk_status_field=settings.zendesk_status_field,
        zendesk_tier_field=settings.zendesk_tier_field,
        zendesk_end_date_field=settings.zendesk_end_date_field,
        netsuite_crm_link_field=settings.netsuite_crm_link_field,
    )
