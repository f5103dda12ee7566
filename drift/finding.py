"""What a rule returns: a finding with its evidence, and the corrective action it suggests."""

from __future__ import annotations

import hashlib
from typing import Any

from msgspec import Struct

from concord.core.messages import Observation


class Action(Struct, frozen=True, kw_only=True):
    """The correction a rule suggests: `platform.verb` plus the target and what to send."""

    name: str  # e.g. support.suspend_entitlement, erp.upsert_invoice, review
    platform: str  # stripe, salesforce, zendesk, netsuite, concord (saga / probe), none (review)
    target: dict[str, str] = {}
    payload: dict[str, Any] = {}


REVIEW = Action(name="review", platform="none")


class Finding(Struct, frozen=True, kw_only=True):
    """A disagreement between systems about one customer, as one rule sees it now."""

    rule: str  # "D01"
    customer_key: str
    subject: str  # ids of what disagrees, stable across events: "sub_1|361"
    since: int  # epoch ms the disagreement began, from the source times of the evidence
    evidence: tuple[Observation, ...]
    action: Action = REVIEW
    summary: str = ""

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.rule, self.customer_key, self.subject)


def fingerprint(rule: str, customer_key: str, subject: str) -> str:
    """Stable id of a finding: the same disagreement gets the same fingerprint on every worker."""
    return hashlib.sha256(f"{rule}|{customer_key}|{subject}".encode()).hexdigest()[:20]
