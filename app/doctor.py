"""`concord doctor`: a configuration checked against the live platforms and Kafka, before the first run.

    concord doctor [--platform stripe ...] [--sample 5000] [--min-coverage 0.95] [--json] [--strict]

What it checks, each a line of the checklist with what to fix:

* **Settings**: each platform's webhook secret set (its `/webhooks/<platform>` answers 503 without one) and
  at least `STRONG_SECRET_BYTES` long; who may read the API and the console.
* **Kafka**: reachable with the configured security; every Concord topic present with
  `CONCORD_TOPIC_PARTITIONS` partitions (a topic with another count breaks co-partitioning: blocking; a
  missing one is made by the first worker: a warning) and the replication factor.
* **Redis**: reachable (the ledger, the rate limits, the indexes).
* **Each platform**: a token obtained and renewed where tokens expire (Salesforce, NetSuite: a static token
  is a warning); credentials valid (the first page of its customers, as a reconciliation reads it);
  Stripe's webhook endpoint posting to Concord, enabled, subscribed to the event types the codec reads
  (`codecs/stripe.py` `EVENT_TYPES`) on an API version it reads; Zendesk's webhook active, posting JSON to
  Concord, subscribed to the events Concord reads, signed with `CONCORD_ZENDESK_WEBHOOK_SECRET`; each
  Salesforce CDC channel of the bridge answered by the Pub/Sub API (`GetTopic`) as one its user may subscribe to.
* **Identity coverage**: the share of Stripe customers, Zendesk organizations and NetSuite customers that
  carry the Salesforce Account Id (`metadata.salesforce_account_id`, `external_id`, the CRM link field):
  read through the same codec the live path uses, over the first `--sample` records. A record without it
  is invisible to the cross-system rules until identity resolution links it (a warning below
  `--min-coverage`).

Exit status: 0 when nothing blocks (warnings allowed, unless `--strict`); 1 when something does; 2 for a
usage error. The judgments are pure functions of what was read (tested without I/O); `run` does the reading.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any, Final, TextIO
from urllib.parse import urlsplit

import msgspec
from msgspec import Struct

from concord.core.kafka_security import kafka_client_options
from concord.core.settings import Settings, kafka_bootstrap, mask_url
from concord.core.topics import PLATFORMS, topic_names

#: A webhook secret shorter than this is accepted (settings refuse < 16 bytes) but flagged: the platforms'
#: own secrets are longer (Stripe `whsec_` + 32 characters), and an HMAC key should be.
STRONG_SECRET_BYTES: Final = 32
DEFAULT_SAMPLE: Final = 5000
DEFAULT_MIN_COVERAGE: Final = 0.95
TIMEOUT_SECONDS: Final = 15.0

#: Where each platform's records name the Salesforce Account Id, as the operator sees it.
LINK_FIELD: Final = {
    "stripe": "metadata.salesforce_account_id",
    "zendesk": "external_id",
    "netsuite": "{netsuite_crm_link_field}",
}
#: What the coverage counts, per platform: the listing's first part and its name for people.
COVERED: Final = {"stripe": ("customers", "Stripe customers"), "zendesk": ("organizations", "Zendesk organizations"),
                  "netsuite": ("customer", "NetSuite customers")}


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


class Check(Struct, frozen=True, kw_only=True):
    """One line of the checklist."""

    area: str  # "settings", "kafka", "redis", or a platform
    name: str
    status: Status
    detail: str
    fix: str = ""


class Coverage(Struct, frozen=True, kw_only=True):
    """How many of a platform's customer records carry the Salesforce Account Id."""

    platform: str
    listed: int
    linked: int
    complete: bool  # every record was read (False: the first --sample)


class Report(Struct, frozen=True, kw_only=True):
    """`concord doctor --json`."""

    checks: list[Check]
    coverage: list[Coverage]
    blocking: int
    warnings: int


def ok(area: str, name: str, detail: str) -> Check:
    return Check(area=area, name=name, status=Status.OK, detail=detail)


def warn(area: str, name: str, detail: str, fix: str) -> Check:
    return Check(area=area, name=name, status=Status.WARN, detail=detail, fix=fix)


