"""Synthetic canonical histories of typical customers, for benchmarks (deterministic per seed).

A typical customer: a CRM account and a won opportunity, a billing customer with one subscription
and three monthly invoices (paid), the same invoices in the ERP, an ERP customer with its flags, a
support organization with its entitlement, and one support case: 15 events.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

from concord.codecs.model import (
    AccountUpserted,
    CanonicalEvent,
    CustomerUpserted,
    EntitlementChanged,
    EntityRef,
    FinancialFlagsChanged,
    InvoiceChanged,
    OpportunityChanged,
    Platform,
    SubscriptionChanged,
    SupportCaseChanged,
    Version,
)

# Fresh source times, as in live operation: disagreements start young (inside their grace windows).
T0 = int(time.time() * 1000) - 120_000
MONTH = 10_000  # a billing "month" of ten seconds keeps every event in the recent past


def customer_key(i: int) -> str:
    return f"001Bench{i:010d}AAA"


def history(i: int, rng: random.Random) -> list[CanonicalEvent]:
    """The 15 events of typical customer `i`, in source order."""
    ck = customer_key(i)
    cus, org, ns = f"cus_B{i:012d}", f"{360_000 + i}", f"{70_000 + i}"
    sub = f"sub_B{i:012d}"
    name = f"Customer {i} GmbH"
    t = T0 + rng.randrange(0, 60_000)
    amount = rng.choice((4900, 12900, 49900))
    out: list[CanonicalEvent] = [
        AccountUpserted(event_id=f"tx{i}:1", source=Platform.SALESFORCE, entity=EntityRef("account", ck),
                        occurred_at=t, version=Version(t, i), customer_key=ck, local_customer=f"salesforce:{ck}",
                        name=name, country="DE", currency="EUR", address="Hauptstr. 1, 10115 Berlin, DE",
                        changed=("name", "country", "currency", "address")),
        OpportunityChanged(event_id=f"tx{i}:2", source=Platform.SALESFORCE,
                           entity=EntityRef("opportunity", f"006B{i:014d}"), occurred_at=t, version=Version(t, i),
                           customer_key=ck, local_customer=f"salesforce:006B{i:014d}",
                           opportunity_id=f"006B{i:014d}", account_id=ck, stage="Closed Won", is_won=True,
                           is_closed=True, amount=amount, currency="EUR", close_date="2026-01-15",
                           plan="gold"),
        CustomerUpserted(event_id=f"evt_c{i}", source=Platform.STRIPE, entity=EntityRef("customer", cus),
                         occurred_at=t + 1000, version=Version(t + 1000, 1), customer_key=ck,
                         local_customer=f"stripe:{cus}", system=Platform.STRIPE, customer_id=cus, name=name,
                         country="DE", currency="EUR", crm_account_id=ck),
        SubscriptionChanged(event_id=f"evt_s{i}", source=Platform.STRIPE, entity=EntityRef("subscription", sub),
                            occurred_at=t + 2000, version=Version(t + 2000, 3), customer_key=ck,
                            local_customer=f"stripe:{cus}", subscription_id=sub, customer_id=cus, status="active",
                            plan="gold", quantity=1, amount=amount, currency="EUR",
                            current_period_end=t + MONTH),
        CustomerUpserted(event_id=f"customer:{ns}:{t}", source=Platform.NETSUITE, entity=EntityRef("customer", ns),
                         occurred_at=t + 3000, version=Version(t + 3000), customer_key=ck,
                         local_customer=f"netsuite:{ns}", system=Platform.NETSUITE, customer_id=ns, name=name,
                         currency="EUR", payment_terms="Net 30", crm_account_id=ck),
        FinancialFlagsChanged(event_id=f"customer:{ns}:{t}:flags", source=Platform.NETSUITE,
                              entity=EntityRef("customer", ns), occurred_at=t + 3000, version=Version(t + 3000),
                              customer_key=ck, local_customer=f"netsuite:{ns}", system=Platform.NETSUITE,
                              customer_id=ns, overdue_balance=0, currency="EUR", credit_hold=False),
        CustomerUpserted(event_id=f"zd-org-{org}", source=Platform.ZENDESK, entity=EntityRef("organization", org),
                         occurred_at=t + 4000, version=Version(t + 4000), customer_key=ck,
                         local_customer=f"zendesk:{org}", system=Platform.ZENDESK, customer_id=org, name=name,
                         crm_account_id=ck),
        EntitlementChanged(event_id=f"zd-org-{org}:ent", source=Platform.ZENDESK,
                           entity=EntityRef("organization", org), occurred_at=t + 4000, version=Version(t + 4000),
                           customer_key=ck, local_customer=f"zendesk:{org}", organization_id=org, status="active",
                           tier="gold", end_date="2027-01-31", tags=("gold",)),
        SupportCaseChanged(event_id=f"zd-t{i}", source=Platform.ZENDESK, entity=EntityRef("ticket", f"9{i}"),
                           occurred_at=t + 5000, version=Version(t + 5000), customer_key=ck,
                           local_customer=f"zendesk:{org}", ticket_id=f"9{i}", organization_id=org, status="open",
                           priority="normal", subject="Question about invoice", created_at=t + 5000),
    ]
    for month in range(3):
        at = t + month * MONTH + 10_000
        inv = f"in_B{i:010d}{month}"
        out.append(InvoiceChanged(event_id=f"evt_i{i}_{month}", source=Platform.STRIPE,
                                  entity=EntityRef("invoice", inv), occurred_at=at, version=Version(at, 4),
                                  customer_key=ck, local_customer=f"stripe:{cus}", system=Platform.STRIPE,
                                  invoice_id=inv, billing_invoice_id=inv, customer_id=cus, subscription_id=sub,
                                  number=f"B{i}-{month}", status="paid", total=amount, tax=0, amount_remaining=0,
                                  currency="EUR", paid_at=at))
        out.append(InvoiceChanged(event_id=f"invoice:{ns}{month}:{at}", source=Platform.NETSUITE,
                                  entity=EntityRef("invoice", f"{ns}{month}"), occurred_at=at + 60_000,
                                  version=Version(at + 60_000), customer_key=ck, local_customer=f"netsuite:{ns}",
                                  system=Platform.NETSUITE, invoice_id=f"{ns}{month}", billing_invoice_id=inv,
                                  customer_id=ns, number=f"INV-{i}-{month}", status="paid", total=amount, tax=0,
                                  amount_remaining=0, currency="EUR"))
    return out


def interleaved(customers: int, seed: int = 7) -> Iterator[CanonicalEvent]:
    """Histories of `customers` customers interleaved as they would arrive (round-robin by step)."""
    rng = random.Random(seed)
    histories = [history(i, rng) for i in range(customers)]
    for step in range(max(map(len, histories))):
        for h in histories:
            if step < len(h):
                yield h[step]
