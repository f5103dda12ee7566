"""Concord's topics (ARCHITECTURE section 2), named from the settings' prefix."""

from __future__ import annotations

from typing import Final

from concord.app.settings import Settings
from msgspec import Struct

PLATFORMS: Final = ("stripe", "salesforce", "zendesk", "netsuite")


class TopicNames(Struct, frozen=True):
    """Every topic name, so no module spells one by hand."""

    raw: dict[str, str]
    dlq_ingest: str
    identity: str
    canonical: str
    drift: str
    commands: str
    command_results: str
    dlq_commands: str
    audit: str

    def all(self) -> list[str]:
        return [
            *self.raw.values(),
            self.dlq_ingest,
            self.identity,
            self.canonical,
            self.drift,
            self.commands,
            self.command_results,
            self.dlq_commands,
            self.audit,
        ]


def topic_names(settings: Settings) -> TopicNames:
    p = settings.topic_prefix
    return TopicNames(
        raw={platform: f"{p}.raw.{platform}" for platform in PLATFORMS},
        dlq_ingest=f"{p}.dlq.ingest",
        identity=f"{p}.identity",
        canonical=f"{p}.canonical",
        drift=f"{p}.drift",
        commands=f"{p}.commands",
        command_results=f"{p}.command-results",
        dlq_commands=f"{p}.dlq.commands",
        audit=f"{p}.audit",
    )
