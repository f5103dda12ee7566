"""One decoder per platform, behind one signature: `decode(body, config) -> list[CanonicalEvent]`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from concord.codecs import netsuite, salesforce, stripe, zendesk
from concord.codecs.config import CodecConfig
from concord.codecs.model import SCHEMA_VERSION, CanonicalEvent, Platform

Decoder = Callable[[bytes, CodecConfig], list[CanonicalEvent]]

#: Bumped when a codec's output for the same input changes; dead letters record it, so an operator
#: knows whether replaying them after an upgrade can succeed.
#: .1: the Salesforce codec reads REST records (re-reads after a gap), which it refused or ignored before.
#: .2: opportunities carry their quantity; a NetSuite customer's CRM link is its link field when set.
CODEC_VERSION: Final = f"{SCHEMA_VERSION}.2"

DECODERS: Final[dict[Platform, Decoder]] = {
    Platform.STRIPE: stripe.decode,
    Platform.SALESFORCE: salesforce.decode,
    Platform.ZENDESK: zendesk.decode,
    Platform.NETSUITE: netsuite.decode,
}


def decoder(platform: Platform | str) -> Decoder:
    """The decoder of `platform`; ValueError naming the platforms for an unknown one."""
    try:
        return DECODERS[Platform(platform)]
    except ValueError:
        names = ", ".join(p.value for p in Platform)
        raise ValueError(f"unknown platform {platform!r}: choose one of {names}") from None
