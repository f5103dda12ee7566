"""The platform connectors of one Concord process, built from its settings."""

from __future__ import annotations

from typing import Final

from concord.connectors.base import Connector
from concord.connectors.netsuite import NetSuiteConnector
from concord.connectors.salesforce import SalesforceConnector
from concord.connectors.stripe import StripeConnector
from concord.connectors.tokens import auth_configured
from concord.connectors.zendesk import ZendeskConnector
from concord.core.settings import Settings


def build_connectors(settings: Settings) -> dict[str, Connector]:
    """Platform name -> connector, for every platform (an unconfigured one answers AUTH "not configured").

    Sessions open lazily on the first call; close every connector (`await c.close()`) on shutdown.
    """
    connectors: list[Connector] = [
        StripeConnector(settings),
        SalesforceConnector(settings),
        ZendeskConnector(settings),
        NetSuiteConnector(settings),
    ]
    return {connector.platform: connector for connector in connectors}


#: What configures each platform with a static credential: its base URL and its credentials (all must be set).
REQUIRED: Final = {
    "stripe": ("stripe_api_url", "stripe_api_key"),
    "salesforce": ("salesforce_instance_url", "salesforce_access_token"),
    "zendesk": ("zendesk_url", "zendesk_api_email", "zendesk_api_token"),
    "netsuite": ("netsuite_url", "netsuite_access_token"),
}


def configured(settings: Settings, platform: str) -> bool:
    """Whether `settings` give `platform` a URL and credentials.

    Salesforce and NetSuite may instead name a token flow (connectors/tokens.py): complete, it configures
    them (Salesforce's token answer names its instance; NetSuite still needs its URL); incomplete, it raises
    SettingsError naming what is missing."""
    if platform in ("salesforce", "netsuite") and getattr(settings, f"{platform}_auth_flow") != "static":
        return auth_configured(settings, platform) and (platform == "salesforce" or bool(settings.netsuite_url))
    return all(getattr(settings, name) for name in REQUIRED.get(platform, ()))


def configured_connectors(settings: Settings) -> dict[str, Connector]:
    """The connectors of the configured platforms only.

    An unconfigured platform gets no connector, so its commands are dead-lettered (replayable once it
    is configured) instead of halting on "not configured": a halt nobody can clear would hold its
    command lane forever. (Stripe's URL has a default: without an API key it counts as unconfigured.)
    """
    return {platform: c for platform, c in build_connectors(settings).items() if configured(settings, platform)}
