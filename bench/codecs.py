"""Codec speed: Stripe and Salesforce payloads decoded per second on one core.

Our msgspec codecs against a baseline of `json.loads` + dict access reading the same fields, on
the same payloads (the real fixtures in ../shared/fixtures), in the same run. Goal (issue 3):
100k events/s and at least 3x the baseline.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from concord.bench.common import write_result
from concord.codecs import salesforce, stripe
from concord.codecs.config import DEFAULT_CODEC_CONFIG

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"


def stripe_payloads() -> list[bytes]:
    folder = FIXTURES / "stripe" / "events-2020-08-27"
    wanted = ("customer.", "invoice.", "charge.refunded", "customer.subscription.")
    return [p.read_bytes() for p in sorted(folder.glob("*.json")) if p.name.startswith(wanted)
            and p.name != "invoice.upcoming.json"]


def salesforce_payloads() -> list[bytes]:
    folder = FIXTURES / "salesforce"
    out = [(folder / "pubsub_OpportunityChangeEvent_CREATE.json").read_bytes(),
           (folder / "pubsub_AccountChangeEvent_UPDATE_compound_bitmap.json").read_bytes()]
    out += [line for line in (folder / "pubsub_lead_conversion_transaction.jsonl").read_bytes().splitlines()
            if line.strip()]
    return out


def stripe_baseline(body: bytes) -> Any:
    """json.loads + dict access of the fields the Stripe codec reads."""
    event = json.loads(body)
    obj = event["data"]["object"]
    kind = obj.get("object")
    common = (event["id"], event["type"], event["created"] * 1000, obj.get("id"), obj.get("customer"))
    if kind == "invoice":
        parent = obj.get("parent") or {}
        sub = obj.get("subscription") or (parent.get("subscription_details") or {}).get("subscription")
        return (*common, obj["status"], obj["total"], obj["currency"].upper(), obj.get("amount_remaining"),
                obj.get("tax"), sub, (obj.get("status_transitions") or {}).get("paid_at"), obj.get("due_date"))
    if kind == "subscription":
        items = obj.get("items", {}).get("data", [])
        amount = sum((i.get("price") or i.get("plan") or {}).get("unit_amount") or 0 for i in items)
        return (*common, obj["status"], amount, obj.get("current_period_end"), obj.get("cancel_at_period_end"))
    if kind == "customer":
        return (*common, obj.get("name"), obj.get("email"), (obj.get("metadata") or {}).get("salesforce_account_id"))
    if kind == "charge":
        return (*common, obj.get("amount_refunded"), [r["id"] for r in (obj.get("refunds") or {}).get("data", [])])
    return common


def salesforce_baseline(body: bytes) -> Any:
    """json.loads + dict access of the fields the Salesforce codec reads."""
    payload = json.loads(body)
    payload = payload.get("data", {}).get("payload", payload)
    header = payload["ChangeEventHeader"]
    fields = {k: v for k, v in payload.items() if k != "ChangeEventHeader" and v is not None}
    return (header["entityName"], header["changeType"], header["recordIds"], header["commitTimestamp"],
            int(header["commitNumber"]), header["transactionKey"], header["sequenceNumber"], fields.get("Name"),
            fields.get("StageName"), fields.get("Amount"), fields.get("CloseDate"), fields.get("AccountId"))


def rate(fn: Callable[[bytes], Any], payloads: list[bytes], seconds: float) -> float:
    """Payloads per second, cycling through `payloads` for about `seconds` (best of 3 rounds)."""
    best = 0.0
    for _ in range(3):
        done = 0
        started = time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds / 3:
            for body in payloads:
                fn(body)
            done += len(payloads)
        best = max(best, done / elapsed)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m concord.bench.codecs", description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement (default %(default)s)")
    args = parser.parse_args(argv)
    if not FIXTURES.is_dir():
        raise SystemExit(f"fixtures not found at {FIXTURES} (../shared/fixtures beside the checkout)")
    rows = []
    results: dict[str, Any] = {}
    for name, payloads, codec, baseline in (
        ("stripe", stripe_payloads(), lambda b: stripe.decode(b, DEFAULT_CODEC_CONFIG), stripe_baseline),
        ("salesforce", salesforce_payloads(), lambda b: salesforce.decode(b, DEFAULT_CODEC_CONFIG),
         salesforce_baseline),
    ):
        ours = rate(codec, payloads, args.seconds)
        base = rate(baseline, payloads, args.seconds)
        size = sum(map(len, payloads)) / len(payloads)
        rows.append((name, len(payloads), size, ours, base))
        results[name] = {"payloads": len(payloads), "mean_bytes": round(size), "msgspec_codec_per_s": round(ours),
                         "json_loads_dict_per_s": round(base), "speedup": round(ours / base, 2)}
    print(f"\n{'platform':12} {'payloads':>8} {'bytes':>7} {'codec/s':>10} {'json.loads/s':>13} {'speedup':>8}")
    for name, count, size, ours, base in rows:
        print(f"{name:12} {count:8} {size:7.0f} {ours:10,.0f} {base:13,.0f} {ours / base:7.2f}x")
    print(f"result: {write_result('codecs', results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
