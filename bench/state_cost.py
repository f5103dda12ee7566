"""Pure state cost: `apply` + all rules per event (µs), and table memory per typical customer.

1. Per event: typical customer histories (bench/workload.py) folded with `apply` and `evaluate`
   (every rule reading what the event changed, and the lifecycle), no Kafka, one core.
2. Memory: N typical customers' final states, msgpack-encoded as the `customers` table holds them,
   in a dict keyed by customer key; tracemalloc measures the whole structure.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
import tracemalloc

from concord.bench.common import write_result
from concord.bench.workload import customer_key, history
from concord.drift import catalog, lifecycle
from concord.drift.config import DriftConfig
from concord.drift.sections import sections_of
from concord.tables import state as st


def per_event(customers: int, rounds: int) -> tuple[float, float]:
    """Best-of-`rounds` µs per event for apply alone, and for apply + rules + lifecycle."""
    config = DriftConfig(rules=catalog.default_configs())
    rng = random.Random(3)
    histories = [history(i, rng) for i in range(customers)]
    events = sum(map(len, histories))
    now = int(time.time() * 1000)
    best_apply = best_all = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for h in histories:
            state = st.empty(h[0].customer_key or "")
            for event in h:
                state, _ = st.apply(state, event)
        best_apply = min(best_apply, (time.perf_counter() - started) / events * 1e6)
        started = time.perf_counter()
        for h in histories:
            state = st.empty(h[0].customer_key or "")
            for event in h:
                state, changed = st.apply(state, event)
                state = lifecycle.evaluate(state, now, catalog.RULES, config,
                                           sections_of(event) if changed else ()).state
        best_all = min(best_all, (time.perf_counter() - started) / events * 1e6)
    return best_apply, best_all


def memory(customers: int) -> tuple[float, float]:
    """(bytes per customer in the table dict, mean encoded state size)."""
    rng = random.Random(5)
    encoded: list[tuple[str, bytes]] = []
    for i in range(customers):
        state = st.empty(customer_key(i))
        for event in history(i, rng):
            state, _ = st.apply(state, event)
        encoded.append((customer_key(i), st.dump(state)))
    mean = sum(len(v) for _, v in encoded) / customers
    gc.collect()
    tracemalloc.start()
    # Fresh copies of keys and values, allocated while tracing, as a recovered table would hold them.
    table = {k.encode().decode(): bytes(bytearray(v)) for k, v in encoded}
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del table
    return size / customers, mean


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m concord.bench.state_cost", description=__doc__)
    parser.add_argument("--customers", type=int, default=2000, help="customers for the per-event timing")
    parser.add_argument("--memory-customers", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    apply_us, all_us = per_event(args.customers, args.rounds)
    print(f"per event: apply {apply_us:.2f} µs; apply + rules + lifecycle {all_us:.2f} µs "
          f"({args.customers:,} typical customers, best of {args.rounds})", flush=True)
    per_customer, mean_encoded = memory(args.memory_customers)
    print(f"memory: {per_customer:,.0f} bytes per customer in the table "
          f"({args.memory_customers:,} typical customers; encoded state {mean_encoded:,.0f} bytes)")
    path = write_result("state_cost", {
        "apply_us_per_event": round(apply_us, 2), "apply_rules_us_per_event": round(all_us, 2),
        "table_bytes_per_customer": round(per_customer), "encoded_state_bytes": round(mean_encoded),
        "customers": args.customers, "memory_customers": args.memory_customers,
    })
    print(f"result: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
