"""The drift the sandbox injects: the catalogue (which lifecycle step breaks how) and the ground truth.

Every injection is recorded as an `Injection`: the rule that must report it, the customer, the
`subject` the rule will report (computed the way the rule computes it, so `fingerprint` equals the
fingerprint of Concord's finding), when it was injected and the action Concord should take. The
traffic generator (`sandbox/traffic.py`) decides when to break a step; this module says where each
rule's drift goes and what it looks like, so a scorer can match Concord's findings one to one.

| rule | step where it is injected | what the generator does |
|---|---|---|
| D01 | cancel | cancels the Stripe subscription, leaves the Zendesk entitlement active |
| D02 | onboard | the Zendesk organization gets no active entitlement |
| D03 | upgrade | the plan changes in Stripe, the Zendesk tier stays the old plan's |
| D04 | invoice | a finalized Stripe invoice never reaches NetSuite |
| D05 | invoice | NetSuite books the invoice with another total |
| D06 | payment | paid in Stripe, NetSuite amountRemaining unchanged |
| D07 | refund | a Stripe refund without a NetSuite credit memo |
| D08 | onboard | no NetSuite customer |
| D09 | onboard | the NetSuite companyName differs from the Salesforce Name (Salesforce owns name) |
| D10 | deal | a deal (account, won opportunity) fails the saga's validation: no EU tax id, or no country |
| D11 | onboard | the subscription's value differs from the opportunity amount |
| D12 | onboard | a second Stripe customer names the same account |
| D13 | merge | a duplicate account is merged away while its Stripe and NetSuite customers still name it |
| D14 | cancel | as D01, and every suspension Concord makes is undone at once, so Concord must escalate |
| D15 | after cancel | a churned customer opens a ticket |

D10's deal comes in two variants (sandbox/deals.py), rotated: `incomplete` (nobody fixes the account:
D10, whose `saga.resume` cannot pass validation, then its D14 escalation) and `fixed` (a person fixes
the account one deal step after the win and nobody resumes the saga: D10, which `saga.resume`
corrects). Either deal also holds D08 (a won account without an ERP customer, since the saga stopped
before creating it), injected beside its D10.

History customers (`--history`, sandbox/traffic.py) are laid down before the traffic starts, dated in
the past and never announced by an event; some carry drift *at rest* (`Injection.at_rest`), which only
a reconciliation that reads the platforms can find. Only the rules in `AT_REST_RULES` are injected so:
their drift is a state of the records. D13 is not (Concord knows of a merge only from the CRM's merge
event; at rest the merged-away account is simply gone, and its references look like D12's), nor is
D14 (an escalation of corrections that do not stick: a reaction to Concord's live writes), although a
D10 at rest (always an `incomplete` deal) still brings the D14 escalation its failing correction makes.

Some drift shows only once Concord corrected another: D14's escalation after D01's corrections
failed, or after an incomplete deal's `saga.resume` could not pass validation; and the duplicates
(D12) a merge leaves once Concord re-pointed the merged-away account's Stripe customer
(`duplicate|stripe`) and its NetSuite customer (`duplicate|netsuite`: the CRM link field
`custentity_sf_account_id` names the winner, so two NetSuite customers name it) for D13. Their
`after` names the fingerprint of that other finding, so a scorer can tell "not yet visible" from "missed".
"""

from __future__ import annotations

import hashlib
from typing import Final

from msgspec import Struct

RULES: Final = tuple(f"D{n:02d}" for n in range(1, 16))

# The lifecycle step each rule's drift is injected at (see the table above).
STEP_OF: Final[dict[str, str]] = {
    "D01": "cancel",
    "D02": "onboard",
    "D03": "upgrade",
    "D04": "invoice",
    "D05": "invoice",
    "D06": "payment",
    "D07": "refund",
    "D08": "onboard",
    "D09": "onboard",
    "D10": "deal",
    "D11": "onboard",
    "D12": "onboard",
    "D13": "merge",
    "D14": "cancel",
    "D15": "late_ticket",
}

# The subject each rule reports, as the rule builds it (drift/rules/*.py), from the ids it names.
_SUBJECTS: Final[dict[str, str]] = {
    "D01": "{organization_id}",
    "D02": "{customer_key}",
    "D03": "{organization_id}",
    "D04": "{invoice_id}",
    "D05": "{invoice_id}|{erp_invoice_id}",
    "D06": "{invoice_id}|{erp_invoice_id}|paid_in_billing",
    "D07": "{refund_id}",
    "D08": "{customer_key}",
    "D09": "{field}|{system}:{record_id}",
    "D10": "{opportunity_id}",
    "D11": "{opportunity_id}|{subscription_id}",
    "D12": "duplicate|{system}",
    "D13": "{system}:{record_id}",
    "D14": "{stuck}|escalated",
    "D15": "{ticket_id}",
}

# The rules whose drift can be injected at rest, into history customers (see the module docstring).
AT_REST_RULES: Final = tuple(rule for rule in RULES if rule not in ("D13", "D14"))