def fail(area: str, name: str, detail: str, fix: str) -> Check:
    return Check(area=area, name=name, status=Status.FAIL, detail=detail, fix=fix)


# --- Judgments (pure) --------------------------------------------------------------------------------------


def judge_settings(settings: Settings, platforms: Sequence[str]) -> list[Check]:
    """Webhook secrets of the platforms that post to Concord, and who may read its API."""
    checks: list[Check] = []
    for platform in platforms:
        if platform == "salesforce":
            continue  # its events arrive through Kafka (the bridge), not a webhook
        secret: str = getattr(settings, f"{platform}_webhook_secret")
        var = f"CONCORD_{platform.upper()}_WEBHOOK_SECRET"
        if not secret:
            checks.append(fail("settings", f"{platform} webhook secret", f"{var} is not set: /webhooks/{platform} "
                               "answers 503 to every delivery", f"set {var} to the secret {platform} signs its "
                               "webhooks with (or its _FILE variant)"))
        elif len(secret.encode()) < STRONG_SECRET_BYTES:
            checks.append(warn("settings", f"{platform} webhook secret", f"{var} is {len(secret.encode())} bytes",
                               f"use a random secret of at least {STRONG_SECRET_BYTES} bytes (the platform's own, "
                               "where it makes one)"))
        else:
            checks.append(ok("settings", f"{platform} webhook secret", f"set, {len(secret.encode())} bytes"))
    if settings.read_token or settings.admin_token or settings.users_file:
        checks.append(ok("settings", "API access", "the API and the console ask for a token"))
    else:
        checks.append(warn("settings", "API access", "no read token, admin token or users file: /api/* and the "
                           "console answer 503 to everyone", "set CONCORD_USERS_FILE (`concord users add`) or "
                           "CONCORD_READ_TOKEN"))
    return checks


def _some(names: Iterable[str], most: int = 3) -> str:
    """The first `most` names, and how many more."""
    listed = list(names)
    more = f" and {len(listed) - most} more" if len(listed) > most else ""
    return ", ".join(listed[:most]) + more


def judge_topics(described: Mapping[str, tuple[int, int] | None], partitions: int, replication: int) -> list[Check]:
    """Concord's topics as the broker describes them: name -> (partitions, replicas) or None when missing."""
    missing = sorted(name for name, shape in described.items() if shape is None)
    wrong = sorted((name, shape[0]) for name, shape in described.items()
                   if shape is not None and shape[0] != partitions)
    thin = sorted((name, shape[1]) for name, shape in described.items()
                  if shape is not None and shape[1] < replication)
    checks: list[Check] = []
    if wrong:
        names = _some(f"{name} ({count})" for name, count in wrong)
        checks.append(fail("kafka", "topic partitions", f"{len(wrong)} topic(s) do not have {partitions} partitions: "
                           f"{names}", "Concord's topics must share one partition count (co-partitioning): set "
                           "CONCORD_TOPIC_PARTITIONS to the topics' count, or start with a new CONCORD_APP_ID and "
                           "CONCORD_TOPIC_PREFIX"))
    if thin:
        names = _some(f"{name} ({count})" for name, count in thin)
        checks.append(warn("kafka", "topic replication", f"{len(thin)} topic(s) have fewer than {replication} "
                           f"replicas: {names}", "a broker's loss can lose their data: raise their replication "
                           "(kafka-reassign-partitions)"))
    if missing:
        checks.append(warn("kafka", "topics", f"{len(missing)} of {len(described)} topics do not exist yet",
                           f"the first `concord worker` creates them with {partitions} partitions; or create "
                           f"them: {_some(missing)}"))
    if not (wrong or missing):
        checks.append(ok("kafka", "topics", f"{len(described)} topics present with {partitions} partitions"))
    return checks


def webhook_target(url: str, platform: str, public_url: str) -> bool:
    """Whether a platform's webhook URL is Concord's `/webhooks/<platform>` (at `public_url` when set)."""
    if public_url:
        return url.rstrip("/") == f"{public_url.rstrip('/')}/webhooks/{platform}"
    return urlsplit(url).path.rstrip("/").endswith(f"/webhooks/{platform}")


def _api_date(version: str) -> str:
    return version.partition(".")[0]


