"""Helpers for integration tests: real Kafka and Redis from infra/, workers as separate processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from msgspec import Struct

from concord.app.signatures import sign_t_v1, sign_zendesk
from concord.bench.common import free_port
from concord.core.settings import Settings, env_var

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Infra:
    """Where the test session's Kafka and Redis answer."""

    kafka_port: int
    redis_port: int

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"


#: The read token every test worker is given (`/api/*` refuses requests without it).
READ_TOKEN = "integration-read-token"


def unique_settings(infra: Infra, data_dir: Path, partitions: int = 4) -> Settings:
    """Settings with an app id and topic prefix of their own, so tests never share state."""
    tag = f"t{uuid.uuid4().hex[:10]}"
    return Settings(
        kafka_url=f"kafka://{infra.bootstrap}",
        redis_url=infra.redis_url,
        app_id=tag,
        topic_prefix=tag,
        topic_partitions=partitions,
        web_port=free_port(),
        # The broker's minimum: a restarted worker takes over a SIGKILLed one's partitions quickly.
        kafka_session_timeout=6.0,
        data_dir=str(data_dir),
        read_token=READ_TOKEN,
        # Judgments wait for the platforms' watermarks; an idle partition counts as read up to 2 s ago.
        watermark_idle_seconds=2.0,
    )


async def delete_app_topics(bootstrap: str, tag: str) -> int:
    """Delete the topics of the app `tag` (its own and Faust's: `<tag>.*`, `<tag>-*`); how many went.

    A development broker reused across many test runs otherwise keeps every run's topics, and its
    heap (512 MiB) runs out after a few thousand partitions.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith((f"{tag}.", f"{tag}-"))]
        if names:
            await admin.delete_topics(names)
        return len(names)
    finally:
        await admin.close()


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment variables that reproduce `settings` in a child process."""
    return {env_var(k): str(v) for k, v in msgspec.structs.asdict(settings).items()}


async def concord_cli(settings: Settings, *args: str, timeout: float = 300.0) -> tuple[int, str]:
    """`concord ARGS` as a process with `settings` (the caller's loop keeps serving meanwhile): its exit status
    and its output (standard output and error together)."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CONCORD_")},
           **settings_env(settings), "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "concord.app.cli", *args, cwd=REPO, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


@dataclass
class WorkerProcess:
    """A worker running in its own process, so a test can SIGKILL it like a crash would."""

    argv: list[str]
    settings: Settings
    log_path: Path
    extra_env: Mapping[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.web_port}"

    def start(self) -> WorkerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONCORD_")}
        env.update(settings_env(self.settings))
        env.update(self.extra_env)
        env["PYTHONUNBUFFERED"] = "1"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.close()
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no final commit — a crash."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not exit in time."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    async def wait_ready(self, timeout: float = 90.0) -> None:
        """Until `/readyz` answers 200; fails with the worker's log if it died or timed out."""
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    async with session.get(f"{self.base_url}/readyz",
                                           timeout=aiohttp.ClientTimeout(total=5)) as resp:
                        if resp.status == 200:
                            return
                except (TimeoutError, aiohttp.ClientError):
                    pass
                await asyncio.sleep(0.3)
        raise AssertionError(f"worker not ready after {timeout:.0f} s:\n{self.log_tail()}")

    async def get_text(self, path: str) -> str:
        """GET `path` (with the read token), asserting a 200; the body as text."""
        headers = {"Authorization": f"Bearer {self.settings.read_token}"} if self.settings.read_token else {}
        async with aiohttp.ClientSession(headers=headers) as session, session.get(f"{self.base_url}{path}") as resp:
            assert resp.status == 200, f"GET {path} -> {resp.status}: {await resp.text()}"
            return await resp.text()

    async def get_json(self, path: str) -> object:
        """GET `path` as a reader would (the worker's read token), asserting a 200; the body as JSON."""
        return json.loads(await self.get_text(path))


def webhooks_process(settings: Settings, log_path: Path) -> WorkerProcess:
    """`concord webhooks` (the ingress without Faust) as a process; `wait_ready` waits for its `/readyz`."""
    return WorkerProcess([sys.executable, "-m", "concord.app.cli", "webhooks", "-l", "info"], settings, log_path)


#: The header that carries a `t=..,v1=..` signature, per platform (Zendesk signs in two headers).
SIGNATURE_HEADER = {"stripe": "Stripe-Signature", "netsuite": "X-Concord-Signature"}


