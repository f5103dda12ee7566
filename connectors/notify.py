"""Outgoing notifications: escalations and new findings of high severity, posted to a webhook.

The state agent offers every lifecycle transition it publishes (`Notifier.offer`, which never waits);
two are notified:

* a finding `escalated` to a person (its corrections failed, or could not be judged), whatever its severity;
* a finding newly reported (`pending` -> `open`) of `CONCORD_NOTIFY_MIN_SEVERITY` (high) or above.

The body is Slack-compatible JSON (`{"text": ..., "blocks": [...]}`: a Slack incoming webhook shows it
as it is; any other receiver reads the same fields) naming the rule, customer, severity, summary and a
link to the finding (`<CONCORD_NOTIFY_LINK_BASE_URL>/api/drift/<fingerprint>`). Text from the platforms
(a summary quotes customer data) is escaped for Slack's markup, so it cannot add links or mentions.
Headers: `X-Concord-Event` (`drift.escalated`, `drift.reported`), `X-Concord-Delivery` (the same id
on every attempt of one notification: a receiver can drop repeats), and with
`CONCORD_NOTIFY_WEBHOOK_SECRET` `X-Concord-Signature: t=<unix>,v1=<hex>`, HMAC-SHA256 over
`<t>.<body>` (core/signing.py; `t` is the time of the attempt, so a late retry passes a receiver's
freshness check).

Delivery, one notification at a time from a bounded queue, by a task of its own: the state agent's
stream never waits for the receiver. Timeouts, connection errors, 5xx and 429 are retried with the
command executor's policy (connectors/policy.py: full-jitter backoff, `Retry-After` honoured up to
the backoff's cap), up to `CONCORD_NOTIFY_MAX_ATTEMPTS`; any other refusal, or the last failure, is
logged with the finding's fingerprint and counted (`concord_notifications_total{outcome="failed"}`).
A queue full (the receiver down for long while findings pour in) drops what does not fit, counted
as `dropped`; the findings themselves stay on `/api/drift` and in the alerts (docs/alerts.md).

Once per (fingerprint, status, occurrence): a state worker that processes an event again after a
crash or a rebalance publishes the same transitions again. Each delivery claims its id in Redis
(`<prefix>:notified:<delivery id>`, SET NX) before it is sent, keeps it 7 days once sent and
releases it when given up. A drift that comes back after it resolved is a new occurrence (a new
`since`), notified again. Redis unreachable: sent anyway (a repeat is better than silence).
What is queued in memory when a worker is killed is lost (a stop sends what it can for a few seconds).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
from msgspec import Struct
from yarl import URL

from concord.connectors.base import ConnectorError
from concord.connectors.drift_index import SEVERITIES
from concord.connectors.executor import REDIS_ERRORS
from concord.connectors.http import HttpClient
from concord.connectors.policy import Retry, RetryPolicy, decide
from concord.core import metrics
from concord.core.messages import Transition
from concord.core.settings import Settings, env_var
from concord.core.signing import sign_t_v1

log = logging.getLogger("concord.notify")

ESCALATED: Final = "escalated"
REPORTED: Final = "reported"
SIGNATURE_HEADER: Final = "X-Concord-Signature"
#: Notifications waiting to be sent; beyond it the new ones are dropped (counted, logged).
QUEUE_SIZE: Final = 1000
BACKOFF_SECONDS: Final = 1.0
BACKOFF_MAX_SECONDS: Final = 60.0
TIMEOUT_SECONDS: Final = 10.0
#: How long a delivery id stays claimed once sent: far longer than a worker takes to process an event again.
SENT_TTL_SECONDS: Final = 7 * 86_400
#: How long a worker stopping keeps sending what is queued.
STOP_GRACE_SECONDS: Final = 5.0
# Slack's limits: 3,000 characters in a section's text, 2,000 in a field.
_MAX_SUMMARY: Final = 1500
_MAX_NOTE: Final = 500
_MAX_FIELD: Final = 300

E_FAILED: Final = ("notification of finding %s (%s %s, customer %s) not delivered after %d attempt(s): %s. The "
                   "finding is on /api/drift; check CONCORD_NOTIFY_WEBHOOK_URL and the receiver")
E_DROPPED: Final = ("notification queue full (%d waiting: the receiver is slow or down): notifications are dropped "
                    "until it drains (concord_notifications_total{outcome=\"dropped\"}); the findings stay on "
                    "/api/drift")


class Notice(Struct, frozen=True):
    """A transition to notify, and why: `escalated` or `reported` (a new finding of high severity)."""

    why: str
    transition: Transition


def notice_of(t: Transition, min_severity: str) -> Notice | None:
    """The notice of `t`, or None when it is not notified."""
    if t.status == ESCALATED:
        return Notice(ESCALATED, t)
    if t.status == "open" and t.previous == "pending" and _rank(t.severity) >= _rank(min_severity):
        return Notice(REPORTED, t)
    return None


def _rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)  # unknown: the highest


def delivery_id(t: Transition) -> str:
    """The id of the notification of `t`: the same for the same finding, status and occurrence (`since`)."""
    return hashlib.sha256(f"{t.fingerprint}|{t.status}|{t.since}".encode()).hexdigest()[:24]


def link(fingerprint: str, base_url: str) -> str:
    """Where a person reads the finding: the API's URL under `base_url`, or its path when there is none."""
    return f"{base_url.rstrip('/')}/api/drift/{fingerprint}"


