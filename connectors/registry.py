"""The platform connectors of one Concord process, built from its settings."""

from __future__ import annotations

from concord.app.settings import Settings
from concord.connectors.base import Connector
from concord.connectors.netsuite import NetSuiteConnector
from concord.connectors.salesforce import SalesforceConnector
from concord.connectors.stripe import StripeConnector
from concord.connectors.zendesk import ZendeskConnector


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