def signed(platform: str, body: bytes, secret: str, at: int) -> dict[str, str]:
    """The headers that sign `body` as `platform` does (Stripe, Zendesk, our NetSuite script) at time `at`."""
    if platform == "zendesk":
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
        return {"X-Zendesk-Webhook-Signature": sign_zendesk(body, secret, stamp),
                "X-Zendesk-Webhook-Signature-Timestamp": stamp}
    return {SIGNATURE_HEADER[platform]: sign_t_v1(body, secret, at)}


def python_worker(script: Path | str, settings: Settings, log_path: Path, *args: str,
                  extra_env: Mapping[str, str] | None = None) -> WorkerProcess:
    """A WorkerProcess running `python SCRIPT ARGS...` (a test app or `-m concord.app.cli worker`)."""
    return WorkerProcess([sys.executable, str(script), *args], settings, log_path, dict(extra_env or {}))


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]],
                  headers: list[tuple[str, bytes]] | None = None) -> None:
    """Produce records with acks=all and wait for every acknowledgement."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=value, key=key, headers=headers) for key, value in records]
        await producer.flush()
        for fut in futures:
            await fut
    finally:
        await producer.stop()


async def consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 60.0) -> list:
    """Read `topic` from the beginning until `expected` records arrived (or time out)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    out: list = []
    try:
        deadline = time.monotonic() + timeout
        while len(out) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                out.extend(records)
    finally:
        await consumer.stop()
    return out


class Forwarded(Struct, frozen=True):
    """One event of a record of the identity or canonical topic (an envelope holds many), as a record of its own."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


def forwarded(records: list[Any]) -> list[Forwarded]:
    """The events of `records`, envelopes opened (agents/envelopes.py): each keyed as a record of its own would be
    (by its local id on the identity topic, its customer key on the canonical one)."""
    out = []
    for record in records:
        body = orjson.loads(record.value)
        if isinstance(body, dict) and body.get("kind") == "batch":
            field = "local_customer" if record.topic.endswith(".identity") else "customer_key"
            out += [Forwarded(record.topic, record.partition, record.offset, event[field].encode(),
                              orjson.dumps(event)) for event in body["events"]]
        else:
            out.append(Forwarded(record.topic, record.partition, record.offset, record.key, record.value))
    return out


async def consume_events(bootstrap: str, topic: str, expected: int, timeout: float = 60.0) -> list[Forwarded]:
    """Read the identity or canonical `topic` from the beginning until `expected` events arrived (or time out)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    out: list[Forwarded] = []
    try:
        deadline = time.monotonic() + timeout
        while len(out) < expected and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                out += forwarded(records)
    finally:
        await consumer.stop()
    return out


async def wait_for_event(bootstrap: str, topic: str, match: Callable[[Forwarded], bool],
                         timeout: float = 60.0) -> Forwarded:
    """Read the identity or canonical `topic` from the beginning until an event satisfies `match`."""
    found: list[Forwarded] = []

    def matching(record: Any) -> bool:
        found.extend(e for e in forwarded([record]) if match(e))
        return bool(found)

    await wait_for_record(bootstrap, topic, matching, timeout)
    return found[0]


async def wait_committed(bootstrap: str, group: str, topic: str, timeout: float = 60.0) -> None:
    """Until `group` has committed every record of `topic` (all partitions at their end offset)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await admin.start()
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = await consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout
        committed = {}
        while time.monotonic() < deadline:
            committed = await admin.list_consumer_group_offsets(group)
            if all(ends[tp] == 0 or (committed.get(tp) is not None and committed[tp].offset >= ends[tp])
                   for tp in partitions):
                return
            await asyncio.sleep(0.5)
        at = {tp.partition: (committed[tp].offset if tp in committed else None) for tp in partitions}
        raise AssertionError(f"group {group} did not commit {topic} to {ends} within {timeout:.0f} s: "
                             f"committed per partition {at}")
    finally:
        await consumer.stop()
        await admin.close()


async def wait_for_record(bootstrap: str, topic: str, match: Callable[[Any], bool], timeout: float = 60.0) -> Any:
    """Read `topic` from the beginning until a record satisfies `match`; fail after `timeout` s."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    seen = 0
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    seen += 1
                    if match(record):
                        return record
    finally:
        await consumer.stop()
    raise AssertionError(f"no matching record on {topic} after {timeout:.0f} s ({seen} records read)")


async def read_all(bootstrap: str, topic: str, timeout: float = 60.0) -> list[Any]:
    """Every record of `topic` now: read from the beginning up to each partition's end offset."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} to its end {ends} within {timeout:.0f} s")
            for records in (await consumer.getmany(timeout_ms=500)).values():
                out.extend(records)
        return out
    finally:
        await consumer.stop()