def judge_stripe_endpoints(endpoints: Sequence[Any], public_url: str, required: Iterable[str],
                           oldest: str) -> list[Check]:
    """The Stripe webhook endpoints (`connectors/platform_setup.StripeWebhookEndpoint`) against what Concord reads."""
    where = f"{public_url.rstrip('/')}/webhooks/stripe" if public_url else "Concord's /webhooks/stripe"
    ours = [e for e in endpoints if webhook_target(e.url, "stripe", public_url)]
    if not ours:
        return [fail("stripe", "webhook endpoint", f"no webhook endpoint posts to {where} "
                     f"({len(endpoints)} endpoint(s) in the account)", "add one (Dashboard > Developers > Webhooks, "
                     "or POST /v1/webhook_endpoints) with the event types of `concord doctor --events stripe`; put "
                     "its signing secret in CONCORD_STRIPE_WEBHOOK_SECRET")]
    checks: list[Check] = []
    if len(ours) > 1:
        checks.append(warn("stripe", "webhook endpoint", f"{len(ours)} endpoints post to {where}: each event "
                           "arrives once per endpoint", "keep one (Concord drops the repeats, at twice the work)"))
    needed = list(dict.fromkeys(required))
    for endpoint in ours:
        name = f"webhook endpoint {endpoint.id}"
        if endpoint.status != "enabled":
            checks.append(fail("stripe", name, f"is {endpoint.status}: Stripe sends it nothing",
                               "enable it (Dashboard > Developers > Webhooks)"))
            continue
        enabled = set(endpoint.enabled_events)
        missing = [] if "*" in enabled else [t for t in needed if t not in enabled]
        if missing:
            checks.append(fail("stripe", name, f"not subscribed to {len(missing)} event type(s) Concord reads: "
                               f"{', '.join(missing)}", "add them to the endpoint's events (or select all events)"))
        if endpoint.api_version is None:
            checks.append(warn("stripe", name, "has no API version: events take the account's default, which "
                               "changes when the account upgrades", f"pin a version no older than {oldest}"))
        elif _api_date(endpoint.api_version) < oldest:
            checks.append(fail("stripe", name, f"API version {endpoint.api_version} is older than {oldest}, the "
                               "oldest Concord's codec reads", "create an endpoint on a newer API version"))
        if not missing and endpoint.api_version is not None and _api_date(endpoint.api_version) >= oldest:
            checks.append(ok("stripe", name, f"enabled, posts to {endpoint.url}, "
                             f"{'all events' if '*' in enabled else f'{len(enabled)} event types'}, "
                             f"API version {endpoint.api_version}"))
    return checks


def judge_zendesk_webhooks(webhooks: Sequence[Any], secrets_match: Mapping[str, bool], public_url: str,
                           required: Iterable[str]) -> list[Check]:
    """Zendesk's webhooks (`connectors/platform_setup.ZendeskWebhook`) against what Concord reads; `secrets_match`:
    webhook id -> whether its signing secret is CONCORD_ZENDESK_WEBHOOK_SECRET."""
    where = f"{public_url.rstrip('/')}/webhooks/zendesk" if public_url else "Concord's /webhooks/zendesk"
    ours = [w for w in webhooks if webhook_target(w.endpoint, "zendesk", public_url)]
    if not ours:
        return [fail("zendesk", "webhook", f"no webhook posts to {where} ({len(webhooks)} webhook(s) in the account)",
                     "create one (Admin Center > Apps and integrations > Webhooks) subscribed to the events of "
                     "`concord doctor --events zendesk`, and put its signing secret in CONCORD_ZENDESK_WEBHOOK_SECRET")]
    checks: list[Check] = []
    needed = list(dict.fromkeys(required))
    for webhook in ours:
        name = f"webhook {webhook.id}"
        problems: list[Check] = []
        if webhook.status != "active":
            problems.append(fail("zendesk", name, f"is {webhook.status}: Zendesk sends it nothing", "activate it"))
        if webhook.http_method != "POST" or webhook.request_format != "json":
            problems.append(fail("zendesk", name, f"sends {webhook.http_method} {webhook.request_format}",
                                 "Concord reads POST with a JSON body: edit the webhook"))
        missing = [t for t in needed if t not in webhook.subscriptions]
        if missing:
            problems.append(fail("zendesk", name, f"not subscribed to {len(missing)} event type(s) Concord reads: "
                                 f"{', '.join(missing)}", "add them to the webhook's event subscriptions"))
        if not secrets_match.get(webhook.id, False):
            problems.append(fail("zendesk", name, "signs with another secret than CONCORD_ZENDESK_WEBHOOK_SECRET: "
                                 "Concord refuses its deliveries (401)", "copy the webhook's signing secret (Admin "
                                 "Center > Webhooks > the webhook > Reveal secret) into the setting"))
        checks.extend(problems or [ok("zendesk", name, f"active, posts to {webhook.endpoint}, "
                                      f"{len(webhook.subscriptions)} event types, signed with Concord's secret")])
    return checks