def _escape(text: str, limit: int) -> str:
    """`text` for Slack's markup (`&`, `<`, `>` escaped: no link, mention or command can be smuggled in), cut."""
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds") if ms else "-"


def payload(notice: Notice, base_url: str = "") -> dict[str, Any]:
    """The Slack-compatible body of `notice`: `text` (the notification's one line) and `blocks`."""
    t = notice.transition
    rule, customer = _escape(t.rule, _MAX_FIELD), _escape(t.customer_key, _MAX_FIELD)
    severity = _escape(t.severity, _MAX_FIELD)
    summary = _escape(t.summary or t.subject, _MAX_SUMMARY)
    headline = (f"Finding escalated: {rule} for {customer}" if notice.why == ESCALATED
                else f"New {severity} finding: {rule} for {customer}")
    where = link(t.fingerprint, base_url)
    shown = f"<{where}|Open the finding>" if base_url else f"`{where}`"
    detail = f"*{headline}*\n{summary}"
    if t.note:
        detail += f"\n_{_escape(t.note, _MAX_NOTE)}_"
    return {
        "text": f"{headline}: {summary}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": detail}},
            {"type": "section", "fields": [
                {"type": "mrkdwn", "text": f"*Rule*\n{rule}"},
                {"type": "mrkdwn", "text": f"*Severity*\n{severity}"},
                {"type": "mrkdwn", "text": f"*Customer*\n{customer}"},
                {"type": "mrkdwn", "text": f"*Status*\n{_escape(t.status, _MAX_FIELD)} "
                                           f"(was {_escape(t.previous or '-', _MAX_FIELD)})"},
                {"type": "mrkdwn", "text": f"*Since*\n{_when(t.since)}"},
                {"type": "mrkdwn", "text": f"*Action*\n{_escape(t.action, _MAX_FIELD)}"
                                           f"{' (dry run)' if t.dry_run else ''}"},
            ]},
            {"type": "context", "elements": [
                {"type": "mrkdwn", "text": f"{shown} · fingerprint `{t.fingerprint}`"},
            ]},
        ],
    }


def body_of(notice: Notice, base_url: str = "") -> bytes:
    """The bytes posted (and signed) for `notice`."""
    return msgspec.json.encode(payload(notice, base_url))


def headers_of(notice: Notice, body: bytes, secret: str, now: int) -> dict[str, str]:
    """The request headers of one attempt at `now` (unix seconds): event, delivery id and the signature."""
    headers = {"Content-Type": "application/json", "User-Agent": "concord-notify",
               "X-Concord-Event": f"drift.{notice.why}", "X-Concord-Delivery": delivery_id(notice.transition)}
    if secret:
        headers[SIGNATURE_HEADER] = sign_t_v1(body, secret, now)
    return headers


def _no_error_text(body: bytes) -> str:
    """Receivers have no error format of their own: the error names the status and the start of the body."""
    return ""


