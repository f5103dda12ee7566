"""Outgoing notifications: what is notified, the Slack-compatible body, its signature, and delivery against a
real local HTTP receiver that fails first (retries, nothing lost, nothing twice, never waiting in `offer`)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from concord.connectors.notify import (
    Notice,
    Notifier,
    body_of,
    delivery_id,
    headers_of,
    notice_of,
    payload,
)
from concord.connectors.policy import RetryPolicy
from concord.core.messages import Transition
from concord.core.metrics import REGISTRY

SECRET = "notify-secret-0123456789"
SLACK_TOKEN = "XXXXsecretwebhooktoken"


def transition(status: str = "open", previous: str | None = "pending", severity: str = "high", **kw: Any) -> Transition:
    fields: dict[str, Any] = dict(
        fingerprint="a1b2c3d4e5f6a7b8c9d0", rule="D01", customer_key="cust_42", subject="org_7",
        status=status, previous=previous, severity=severity, at=1_700_000_100_000, since=1_700_000_000_000,
        first_seen=1_700_000_100_000, last_seen=1_700_000_100_000, summary="support entitlement active after "
        "the subscription was canceled", action="support.suspend_entitlement",
    )
    fields.update(kw)
    return Transition(**fields)


def test_escalations_and_new_findings_of_high_severity_are_notified_nothing_else() -> None:
    assert notice_of(transition("escalated", "commanded", "low"), "high") == Notice(
        "escalated", transition("escalated", "commanded", "low"))
    assert notice_of(transition(severity="high"), "high") is not None
    assert notice_of(transition(severity="critical"), "high") is not None
    assert notice_of(transition(severity="medium"), "high") is None
    assert notice_of(transition(severity="medium"), "medium") is not None
    # Only the report itself: not the command that follows it, nor the resolution.
    assert notice_of(transition("commanded", "open"), "low") is None
    assert notice_of(transition("resolved", "commanded", resolution="corrected"), "low") is None


def test_the_body_is_slack_json_naming_rule_customer_summary_and_a_link() -> None:
    notice = Notice("reported", transition())
    body = payload(notice, "https://concord.example.com/")
    assert set(body) == {"text", "blocks"}
    assert body["text"].startswith("New high finding: D01 for cust_42: support entitlement active")
    text = json.dumps(body["blocks"])
    for expected in ("D01", "cust_42", "high", "support.suspend_entitlement",
                     "<https://concord.example.com/api/drift/a1b2c3d4e5f6a7b8c9d0|Open the finding>"):
        assert expected in text
    assert [block["type"] for block in body["blocks"]] == ["section", "section", "context"]
    # Without a base URL the path is shown (a person knows where the API answers).
    assert "`/api/drift/a1b2c3d4e5f6a7b8c9d0`" in json.dumps(payload(notice)["blocks"])
    escalated = payload(Notice("escalated", transition("escalated", "commanded", note="still there after 3 "
                                                                                      "correction(s)")))
    assert escalated["text"].startswith("Finding escalated: D01 for cust_42")
    assert "_still there after 3 correction(s)_" in json.dumps(escalated["blocks"])


def test_platform_text_cannot_add_links_or_mentions() -> None:
    hostile = transition(customer_key="c&<!channel>", summary="<https://evil.example|click> & <@U123>")
    text = json.dumps(payload(Notice("reported", hostile)))
    assert "<!channel>" not in text and "<https://evil" not in text and "<@U123>" not in text
    assert "&lt;!channel&gt;" in text and "&lt;https://evil.example|click&gt; &amp; &lt;@U123&gt;" in text
    long = payload(Notice("reported", transition(summary="x" * 10_000)))
    assert len(long["blocks"][0]["text"]["text"]) < 3000  # Slack's limit for a section


def test_the_signature_is_hmac_sha256_over_time_dot_body() -> None:
    notice = Notice("reported", transition())
    body = body_of(notice)
    headers = headers_of(notice, body, SECRET, 1_700_000_200)
    expected = hmac.new(SECRET.encode(), b"1700000200." + body, hashlib.sha256).hexdigest()
    assert headers["X-Concord-Signature"] == f"t=1700000200,v1={expected}"
    assert headers["X-Concord-Event"] == "drift.reported"
    assert headers["X-Concord-Delivery"] == delivery_id(notice.transition)
    assert "X-Concord-Signature" not in headers_of(notice, body, "", 1_700_000_200)


def test_one_delivery_id_per_finding_status_and_occurrence() -> None:
    opened = transition()
    assert delivery_id(opened) == delivery_id(msgspec.structs.replace(opened, at=opened.at + 5000))  # processed again
    assert delivery_id(opened) != delivery_id(transition("escalated", "commanded"))
    assert delivery_id(opened) != delivery_id(msgspec.structs.replace(opened, since=opened.since + 1))  # came back


class FakeRedis:
    """SET NX EX and DEL, as the notifier uses them; `down` makes every call fail as an unreachable Redis."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.down = False

    async def set(self, key: str, value: bytes, nx: bool = False, ex: int | None = None) -> bool | None:
        if self.down:
            raise ConnectionError("redis down")
        if nx and key in self.data:
            return None
        self.data[key] = value
        return True

    async def delete(self, key: str) -> int:
        if self.down:
            raise ConnectionError("redis down")
        return 1 if self.data.pop(key, None) is not None else 0