def judge_coverage(coverage: Coverage, min_share: float, link_field: str) -> Check:
    """A platform's identity coverage: a warning below `min_share`."""
    _, people = COVERED[coverage.platform]
    scope = "" if coverage.complete else f" (the first {coverage.listed:,} listed)"
    if coverage.listed == 0:
        return ok(coverage.platform, "identity coverage", f"no {people} yet")
    share = coverage.linked / coverage.listed
    detail = (f"{share:.1%} of {coverage.listed:,} {people}{scope} carry the Salesforce Account Id in {link_field}; "
              f"{coverage.listed - coverage.linked:,} do not")
    if share < min_share:
        return warn(coverage.platform, "identity coverage", detail,
                    f"set {link_field} on them (the Salesforce Account Id): until then Concord links them only by "
                    "identity resolution, and the cross-system rules cannot see them")
    return ok(coverage.platform, "identity coverage", detail)


def report(checks: Sequence[Check], coverage: Sequence[Coverage]) -> Report:
    return Report(checks=list(checks), coverage=list(coverage),
                  blocking=sum(c.status is Status.FAIL for c in checks),
                  warnings=sum(c.status is Status.WARN for c in checks))


_MARK: Final = {Status.OK: "[ ok ]", Status.WARN: "[warn]", Status.FAIL: "[FAIL]"}
AREAS: Final = ("settings", "kafka", "redis", *PLATFORMS)


def render(result: Report) -> list[str]:
    """The checklist, grouped by area, with what to fix under each problem."""
    lines: list[str] = []
    for area in AREAS:
        checks = [c for c in result.checks if c.area == area]
        if not checks:
            continue
        lines.append(area.capitalize() if area in ("settings", "kafka", "redis") else {
            "stripe": "Stripe", "salesforce": "Salesforce", "zendesk": "Zendesk", "netsuite": "NetSuite"}[area])
        for check in checks:
            lines.append(f"  {_MARK[check.status]} {check.name}: {check.detail}")
            if check.fix:
                lines.append(f"         fix: {check.fix}")
    if result.blocking:
        lines.append(f"{result.blocking} problem(s) block a first run, {result.warnings} warning(s). Fix the [FAIL] "
                     "lines and run `concord doctor` again.")
    else:
        lines.append(f"Nothing blocks a first run ({result.warnings} warning(s)). Start with CONCORD_DRY_RUN=true "
                     "for the first week (docs/connect.md).")
    return lines


# --- Reading (I/O) -----------------------------------------------------------------------------------------


