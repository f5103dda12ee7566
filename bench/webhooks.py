"""Webhook answer times while the workers are busy: the ingress inside a worker, or `concord webhooks`.

Both setups get the same work on the real broker. A backlog of canonical events (bench/workload.py,
one Kafka message each: the live path) waits on the app's canonical topic for the state agent, so the
stream is busy; once the state agent has begun, signed Stripe deliveries arrive at `--rate` per second
for `--seconds` (on schedule, whether or not the earlier ones were answered, as platforms send them),
each given 10 s as a platform would before it gives up and retries.

* one worker: `concord worker` with every role, the webhooks on its port;
* webhooks process: `concord worker --roles ingest,state,commands` beside `concord webhooks`, the
  webhooks on the latter's port.

Prints the answer times (p50, p95, p99, max) and the failures (not 200, or no answer in 10 s); writes
bench/results/webhooks-*.json. Client and servers share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaProducer

from concord.app.signatures import sign_t_v1
from concord.bench.common import (
    bootstrap,
    create_topic,
    delete_run_topics,
    free_port,
    kafka_options,
    unique,
    worker_env,
    write_result,
)
from concord.bench.workload import interleaved
from concord.codecs.model import encode as encode_event

SECRET = "whsec_bench_webhooks_secret"
SETUPS = ("one worker", "webhooks process")
PLATFORM_TIMEOUT_S = 10.0  # about when a platform gives up on a delivery and schedules a retry


def delivery(i: int) -> bytes:
    return (f'{{"id":"evt_bench_{i:08d}","object":"event","type":"customer.updated","created":{int(time.time())},'
            f'"data":{{"object":{{"id":"cus_bench_{i % 500:05d}","object":"customer","name":"Bench {i}",'
            f'"email":"b{i}@example.invalid","metadata":{{}}}}}}}}').encode()


async def backlog(app_id: str, customers: int, partitions: int) -> int:
    """Canonical events for the state agent, one message each, on the app's canonical topic."""
    topic = f"{app_id}.canonical"
    await create_topic(topic, partitions)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap(), **kafka_options(), acks=1, linger_ms=20,
                                max_batch_size=512 * 1024)
    await producer.start()
    count = 0
    try:
        for event in interleaved(customers):
            await producer.send(topic, encode_event(event), key=(event.customer_key or "").encode())
            count += 1
        await producer.flush()
    finally:
        await producer.stop()
    return count


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "concord.app.cli", *argv], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


async def wait_ready(url: str, procs: list[subprocess.Popen[bytes]], log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in procs):
                raise SystemExit(f"a process exited:\n{log.read_text()[-3000:]}")
            try:
                async with session.get(f"{url}/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.3)
    raise SystemExit(f"not ready after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


async def state_started(url: str, timeout: float = 120) -> None:
    """Until the worker's state agent has processed its first events (the stream is busy)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):  # the worker's port may open after the webhooks'
                async with session.get(f"{url}/metrics") as resp:
                    if b'concord_events_processed_total{agent="state"}' in await resp.read():
                        return
            await asyncio.sleep(0.2)
    raise SystemExit(f"the state agent processed nothing in {timeout:.0f} s")


async def post_all(url: str, rate: float, seconds: float) -> tuple[list[float], Counter[str]]:
    """Post `rate` deliveries a second for `seconds`; the answer times of the 200s, and the outcomes."""
    times: list[float] = []
    outcomes: Counter[str] = Counter()
    limit = aiohttp.TCPConnector(limit=1000)

    async def deliver(session: aiohttp.ClientSession, i: int) -> None:
        body = delivery(i)
        headers = {"Stripe-Signature": sign_t_v1(body, SECRET, int(time.time())), "Content-Type": "application/json"}
        started = time.perf_counter()
        try:
            async with session.post(f"{url}/webhooks/stripe", data=body, headers=headers) as resp:
                await resp.read()
                outcomes[str(resp.status)] += 1
                if resp.status == 200:
                    times.append(time.perf_counter() - started)
        except TimeoutError:
            outcomes["no answer in 10 s"] += 1
        except aiohttp.ClientError as exc:
            outcomes[type(exc).__name__] += 1

    async with aiohttp.ClientSession(connector=limit,
                                     timeout=aiohttp.ClientTimeout(total=PLATFORM_TIMEOUT_S)) as session:
        began = time.perf_counter()
        pending = []
        for i in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, began + i / rate - time.perf_counter()))
            pending.append(asyncio.create_task(deliver(session, i)))
        await asyncio.gather(*pending)
    return times, outcomes


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


async def run_setup(name: str, args: argparse.Namespace) -> dict[str, object]:
    app_id = unique("webhooks")
    events = await backlog(app_id, args.customers, args.partitions)
    with tempfile.TemporaryDirectory() as tmp:
        env = worker_env(app_id, tmp, CONCORD_STRIPE_WEBHOOK_SECRET=SECRET, CONCORD_LOG_LEVEL="warning")
        log = Path(tmp) / "processes.log"
        if name == "one worker":
            procs = [start(["worker", "-l", "warning"], env, log)]
            url = f"http://127.0.0.1:{env['CONCORD_WEB_PORT']}"
        else:
            port = free_port()
            procs = [start(["worker", "-l", "warning", "--roles", "ingest,state,commands"], env, log),
                     start(["webhooks", "-l", "warning"], {**env, "CONCORD_WEB_PORT": str(port)}, log)]
            url = f"http://127.0.0.1:{port}"
        try:
            await wait_ready(url, procs, log)
            await state_started(f"http://127.0.0.1:{env['CONCORD_WEB_PORT']}")
            times, outcomes = await post_all(url, args.rate, args.seconds)
        finally:
            stop(procs)
    ordered = sorted(times) or [0.0]
    centiles = statistics.quantiles(ordered, n=100) if len(ordered) > 1 else ordered * 99
    result = {"backlog_events": events, "rate": args.rate, "seconds": args.seconds,
              "p50_ms": round(centiles[49] * 1000, 1),
              "p95_ms": round(centiles[94] * 1000, 1), "p99_ms": round(centiles[98] * 1000, 1),
              "max_ms": round(ordered[-1] * 1000, 1), "outcomes": dict(outcomes)}
    print(f"  {name}: {result}", flush=True)
    return result


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m concord.bench.webhooks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=6000, help="backlog: typical customers, 15 events each")
    parser.add_argument("--rate", type=float, default=300, help="deliveries a second")
    parser.add_argument("--seconds", type=float, default=20, help="how long deliveries arrive")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--setup", choices=SETUPS, action="append", help="run only this setup (repeatable)")
    args = parser.parse_args(argv)
    os.environ["BENCH_PARTITIONS"] = str(args.partitions)
    print(f"webhooks: {args.rate:g} deliveries/s for {args.seconds:g} s while the state agent works through "
          f"{args.customers * 15:,} events; on {bootstrap()}", flush=True)
    try:
        results = {name: await run_setup(name, args) for name in args.setup or SETUPS}
    finally:
        await delete_run_topics()
    path = write_result("webhooks", {"setups": results})
    print(f"result: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