class Receiver:
    """A webhook receiver that answers each request with the next of `answers` (then 200), recording them."""

    def __init__(self, answers: list[int | str]) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[dict[str, str], bytes, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append((dict(request.headers), body, request.path_qs))
        answer = self.answers.pop(0) if self.answers else 200
        if answer == "slow":
            await asyncio.sleep(2)
            answer = 200
        headers = {"Retry-After": "0"} if answer == 429 else {}
        return web.Response(status=int(answer), text="ok" if answer == 200 else "no", headers=headers)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/services/T0/B0/" + SLACK_TOKEN, self.handle)
        return app


def sent(outcome: str) -> float:
    return REGISTRY.get_sample_value("concord_notifications_total", {"outcome": outcome}) or 0.0


def notifier(server: TestServer, redis: FakeRedis | None, attempts: int = 5, timeout: float = 1.0,
             queue_size: int = 1000) -> tuple[Notifier, list[float]]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    url = str(server.make_url("/services/T0/B0/" + SLACK_TOKEN)) + "?channel=ops"
    policy = RetryPolicy(max_attempts=attempts, backoff_seconds=1.0, backoff_max_seconds=60.0)
    return Notifier(url, secret=SECRET, base_url="https://concord.example.com", policy=policy, redis=redis,
                    prefix="t", timeout=timeout, queue_size=queue_size, sleep=sleep, rng=random.Random(1)), slept


def assert_signed(headers: dict[str, str], body: bytes) -> None:
    stamp, digest = (part.split("=", 1)[1] for part in headers["X-Concord-Signature"].split(","))
    assert digest == hmac.new(SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()


async def test_failures_are_retried_until_accepted_then_the_same_finding_is_not_sent_again() -> None:
    receiver = Receiver([503, 429, "slow", 200])
    redis = FakeRedis()
    async with TestServer(receiver.app()) as server:
        sender, slept = notifier(server, redis)
        before = sent("sent"), sent("duplicate")
        notice = Notice("escalated", transition("escalated", "commanded"))
        assert await sender.deliver(notice)
        assert len(receiver.requests) == 4  # 503, 429, a timeout, then accepted
        assert len(slept) == 3 and all(0 <= s <= 60 for s in slept)
        bodies = {body for _, body, _ in receiver.requests}
        assert len(bodies) == 1  # every attempt sends the same body
        for headers, body, path in receiver.requests:
            assert_signed(headers, body)
            assert headers["X-Concord-Delivery"] == delivery_id(notice.transition)
            assert path == f"/services/T0/B0/{SLACK_TOKEN}?channel=ops"  # the URL's path and query, as given
        assert json.loads(bodies.pop())["text"].startswith("Finding escalated: D01 for cust_42")
        assert list(redis.data.values()) == [b"sent"]
        # The state worker processes the event again after a crash: published again, not sent again.
        assert not await sender.deliver(notice)
        assert len(receiver.requests) == 4
        assert (sent("sent"), sent("duplicate")) == (before[0] + 1, before[1] + 1)
        await sender.close()


async def test_a_refusal_or_the_last_failure_gives_up_without_showing_the_url(
        caplog: pytest.LogCaptureFixture) -> None:
    receiver = Receiver([400, 500, 500, 500])
    redis = FakeRedis()
    async with TestServer(receiver.app()) as server:
        sender, _ = notifier(server, redis, attempts=3)
        failed = sent("failed")
        with caplog.at_level(logging.ERROR, logger="concord.notify"):
            assert not await sender.deliver(Notice("reported", transition()))  # 400: not retried
            assert len(receiver.requests) == 1
            assert not await sender.deliver(Notice("escalated", transition("escalated", "commanded")))
        assert len(receiver.requests) == 4  # 500 three times: the budget
        assert sent("failed") == failed + 2
        assert redis.data == {}  # released: the next publication of these findings may try again
        assert "not delivered after 1 attempt(s)" in caplog.text and "not delivered after 3 attempt(s)" in caplog.text
        assert SLACK_TOKEN not in caplog.text and "channel=ops" not in caplog.text
        await sender.close()


async def test_offer_never_waits_and_nothing_is_lost_or_sent_twice_while_the_receiver_fails() -> None:
    receiver = Receiver([500, 502, 503, 500, 500])  # down for a while, then up
    async with TestServer(receiver.app()) as server:
        sender, _ = notifier(server, FakeRedis(), attempts=10)
        task = asyncio.ensure_future(sender.run())
        findings = [transition(fingerprint=f"fp{i:02d}", customer_key=f"cust_{i}") for i in range(20)]
        for t in findings:
            sender.offer(t)
            sender.offer(msgspec.structs.replace(t, status="commanded", previous="open"))  # not notified
            sender.offer(t)  # published twice (an event processed again)
        await sender.close(grace=10)
        task.cancel()
        deliveries = [headers["X-Concord-Delivery"] for headers, _, _ in receiver.requests]
        first = delivery_id(findings[0])
        assert deliveries[:6] == [first] * 6  # refused five times, then accepted
        assert deliveries[5:] == [delivery_id(t) for t in findings]  # each once, in order


async def test_a_full_queue_drops_and_counts_and_redis_down_still_sends() -> None:
    receiver = Receiver([])
    redis = FakeRedis()
    redis.down = True
    async with TestServer(receiver.app()) as server:
        sender, _ = notifier(server, redis, queue_size=2)
        dropped = sent("dropped")
        for i in range(3):
            sender.offer(transition(fingerprint=f"fp{i}"))
        assert sender.waiting == 2 and sent("dropped") == dropped + 1
        task = asyncio.ensure_future(sender.run())
        await sender.close(grace=5)
        task.cancel()
        assert len(receiver.requests) == 2