class Probe:
    """Reads what the judgments need from Kafka, Redis and the platforms."""

    def __init__(self, settings: Settings, sample: int, progress: Callable[[str], None]) -> None:
        self.settings = settings
        self.sample = sample
        self.progress = progress

    async def kafka(self) -> list[Check]:
        from aiokafka.admin import AIOKafkaAdminClient

        bootstrap = kafka_bootstrap(self.settings)
        names = topic_names(self.settings).all()
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(TIMEOUT_SECONDS * 1000),
                                    **kafka_client_options(self.settings))
        try:
            await asyncio.wait_for(admin.start(), TIMEOUT_SECONDS)
            described = await admin.describe_topics(names)
        except Exception as exc:  # noqa: BLE001 (any failure to reach Kafka is the finding itself)
            return [fail("kafka", "reachable", f"cannot reach {mask_url(self.settings.kafka_url)}: "
                         f"{type(exc).__name__}: {exc}", "is the broker up, CONCORD_KAFKA_URL right, and its security "
                         "settings (docs/kafka-security.md) those of the cluster?")]
        finally:
            await admin.close()
        shapes: dict[str, tuple[int, int] | None] = {name: None for name in names}
        for topic in described:
            parts = topic.get("partitions") or []
            if topic.get("topic") in shapes and not topic.get("error_code") and parts:
                shapes[topic["topic"]] = (len(parts), min(len(p.get("replicas") or []) for p in parts))
        return [ok("kafka", "reachable", f"{mask_url(self.settings.kafka_url)}"),
                *judge_topics(shapes, self.settings.topic_partitions, self.settings.topic_replication_factor)]

    async def redis(self) -> list[Check]:
        from concord.connectors.ledger import redis_client

        client = redis_client(self.settings.redis_url)
        try:
            await asyncio.wait_for(client.ping(), TIMEOUT_SECONDS)
        except Exception as exc:  # noqa: BLE001
            return [fail("redis", "reachable", f"cannot reach {mask_url(self.settings.redis_url)}: "
                         f"{type(exc).__name__}: {exc}", "is Redis up and CONCORD_REDIS_URL right?")]
        finally:
            await client.aclose()
        return [ok("redis", "reachable", mask_url(self.settings.redis_url))]

    async def platform(self, platform: str, min_share: float) -> tuple[list[Check], Coverage | None]:
        """Credentials, webhook setup and identity coverage of one platform."""
        from concord.connectors.base import ConnectorError
        from concord.connectors.snapshots import READERS

        checks = await self._token(platform)
        if any(c.status is Status.FAIL for c in checks):
            return checks, None
        reader = READERS[platform](self.settings)
        try:
            try:
                coverage = await self._coverage(platform, reader)
            except ConnectorError as exc:
                return [*checks, fail(platform, "credentials", str(exc), _CREDENTIALS_FIX[platform])], None
            checks.append(ok(platform, "credentials", "the API answered with the configured credentials"))
            checks.extend(await self._webhooks(platform, reader.http))
            if platform == "salesforce":
                checks.extend(await self._cdc_channels())
            if coverage is not None:
                link = LINK_FIELD[platform].format(netsuite_crm_link_field=self.settings.netsuite_crm_link_field)
                checks.append(judge_coverage(coverage, min_share, link))
            return checks, coverage
        finally:
            await reader.close()

    async def _token(self, platform: str) -> list[Check]:
        """A platform whose tokens expire: one token obtained, then renewed, through its flow."""
        from concord.connectors.base import ConnectorError
        from concord.connectors.tokens import netsuite_token_source, salesforce_token_source

        if platform not in ("salesforce", "netsuite"):
            return []
        source = (salesforce_token_source if platform == "salesforce" else netsuite_token_source)(self.settings)
        flow = getattr(self.settings, f"{platform}_auth_flow")
        if not source.renews:
            return [warn(platform, "token refresh", "a static access token: it expires with the session and then "
                         "halts the platform's commands until it is replaced", "use a flow that renews its tokens "
                         f"(CONCORD_{platform.upper()}_AUTH_FLOW, docs/platform-auth.md)")]
        try:
            first = await source.current()
            renewed = await source.refresh(first.value)
            token = await source.current()
        except ConnectorError as exc:
            return [fail(platform, "token refresh", f"the {flow} flow got no token: {exc}",
                         "check the flow's settings and the platform's side (docs/platform-auth.md)")]
        if renewed == first.value:
            return [fail(platform, "token refresh", f"the {flow} flow renewed nothing: the same token came back",
                         "check the flow's settings (docs/platform-auth.md)")]
        lasts = token.expires_at - token.obtained_at
        return [ok(platform, "token refresh", f"the {flow} flow gave a token and renewed it; a token lasts "
                   f"{lasts:.0f} s and is renewed before it expires")]

    async def _cdc_channels(self) -> list[Check]:
        """Each CDC channel the bridge subscribes to, as Salesforce's Pub/Sub API answers `GetTopic` for its user."""
        import grpc

        from concord.app.bridge import channels
        from concord.connectors.base import ConnectorError
        from concord.connectors.salesforce_pubsub import BridgeConfig, BridgeError, channel, stub, topic_access
        from concord.connectors.tokens import salesforce_token_source

        url = self.settings.salesforce_pubsub_url
        config = BridgeConfig(instance_url=self.settings.salesforce_instance_url,
                              org_id=self.settings.salesforce_org_id)
        checks: list[Check] = []
        grpc_channel = channel(url)
        try:
            token = await salesforce_token_source(self.settings).current()
            for name in channels(self.settings):
                try:
                    access = await topic_access(stub(grpc_channel), name, token, config, TIMEOUT_SECONDS)
                except grpc.aio.AioRpcError as exc:
                    checks.append(fail("salesforce", f"CDC channel {name}", f"the Pub/Sub API at {url} answered "
                                       f"{exc.code().name}: {exc.details()}",
                                       _CDC_FIX.get(exc.code().name, _CDC_FIX[None])))
                    continue
                if access.can_subscribe:
                    checks.append(ok("salesforce", f"CDC channel {name}", f"the bridge's user may subscribe ({url})"))
                else:
                    checks.append(fail("salesforce", f"CDC channel {name}", "the bridge's user may not subscribe",
                                       "give the integration user read access to the entity and the \"Subscribe to "
                                       "Change Data Capture events\" permission"))
        except (ConnectorError, BridgeError) as exc:
            checks.append(fail("salesforce", "CDC channels", str(exc), _CDC_FIX[None]))
        finally:
            await grpc_channel.close()
        return checks

    async def _coverage(self, platform: str, reader: Any) -> Coverage | None:
        """Reads the platform's customers (Salesforce: one page of accounts, for the credentials)."""
        from concord.codecs.config import codec_config
        from concord.codecs.model import CustomerUpserted
        from concord.codecs.registry import decoder
        from concord.connectors.snapshots import Cursor

        cursor: Cursor | None = Cursor()
        if platform not in COVERED:
            await reader.page(Cursor(), None)
            return None
        decode, config = decoder(platform), codec_config(self.settings)
        listed = linked = 0
        while cursor is not None and cursor.part == 0 and listed < self.sample:
            page = await reader.page(cursor, None)
            for record in page.records:
                for event in decode(record.value, config):
                    if isinstance(event, CustomerUpserted) and event.system == platform and not event.deleted:
                        listed += 1
                        linked += isinstance(event.crm_account_id, str) and bool(event.crm_account_id)
            cursor = page.next
            self.progress(f"{platform}: {listed:,} {COVERED[platform][1]} read")
        return Coverage(platform=platform, listed=listed, linked=linked,
                        complete=cursor is None or cursor.part != 0)

    async def _webhooks(self, platform: str, http: Any) -> list[Check]:
        from concord.codecs import stripe as stripe_codec
        from concord.codecs import zendesk as zendesk_codec
        from concord.connectors import platform_setup
        from concord.connectors.base import ConnectorError

        try:
            if platform == "stripe":
                endpoints = await platform_setup.stripe_webhook_endpoints(http)
                return judge_stripe_endpoints(endpoints, self.settings.public_url, stripe_codec.EVENT_TYPES,
                                              stripe_codec.OLDEST_API_VERSION)
            if platform == "zendesk":
                webhooks = await platform_setup.zendesk_webhooks(http)
                matches = {}
                for webhook in webhooks:
                    if webhook_target(webhook.endpoint, "zendesk", self.settings.public_url):
                        secret = await platform_setup.zendesk_signing_secret(http, webhook.id)
                        matches[webhook.id] = bool(secret) and secret == self.settings.zendesk_webhook_secret
                return judge_zendesk_webhooks(webhooks, matches, self.settings.public_url,
                                              zendesk_codec.WEBHOOK_EVENT_TYPES)
        except ConnectorError as exc:
            return [fail(platform, "webhooks", f"could not read the webhook setup: {exc}",
                         "give the API user the right to read webhooks (Stripe: a secret key or a restricted key "
                         "with Webhook Endpoints read; Zendesk: an admin's API token)")]
        return []