# What the sandbox expects Concord to do about each rule's finding: the built-in actions documented
# in docs/rules.md. The sandbox states them itself rather than reading Concord's rule catalogue,
# because it is the oracle that judges Concord: a changed default on either side must show up as a
# disagreement (tests/unit/sandbox/test_contracts.py compares this table with the catalogue).
# D09 and D13 name only a verb, sent to the system that disagrees (prefixed by its domain below);
# D14 is the probe of a stuck correction, but what the sandbox injects is an escalation: review.
DEFAULT_ACTION: Final[dict[str, str]] = {
    "D01": "support.suspend_entitlement",
    "D02": "support.grant_entitlement",
    "D03": "support.set_tier",
    "D04": "erp.upsert_invoice",
    "D05": "review",
    "D06": "erp.apply_payment",
    "D07": "erp.create_credit_memo",
    "D08": "erp.upsert_customer",
    "D09": "update_customer",
    "D10": "saga.resume",
    "D11": "review",
    "D12": "review",
    "D13": "update_customer",
    "D14": "concord.probe",
    "D15": "review",
}
REVIEW: Final = "review"

# Each platform's domain in Concord's action names (`erp.update_customer`), as docs/rules.md names them.
DOMAIN_OF: Final[dict[str, str]] = {"salesforce": "crm", "stripe": "billing", "zendesk": "support",
                                    "netsuite": "erp"}

# The published fingerprint contract (docs/drift.md): the first 20 hex digits of the sha256 of the
# UTF-8 text "<rule>|<customer key>|<subject>".
FINGERPRINT_HEX_DIGITS: Final = 20

E_UNKNOWN_RULE: Final = "unknown rule {rule!r} in --rules: choose among {rules}"


class Injection(Struct, frozen=True, kw_only=True):
    """One drift the sandbox injected: what Concord must find (ground truth, `GET /_sandbox/injected`)."""

    rule: str
    customer_key: str  # the CRM account id: Concord's customer key
    subject: str  # the subject the rule reports
    fingerprint: str  # fingerprint(rule, customer_key, subject): the id of Concord's finding
    injected_at: int  # epoch ms (wall clock) of the write that broke the step
    detail: str  # what was broken, for a person
    expected_action: str  # the rule's default action for this finding, "review" for review rules
    # The fingerprint of the injected finding whose correction makes this one visible ("" when Concord can
    # see it at once): D14 shows once D01's corrections failed, a merge's duplicate once D13 is fixed.
    after: str = ""
    # True for drift of a history customer (`--history`): in the records before the traffic started,
    # never announced by an event, so Concord can find it only by reconciling.
    at_rest: bool = False


def parse_rules(text: str) -> tuple[str, ...]:
    """`--rules D01,D04` -> ("D01", "D04"); empty -> every rule. ValueError names an unknown rule."""
    chosen: list[str] = []
    for part in text.split(","):
        rule = part.strip().upper()
        if not rule:
            continue
        if rule not in STEP_OF:
            raise ValueError(E_UNKNOWN_RULE.format(rule=part.strip(), rules=", ".join(RULES)))
        if rule not in chosen:
            chosen.append(rule)
    return tuple(chosen) or RULES


def fingerprint(rule: str, customer_key: str, subject: str) -> str:
    """The id Concord gives the finding, by the published contract: the scorer matches findings on it."""
    text = f"{rule}|{customer_key}|{subject}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:FINGERPRINT_HEX_DIGITS]


def expected_action(rule: str, system: str | None = None) -> str:
    """The built-in action of `rule`; D09/D13 name only a verb, prefixed by the target system's domain."""
    if rule == "D14":
        return REVIEW  # the sandbox injects escalations, and an escalation is always left to a person
    action = DEFAULT_ACTION[rule]
    if rule in ("D09", "D13") and system is not None and action != REVIEW:
        return f"{DOMAIN_OF[system]}.{action}"
    return action


def subject(rule: str, **ids: str) -> str:
    """The subject `rule` reports for the ids given (the names in the rule's subject template)."""
    return _SUBJECTS[rule].format(**ids)


def make(rule: str, customer_key: str, at: int, detail: str, system: str | None = None, after: str = "",
         at_rest: bool = False, **ids: str) -> Injection:
    """The ground-truth record of one injection (`ids` fill the rule's subject template)."""
    reported = subject(rule, customer_key=customer_key, system=system or "", **ids)
    return Injection(rule=rule, customer_key=customer_key, subject=reported,
                     fingerprint=fingerprint(rule, customer_key, reported), injected_at=at, detail=detail,
                     expected_action=expected_action(rule, system), after=after, at_rest=at_rest)


class Rotation:
    """Hands out the allowed rules in turn, so that a short run covers every one of them."""

    def __init__(self, rules: tuple[str, ...]) -> None:
        if not rules:
            raise ValueError("no rules to inject: give at least one rule id")
        self.rules = rules
        self._turn = 0

    def next(self) -> str:
        rule = self.rules[self._turn % len(self.rules)]
        self._turn += 1
        return rule
