"""Slower, never wrong: seeded closed-loop runs under load and faults, scored against the sandbox's truth.

    python -m concord.bench.reliability overload   # 1,000 customers, no drift, time scale 200,000
    python -m concord.bench.reliability storm      # the same with 10% drift and every platform's API failing
                                                   # (30% 5xx, 429 bursts, 10% applied-then-500) for 60 s
    python -m concord.bench.reliability gaps       # the storm, and 20% of Salesforce's change events
                                                   # delivered as GAP_* events (re-read to be known)

Each run is `concord demo --hold` (local Kafka and Redis, the Procfile's processes, the sandbox), driven
from here: faults on while the traffic starts and off after `--faults-for` seconds, then, once the run has
settled (app/demo.py `Settling`), every finding is scored against `/_sandbox/injected`
(bench/score.py) and the platform writes counted from `/_sandbox/effects`. The result (figures, the
false findings and the missed injections with each false finding's customer as Concord holds it, the
sandbox's webhook deliveries and retries) goes to bench/results/reliability-<scenario>-<seed>.json; the
table in docs/reliability.md comes from these files. Not a timed test: the figures move with the
machine's load, the verdicts (false findings, writes) must not.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from concord.app import demo
from concord.bench import score as scoring
from concord.bench.common import RESULTS, write_result

SCENARIOS: dict[str, dict[str, Any]] = {
    "overload": {"drift_rate": 0.0, "faults_for": 0.0, "gap_rate": 0.0},
    "storm": {"drift_rate": 0.1, "faults_for": 60.0, "gap_rate": 0.0},
    # The storm, and a fifth of Salesforce's change events delivered as GAP_* events (no fields) meanwhile.
    "gaps": {"drift_rate": 0.1, "faults_for": 60.0, "gap_rate": 0.2},
    "calm": {"drift_rate": 0.1, "faults_for": 0.0, "gap_rate": 0.0},
}
WORKER = "http://127.0.0.1:6066"
SANDBOX = f"http://{demo.SANDBOX_HOST}:{demo.SANDBOX_PORT}"
TOKEN = "concord-demo-read-token"
# The customers of at most this many false findings, and of as many missed injections, are dumped whole (state,
# drift items) to trace them.
TRACED = 25


def _faults(on: bool, gap_rate: float) -> None:
    faults: dict[str, dict[str, Any]] = {p: scoring.STORM if on else scoring.CALM for p in scoring.PLATFORMS}
    faults["salesforce"] = {**faults["salesforce"], "gap_rate": gap_rate if on else 0.0}
    scoring._call(f"{SANDBOX}/_sandbox/faults", faults)


def _customer(key: str) -> Any:
    try:
        return scoring._call(f"{WORKER}/api/customers/{key}", token=TOKEN)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return {"error": repr(exc)}


def _platform_record(finding: dict[str, Any]) -> Any:
    """The record a finding's subject names, as the sandbox's platform API serves it now (a D15 ticket)."""
    if finding["rule"] != "D15":
        return None
    auth = base64.b64encode(b"demo@concord.invalid/token:concord-demo-zendesk-token").decode()
    request = urllib.request.Request(f"{SANDBOX}/api/v2/tickets/{finding['subject']}.json",
                                     headers={"Authorization": f"Basic {auth}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (the local sandbox)
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return {"error": repr(exc)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    scenario = SCENARIOS[args.scenario]
    drift_rate = scenario["drift_rate"] if args.drift_rate is None else args.drift_rate
    faults_for = scenario["faults_for"] if args.faults_for is None else args.faults_for
    log_path = RESULTS / f"reliability-{args.scenario}-{args.seed}.log"
    RESULTS.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "concord.app.cli", "demo", "--seed", str(args.seed),
               "--customers", str(args.customers), "--drift-rate", str(drift_rate),
               "--time-scale", str(args.time_scale), "--duration", str(args.duration),
               "--settle", str(args.settle), "--hold"]
    print(f"reliability {args.scenario}: {' '.join(command[3:])}; faults for {faults_for:g} s; log {log_path}",
          flush=True)
    with log_path.open("wb") as log:
        runner = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    settling = demo.Settling(quiet=demo.QUIET_S, limit=args.settle)
    rates: list[float] = []
    before: demo.Totals | None = None
    faults_on_at: float | None = None
    faulted = False
    try:
        while True:
            if runner.poll() is not None:
                raise SystemExit(f"reliability: the demo stopped (exit {runner.returncode}); see {log_path}")
            time.sleep(2.0)
            now = demo.read_totals(WORKER, SANDBOX, TOKEN)
            if now is None:
                continue
            if faults_for and not faulted and faults_on_at is None:
                _faults(True, scenario["gap_rate"])
                faults_on_at = time.time()
            if faults_on_at is not None and not faulted and time.time() - faults_on_at >= faults_for:
                _faults(False, 0.0)
                faulted = True
            if before is not None and now.sandbox_running and now.at > before.at:
                rates.append(max(0.0, now.events - before.events) / (now.at - before.at))
            before = now
            print(f"\r{demo.render(now, before)}", end="", flush=True)
            if settling.settled(now) and (not faults_for or faulted):
                break
        print(flush=True)
        figures = scoring.score(WORKER, SANDBOX, TOKEN)
        status = scoring._call(f"{SANDBOX}/_sandbox/status")
        traced = {f["customer_key"]: {"concord": _customer(f["customer_key"]), "platform": _platform_record(f)}
                  for f in figures["false"][:TRACED]}
        traced.update({m["customer_key"]: {"concord": _customer(m["customer_key"]), "missed": m["rule"]}
                       for m in figures["missed"][:TRACED] if m["customer_key"] not in traced})
    finally:
        os.killpg(runner.pid, signal.SIGINT)
        try:
            runner.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(runner.pid, signal.SIGKILL)
    deliveries = status.get("emitter", {}).get("platforms", {})
    busy = [r for r in rates if r > 0]
    result = {
        "scenario": args.scenario, "seed": args.seed, "customers": args.customers, "drift_rate": drift_rate,
        "time_scale": args.time_scale, "duration_s": args.duration, "faults_for_s": faults_for,
        "gap_rate": scenario["gap_rate"], "gaps_delivered": sum(p.get("gaps", 0) for p in deliveries.values()),
        "events_per_s_median": round(statistics.median(busy), 1) if busy else 0.0,
        "webhook_retries": sum(p.get("retries", 0) for p in deliveries.values()),
        "webhook_failed": sum(p.get("failed", 0) for p in deliveries.values()),
        **{k: v for k, v in figures.items() if k not in ("false", "missed")},
        "false": figures["false"], "missed": figures["missed"], "traced_customers": traced,
    }
    path = write_result(f"reliability-{args.scenario}-{args.seed}", result)
    shown = {k: v for k, v in result.items() if k not in ("false", "missed", "traced_customers")}
    print(json.dumps(shown, indent=2))
    faults = f"on for {faults_for:g} s" if faults_for else "none"
    print(f"| {args.scenario} | {args.customers} customers, x{args.time_scale:g}, "
          f"{shown['events_per_s_median']} events/s | {faults} | "
          f"{shown['injected']} | {shown['findings']} | {len(figures['false'])} | {shown['recall']} | "
          f"{shown['platform_writes']} | {shown['webhook_retries']} |")
    print(f"result: {path}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--drift-rate", type=float, default=None, help="default: the scenario's")
    parser.add_argument("--time-scale", type=float, default=200000.0)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of traffic")
    parser.add_argument("--faults-for", type=float, default=None,
                        help="seconds the platforms' APIs fail from the start (default: the scenario's)")
    parser.add_argument("--settle", type=float, default=300.0,
                        help="at most this many seconds after the traffic before scoring")
    run(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