_CDC_FIX: Final[dict[Any, str]] = {
    None: "check CONCORD_SALESFORCE_PUBSUB_URL and CONCORD_SALESFORCE_CDC_CHANNELS (docs/ingestion.md, the bridge)",
    "NOT_FOUND": "select the entity for Change Data Capture (Setup > Integrations > Change Data Capture), or fix "
                 "CONCORD_SALESFORCE_CDC_CHANNELS",
    "UNAUTHENTICATED": "the Pub/Sub API refused the token: check the Salesforce flow and CONCORD_SALESFORCE_ORG_ID",
    "DEADLINE_EXCEEDED": "the Pub/Sub API did not answer: is CONCORD_SALESFORCE_PUBSUB_URL reachable from here?",
    "UNAVAILABLE": "the Pub/Sub API did not answer: is CONCORD_SALESFORCE_PUBSUB_URL reachable from here?",
}

_CREDENTIALS_FIX: Final = {
    "stripe": "set CONCORD_STRIPE_API_KEY to a secret key (sk_...) or a restricted key (rk_...) of the account",
    "salesforce": "check CONCORD_SALESFORCE_INSTANCE_URL and the Salesforce credentials (docs/connect.md)",
    "zendesk": "check CONCORD_ZENDESK_URL, CONCORD_ZENDESK_API_EMAIL and CONCORD_ZENDESK_API_TOKEN",
    "netsuite": "check CONCORD_NETSUITE_URL and the NetSuite credentials (docs/connect.md)",
}


