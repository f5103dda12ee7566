"""Score a running `concord demo` against the sandbox's ground truth: recall, precision, platform writes.

    concord demo --seed 7 --customers 1000 --drift-rate 0.1 --time-scale 200000 --duration 60 --settle 150 &
    python -m concord.bench.score faults   # 30% 5xx, 429 bursts, 10% applied-then-500 on every platform
    sleep 60; python -m concord.bench.score clear    # the platforms answer again
    sleep 90; python -m concord.bench.score score

A finding matches an injection by rule, customer key and subject (the sandbox's ground truth,
`/_sandbox/injected`); every other finding is false. The figures are in docs/reliability.md.
"""

from __future__ import annotations

import argparse
import json
import urllib.request
from collections import Counter
from typing import Any

PLATFORMS = ("stripe", "salesforce", "zendesk", "netsuite")
STORM = {"error_rate": 0.3, "burst_429": 3, "retry_after": 1, "error_after_apply_rate": 0.1}
CALM = {"error_rate": 0.0, "burst_429": 0, "error_after_apply_rate": 0.0}


def _call(url: str, body: Any = None, token: str = "") -> Any:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=30) as resp:
        return json.loads(resp.read())


def score(worker: str, sandbox: str, token: str) -> dict[str, Any]:
    injected = _call(f"{sandbox}/_sandbox/injected")
    items: list[dict[str, Any]] = []
    while True:
        page = _call(f"{worker}/api/drift?status=all&limit=200&offset={len(items)}", token=token)
        items += page["items"]
        if len(items) >= page["total"] or not page["items"]:
            break
    truth = {(i["rule"], i["customer_key"], i["subject"]) for i in injected}
    found = {(f["rule"], f["customer_key"], f["subject"]) for f in items}
    effects = _call(f"{sandbox}/_sandbox/effects")
    return {
        "injected": len(truth), "findings": len(found), "found_injected": len(truth & found),
        "recall": round(len(truth & found) / max(1, len(truth)), 3),
        "precision": round(len(truth & found) / max(1, len(found)), 3),
        "false_by_rule": dict(Counter(k[0] for k in found - truth)),
        "missed_by_rule": dict(Counter(k[0] for k in truth - found)),
        "cannot_judge": sum(1 for f in items if f.get("note", "").startswith("cannot judge")),
        "escalated": sum(1 for f in items if f["status"] == "escalated"),
        "platform_writes": sum(e.get("applied", 0) for e in effects.get("effects", [])),
        "duplicate_writes": len(effects.get("duplicates", [])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("faults", "clear", "score"))
    parser.add_argument("--worker", default="http://127.0.0.1:6066")
    parser.add_argument("--sandbox", default="http://127.0.0.1:6070")
    parser.add_argument("--token", default="concord-demo-read-token", help="the worker's read token")
    args = parser.parse_args()
    if args.action == "score":
        print(json.dumps(score(args.worker, args.sandbox, args.token), indent=2))
        return
    faults = STORM if args.action == "faults" else CALM
    _call(f"{args.sandbox}/_sandbox/faults", {p: faults for p in PLATFORMS})
    print(f"sandbox faults {'on' if args.action == 'faults' else 'off'} for {', '.join(PLATFORMS)}")


if __name__ == "__main__":
    main()
