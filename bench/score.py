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


def findings(worker: str, token: str) -> list[dict[str, Any]]:
    """Every finding of the drift index (open and resolved), page by page."""
    items: list[dict[str, Any]] = []
    while True:
        page = _call(f"{worker}/api/v1/drift?status=all&limit=200&offset={len(items)}", token=token)
        items += page["items"]
        if len(items) >= page["total"] or not page["items"]:
            return items


def judge(items: list[dict[str, Any]], injected: list[dict[str, Any]], effects: dict[str, Any]) -> dict[str, Any]:
    """The figures of a run, plus the false findings and the missed injections themselves (to trace them).

    A finding last reported "cannot judge" (an input unreadable past its bound, no command sent) claims no
    drift: it is counted apart, never as a false finding, and it does not count as finding an injection.
    """
    truth = {(i["rule"], i["customer_key"], i["subject"]) for i in injected}
    undecided = [f for f in items if f.get("note", "").startswith("cannot judge")]
    claims = [f for f in items if not f.get("note", "").startswith("cannot judge")]
    found = {(f["rule"], f["customer_key"], f["subject"]) for f in claims}
    false = [f for f in claims if (f["rule"], f["customer_key"], f["subject"]) not in truth]
    return {
        "injected": len(truth), "findings": len(found), "found_injected": len(truth & found),
        "recall": round(len(truth & found) / len(truth), 3) if truth else 1.0,
        "precision": round(len(truth & found) / len(found), 3) if found else 1.0,
        "false_by_rule": dict(Counter(f["rule"] for f in false)),
        "missed_by_rule": dict(Counter(k[0] for k in truth - found)),
        "cannot_judge": len(undecided),
        "cannot_judge_open": sum(1 for f in undecided if f["status"] != "resolved"),
        "escalated": sum(1 for f in items if f["status"] == "escalated"),
        "platform_writes": sum(e.get("applied", 0) for e in effects.get("effects", [])),
        "duplicate_writes": len(effects.get("duplicates", [])),
        "false": false,
        "missed": [i for i in injected if (i["rule"], i["customer_key"], i["subject"]) not in found],
    }


def score(worker: str, sandbox: str, token: str) -> dict[str, Any]:
    return judge(findings(worker, token), _call(f"{sandbox}/_sandbox/injected"), _call(f"{sandbox}/_sandbox/effects"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("faults", "clear", "score"))
    parser.add_argument("--worker", default="http://127.0.0.1:6066")
    parser.add_argument("--sandbox", default="http://127.0.0.1:6070")
    parser.add_argument("--token", default="concord-demo-read-token", help="the worker's read token")
    args = parser.parse_args()
    if args.action == "score":
        figures = score(args.worker, args.sandbox, args.token)
        print(json.dumps({k: v for k, v in figures.items() if k not in ("false", "missed")}, indent=2))
        return
    faults = STORM if args.action == "faults" else CALM
    _call(f"{args.sandbox}/_sandbox/faults", {p: faults for p in PLATFORMS})
    print(f"sandbox faults {'on' if args.action == 'faults' else 'off'} for {', '.join(PLATFORMS)}")


if __name__ == "__main__":
    main()