async def diagnose(settings: Settings, platforms: Sequence[str], sample: int, min_share: float,
                   progress: Callable[[str], None]) -> Report:
    """Every check, the platforms read side by side."""
    probe = Probe(settings, sample, progress)
    checks = judge_settings(settings, platforms)
    kafka, redis = await asyncio.gather(probe.kafka(), probe.redis())
    per_platform = await asyncio.gather(*(probe.platform(p, min_share) for p in platforms))
    checks += kafka + redis
    coverage: list[Coverage] = []
    for platform_checks, platform_coverage in per_platform:
        checks += platform_checks
        if platform_coverage is not None:
            coverage.append(platform_coverage)
    return report(checks, coverage)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--platform", action="append", choices=PLATFORMS, default=[],
                        help="check only this platform (repeatable; default: all four)")
    parser.add_argument("--sample", type=int, default=DEFAULT_SAMPLE,
                        help=f"customer records read per platform for the identity coverage (default {DEFAULT_SAMPLE})")
    parser.add_argument("--min-coverage", type=float, default=DEFAULT_MIN_COVERAGE,
                        help="share of customer records that should carry the Salesforce Account Id; below it is "
                        f"a warning (default {DEFAULT_MIN_COVERAGE})")
    parser.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--events", choices=("stripe", "zendesk"),
                        help="print the event types to subscribe the platform's webhook to, one per line, and exit")


def run(settings: Settings, args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    if args.events:
        from concord.codecs import stripe as stripe_codec
        from concord.codecs import zendesk as zendesk_codec

        types = stripe_codec.EVENT_TYPES if args.events == "stripe" else zendesk_codec.WEBHOOK_EVENT_TYPES
        print("\n".join(types), file=out)
        return 0
    if args.sample < 1 or not 0.0 <= args.min_coverage <= 1.0:
        print("concord doctor: --sample must be at least 1 and --min-coverage between 0 and 1", file=err)
        return 2
    platforms = list(dict.fromkeys(args.platform)) or list(PLATFORMS)
    live = err.isatty() and not args.json

    def progress(line: str) -> None:
        if live:
            print(f"\r{line:<70}", end="", file=err, flush=True)

    if not args.json:
        print(f"concord doctor: {settings.app_id} on {mask_url(settings.kafka_url)}, {', '.join(platforms)}",
              file=out, flush=True)
    result = asyncio.run(diagnose(settings, platforms, args.sample, args.min_coverage, progress))
    if live:
        print("\r" + " " * 70 + "\r", end="", file=err, flush=True)
    if args.json:
        print(msgspec.json.encode(result).decode(), file=out)
    else:
        print("\n".join(render(result)), file=out)
    return 1 if result.blocking or (args.strict and result.warnings) else 0