class Notifier:
    """Sends the notices offered to it, one at a time, from a bounded queue (see the module docstring)."""

    def __init__(self, url: str, *, secret: str = "", min_severity: str = "high", base_url: str = "",
                 policy: RetryPolicy, redis: Any | None = None, prefix: str = "concord",
                 timeout: float = TIMEOUT_SECONDS, queue_size: int = QUEUE_SIZE,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 rng: random.Random | None = None) -> None:
        target = URL(url)
        # The URL's path and query (a credential for Slack) are never logged: errors name the host only.
        self._http = HttpClient("notify", str(target.origin()), url_variable=env_var("notify_webhook_url"),
                                timeout=timeout, headers={}, error_reader=_no_error_text, secret_path=True)
        self._path = target.raw_path or "/"
        self._params = dict(target.query) or None
        self.secret = secret
        self.min_severity = min_severity
        self.base_url = base_url
        self.policy = policy
        self._redis = redis
        self._prefix = prefix
        self._queue: asyncio.Queue[Notice] = asyncio.Queue(maxsize=queue_size)
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._dropping = False
        self._sending = False
        self._redis_warned = False

    @classmethod
    def from_settings(cls, settings: Settings, redis: Any | None) -> Notifier:
        """The notifier `CONCORD_NOTIFY_*` configure (the caller checks that a URL is set)."""
        policy = RetryPolicy(max_attempts=settings.notify_max_attempts, backoff_seconds=BACKOFF_SECONDS,
                             backoff_max_seconds=BACKOFF_MAX_SECONDS)
        return cls(settings.notify_webhook_url, secret=settings.notify_webhook_secret,
                   min_severity=settings.notify_min_severity, base_url=settings.notify_link_base_url,
                   policy=policy, redis=redis, prefix=settings.topic_prefix)

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def offer(self, t: Transition) -> None:
        """Queue `t` if it is notified; never waits (a full queue drops it, counted and logged)."""
        notice = notice_of(t, self.min_severity)
        if notice is None:
            return
        try:
            self._queue.put_nowait(notice)
        except asyncio.QueueFull:
            metrics.notifications.labels("dropped").inc()
            if not self._dropping:
                log.error(E_DROPPED, self._queue.qsize())
            self._dropping = True
            return
        self._dropping = False

    async def run(self) -> None:
        """Send what is offered, until cancelled."""
        while True:
            notice = await self._queue.get()
            self._sending = True
            try:
                await self.deliver(notice)
            except Exception:  # a bug must not end the notifications of every later finding
                log.exception("notification of finding %s failed", notice.transition.fingerprint)
                metrics.notifications.labels("failed").inc()
            finally:
                self._sending = False
                self._queue.task_done()

    async def deliver(self, notice: Notice) -> bool:
        """Send `notice` (retrying what is worth it) unless it was sent already; True when delivered now."""
        t = notice.transition
        key = f"{self._prefix}:notified:{delivery_id(t)}"
        claim_seconds = int(self.policy.max_attempts * (self._http.timeout + BACKOFF_MAX_SECONDS)) + 60
        if not await self._redis_call(lambda redis: redis.set(key, b"sending", nx=True, ex=claim_seconds), True):
            metrics.notifications.labels("duplicate").inc()
            return False
        body = body_of(notice, self.base_url)
        attempt = 0
        while True:
            attempt += 1
            headers = headers_of(notice, body, self.secret, int(self._clock()))
            try:
                await self._http.request("POST", self._path, content=body, params=self._params, headers=headers)
            except ConnectorError as error:
                decision = decide(self.policy, error, attempt, self._rng)
                if isinstance(decision, Retry):
                    await self._sleep(min(decision.delay, self.policy.backoff_max_seconds))
                    continue
                log.error(E_FAILED, t.fingerprint, t.rule, t.status, t.customer_key, attempt, error)
                metrics.notifications.labels("failed").inc()
                await self._redis_call(lambda redis: redis.delete(key), None)
                return False
            metrics.notifications.labels("sent").inc()
            await self._redis_call(lambda redis: redis.set(key, b"sent", ex=SENT_TTL_SECONDS), None)
            return True

    async def _redis_call(self, call: Callable[[Any], Awaitable[Any]], otherwise: Any) -> Any:
        """`call(redis)`, or `otherwise` when there is no Redis or it cannot be reached."""
        if self._redis is None:
            return otherwise
        try:
            result = await call(self._redis)
        except REDIS_ERRORS as exc:
            if not self._redis_warned:
                log.warning("notifications: Redis unreachable (%s: %s): sent without the check for repeats",
                            type(exc).__name__, exc)
                self._redis_warned = True
            return otherwise
        self._redis_warned = False
        return result

    async def close(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Give what is queued `grace` seconds to go out, then close the HTTP session."""
        if self._queue.qsize() or self._sending:
            try:
                async with asyncio.timeout(grace):
                    await self._queue.join()
            except TimeoutError:
                log.warning("stopping with %d notification(s) not sent", self._queue.qsize())
        await self._http.close()
