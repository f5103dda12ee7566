"""Concord's settings: one typed Struct, read from `CONCORD_*` environment variables.

This module is the single source of truth for configuration; `docs/configuration.md` is generated
from it (`concord config --markdown`), and a test fails when the two differ.
"""

from __future__ import annotations

import functools
import os
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final

import msgspec
from msgspec import Meta, Struct

ENV_PREFIX: Final = "CONCORD_"

E_BAD_SETTING: Final = (
    "{var}={value!r} is not valid: {problem}. Fix the environment variable "
    "(see docs/configuration.md for every setting and its default)."
)

E_BAD_SECRET: Final = (
    "{var} is not valid: {problem}. The value is a secret and is not shown; fix the environment variable "
    "(see docs/configuration.md)."
)
E_SHORT_SECRET: Final = (
    "{source} is too short: a secret must be at least {min_bytes} bytes once surrounding whitespace is "
    "stripped (the value is not shown). Set a longer secret, or unset it to disable what it protects."
)
E_SECRET_TWICE: Final = "{var} and {file_var} are both set: set the secret one way only (the variable or the file)"
E_SECRET_FILE: Final = "{file_var}={path!r}: cannot read the secret file for {var} ({reason})"
E_AUTH_INCOMPLETE: Final = ("{flow_var}={flow} needs {missing}: set them, or choose another flow "
                            "(docs/platform-auth.md)")
E_AUTH_STATIC_TOO: Final = ("{token_var} is set but {flow_var}={flow}: Concord gets its own tokens in that flow; "
                            "unset {token_var}, or set {flow_var}=static to use it")
E_AUTH_MY_DOMAIN: Final = ("CONCORD_SALESFORCE_AUTH_FLOW=client_credentials is served at the org's My Domain only, not "
                           "at {url}: set CONCORD_SALESFORCE_LOGIN_URL to https://<my-domain>.my.salesforce.com")
E_AUTH_NETSUITE_URL: Final = ("CONCORD_NETSUITE_AUTH_FLOW=client_credentials needs the token endpoint: set "
                              "CONCORD_NETSUITE_URL (the endpoint is <it>/services/rest/auth/oauth2/v1/token) or "
                              "CONCORD_NETSUITE_TOKEN_URL")

MASK: Final = "********"
SECRET_MIN_BYTES: Final = 16
SECRET_FILE_SUFFIX: Final = "_FILE"

# `scheme://user:password@` (or `scheme://token@`): the userinfo of a URL anywhere in a text. The password
# runs to the last `@` before whitespace, so a password with an unescaped `@` or `/` is masked whole.
_URL_USERINFO: Final = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?:(?P<user>[^\s:/?#@]*):\S*|[^\s:/?#@]+)@"
)
# A text that is one URL (a setting's value): its password runs to the last `@`, whitespace included
# (a bad value with a space in its password must not leak the part after the space).
_ONE_URL_USERINFO: Final = re.compile(
    r"^(?P<scheme>\s*[A-Za-z][A-Za-z0-9+.\-]*://)(?:(?P<user>[^\s:/?#@]*):.*|[^:/?#@]+)@", re.DOTALL
)


def mask_url(text: str) -> str:
    """`text` with the credentials of every URL in it masked: `redis://:********@host:6379/0`,
    `https://user:********@host/`; a userinfo without a password (often a token) is masked whole.

    Use it wherever a setting's value, or a message that may quote one, is printed or logged.
    """

    def mask(match: re.Match[str]) -> str:
        user = match.group("user")
        return f"{match.group('scheme')}{'' if user is None else user + ':'}{MASK}@"

    return _URL_USERINFO.sub(mask, _ONE_URL_USERINFO.sub(mask, text, count=1))


_URL_KAFKA = r"^kafka://[^,/\s]+:\d+(,[^,/\s]+:\d+)*$"
_URL_REDIS = r"^rediss?://\S+$"
# An http(s) URL, or empty; no `|`, `<` or `>`, which would end a link in Slack's markup.
_URL_NOTIFY = r"^(https?://[^\s|<>]+)?$"


def _secret(description: str) -> Meta:
    """Meta of a secret setting: masked in `concord config` and never logged."""
    return Meta(description=description, extra={"secret": True})


class Settings(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every knob of a Concord process. Environment variable = `CONCORD_` + upper-case field name."""

    kafka_url: Annotated[
        str,
        Meta(
            pattern=_URL_KAFKA,
            description="Kafka bootstrap servers as `kafka://host:port[,host:port...]`.",
        ),
    ] = "kafka://127.0.0.1:9092"
    kafka_session_timeout: Annotated[
        float,
        Meta(
            ge=6.0,
            le=300.0,
            description="Seconds without a heartbeat before Kafka declares a worker dead and gives its "
            "partitions to the others. Lower fails over faster after a crash; too low evicts workers "
            "that pause (GC, slow I/O).",
        ),
    ] = 30.0
    kafka_security_protocol: Annotated[
        str,
        Meta(
            pattern=r"^(PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL)$",
            description="How every Kafka client connects: `PLAINTEXT` (a local or private broker), `SSL` (TLS; "
            "with a client certificate for brokers that authenticate by certificate), `SASL_SSL` (user and "
            "password over TLS: Confluent Cloud, Amazon MSK, Aiven) or `SASL_PLAINTEXT` (SASL without TLS: "
            "the password crosses the network readable unless the mechanism is SCRAM). docs/kafka-security.md.",
        ),
    ] = "PLAINTEXT"
    kafka_sasl_mechanism: Annotated[
        str,
        Meta(
            pattern=r"^(PLAIN|SCRAM-SHA-256|SCRAM-SHA-512)$",
            description="SASL mechanism when the protocol is `SASL_SSL` or `SASL_PLAINTEXT`: `PLAIN` (Confluent "
            "Cloud's API key and secret), `SCRAM-SHA-512` (Amazon MSK, Aiven, the local broker's SASL "
            "listener) or `SCRAM-SHA-256`.",
        ),
    ] = "PLAIN"
    kafka_sasl_username: Annotated[
        str,
        Meta(description="SASL user name (Confluent Cloud: the API key). Needed with a `SASL_*` protocol, refused "
             "without one."),
    ] = ""
    kafka_sasl_password: Annotated[
        str, _secret("SASL password (Confluent Cloud: the API secret). Needed with a `SASL_*` protocol, refused "
                     "without one.")
    ] = ""
    kafka_ssl_cafile: Annotated[
        str,
        Meta(description="PEM file of the certificate authorities that sign the brokers' certificates, with "
             "`SSL` or `SASL_SSL`. Empty: the system's trusted authorities (enough for Confluent Cloud and Amazon "
             "MSK; Aiven and a private CA need the file)."),
    ] = ""
    kafka_ssl_certfile: Annotated[
        str,
        Meta(description="PEM file of this client's certificate (and its chain), for brokers that authenticate "
             "clients by certificate (Amazon MSK's mutual TLS, Aiven's access certificate). Needs "
             "`CONCORD_KAFKA_SSL_KEYFILE`."),
    ] = ""
    kafka_ssl_keyfile: Annotated[
        str,
        Meta(description="PEM file of the private key of `CONCORD_KAFKA_SSL_CERTFILE`."),
    ] = ""
    kafka_ssl_key_password: Annotated[
        str, _secret("Password of `CONCORD_KAFKA_SSL_KEYFILE` when the key is encrypted. Empty: the key is not "
                     "encrypted (an encrypted key then fails at start, it is never prompted for).")
    ] = ""
    kafka_ssl_check_hostname: Annotated[
        bool,
        Meta(description="Check that a broker's certificate names the host connected to. Turn off only for a "
             "broker reached through an address its certificate does not name (a tunnel); the certificate "
             "is still verified against the authorities."),
    ] = True
    redis_url: Annotated[
        str,
        Meta(
            pattern=_URL_REDIS,
            description="Redis for the command ledger, rate limits, the global drift and search indexes and "
            "the customers' timelines.",
        ),
    ] = "redis://127.0.0.1:6379/0"
    app_id: Annotated[
        str,
        Meta(
            pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
            description="Faust application id: the consumer group and the prefix of changelog topics. "
            "Workers with the same id share the work.",
        ),
    ] = "concord"
    topic_prefix: Annotated[
        str,
        Meta(
            pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
            description="Prefix of every Concord topic (`<prefix>.raw.stripe`, `<prefix>.canonical`, ...).",
        ),
    ] = "concord"
    topic_partitions: Annotated[
        int,
        Meta(
            ge=1,
            le=1024,
            description="Partitions of each topic Concord creates. The upper bound on worker processes "
            "that share the work; it cannot shrink later without a new app id.",
        ),
    ] = 8
    topic_replication_factor: Annotated[
        int,
        Meta(
            ge=1,
            le=16,
            description="Replication factor of the topics Concord creates (1 on a one-node broker; "
            "3 in production so a broker loss loses no changelog).",
        ),
    ] = 1
    web_host: Annotated[
        str, Meta(min_length=1, description="Interface the worker's HTTP server binds to.")
    ] = "127.0.0.1"
    web_port: Annotated[
        int, Meta(ge=1, le=65535, description="Port of the worker's HTTP server (views, webhooks, metrics).")
    ] = 6066
    data_dir: Annotated[
        str,
        Meta(
            min_length=1,
            description="Folder for the worker's local table data (the changelog in Kafka is the truth).",
        ),
    ] = ".concord-data"
    log_level: Annotated[
        str,
        Meta(
            pattern=r"^(debug|info|warning|error|critical)$",
            description="Log level of Concord's own loggers; Kafka client loggers stay at warning "
            "unless this is `debug` (debug logging costs ~12% of a worker's CPU).",
        ),
    ] = "info"
    event_loop: Annotated[
        str,
        Meta(
            pattern=r"^(uvloop|asyncio)$",
            description="Event loop of the worker, `concord webhooks` and the sandbox: `uvloop` (libuv, in C) "
            "or `asyncio` (the standard library's; docs/benchmarks.md compares them). uvloop chosen but not "
            "installed (a platform it is not built for): asyncio's loop, with a warning at start. The loop that "
            "runs is logged at start.",
        ),
    ] = "uvloop"

    stripe_webhook_secret: Annotated[
        str, _secret("Stripe endpoint signing secret (`whsec_...`); `/webhooks/stripe` answers 503 while unset.")
    ] = ""
    zendesk_webhook_secret: Annotated[
        str, _secret("Zendesk webhook signing secret; `/webhooks/zendesk` answers 503 while unset.")
    ] = ""
    netsuite_webhook_secret: Annotated[
        str,
        _secret("Shared secret of the NetSuite User Event script (docs/netsuite-suitescript.md); "
                "`/webhooks/netsuite` answers 503 while unset."),
    ] = ""
    webhook_tolerance_seconds: Annotated[
        int,
        Meta(ge=1, le=3600, description="Signed webhooks older or newer than this are refused (replay "
             "protection). Stripe's own libraries use 300."),
    ] = 300
    webhook_max_body_bytes: Annotated[
        int,
        Meta(ge=1024, le=64 * 1024 * 1024, description="Webhook bodies larger than this are refused with 413."),
    ] = 1_048_576
    webhook_read_timeout_seconds: Annotated[
        float,
        Meta(gt=0, le=300, description="A webhook body not fully received within this many seconds is "
             "refused with 408 (slow senders)."),
    ] = 10.0
    webhook_max_concurrent_reads: Annotated[
        int,
        Meta(ge=1, le=100_000, description="Webhook bodies read at the same time, per worker; when all are "
             "taken a request is answered 503 with `Retry-After: 1`."),
    ] = 64
    salesforce_plan_field: Annotated[
        str, Meta(min_length=1, description="Opportunity field that holds the plan sold (custom in most orgs).")
    ] = "Plan__c"
    zendesk_status_field: Annotated[
        str, Meta(min_length=1, description="Zendesk organization field key with the support entitlement status.")
    ] = "support_status"
    zendesk_tier_field: Annotated[
        str, Meta(min_length=1, description="Zendesk organization field key with the support tier.")
    ] = "support_tier"
    zendesk_end_date_field: Annotated[
        str, Meta(min_length=1, description="Zendesk organization field key with the entitlement end date.")
    ] = "support_end_date"
    # The CRM link of an ERP customer is a custom field, not its externalId: NetSuite keeps externalId unique
    # per record type, so a merged-away account's ERP customer could not be re-pointed (D13) while the winner's
    # own customer held the id; 9 of 18 D13 drifts of a seeded run ended escalated for that alone.
    netsuite_crm_link_field: Annotated[
        str, Meta(pattern=r"^custentity[a-z0-9_]+$",
                  description="NetSuite custom entity field (script id) holding a customer's CRM (Salesforce) "
                  "account id. Concord writes the link there, not in externalId: NetSuite keeps externalId "
                  "unique, so a merged-away account's ERP customer could not be re-pointed while the winner's "
                  "own customer held the id (9 of 18 D13 drifts of a seeded run ended escalated). A customer "
                  "with the field empty is linked by its externalId.")
    ] = "custentity_sf_account_id"
    consumer_fetch_wait_ms: Annotated[
        int,
        Meta(ge=1, le=10_000, description="How long the broker may hold a worker's fetch when the partitions it "
             "asks for have nothing new (Faust's fixed value is 1500). A fetch for idle partitions held that long "
             "delays the next fetch of the busy ones; shorter costs more fetch requests to an idle broker."),
    ] = 100
    forward_linger_ms: Annotated[
        float,
        Meta(ge=0, le=1000, description="How long the ingest and identity agents wait for more records before "
             "forwarding what they read as envelopes (one Kafka record per destination partition; "
             "agents/envelopes.py). Adds at most this much latency to each hop; 0 forwards each batch Kafka "
             "hands over at once."),
    ] = 5.0
    forward_batch_max: Annotated[
        int,
        Meta(ge=1, le=100_000, description="Records the ingest and identity agents read at most before "
             "forwarding them as envelopes, however short the linger: bounds an envelope's size and what "
             "is read again after a crash."),
    ] = 500
    identity_park_limit: Annotated[
        int,
        Meta(ge=1, le=100_000, description="Events kept per unresolved platform id while its link to a CRM "
             "account is unknown; beyond it they go to the ingest dead-letter topic (never dropped)."),
    ] = 1000
    identity_park_max_ids: Annotated[
        int,
        Meta(ge=1, le=10_000_000, description="Unresolved platform ids that may have parked events on one "
             "worker (its partitions of the identity topic). An event that would park for one more id goes "
             "to the ingest dead-letter topic (`identity_park_full`, never dropped); ids already parked keep "
             "parking up to identity_park_limit. At most this times identity_park_limit events are parked."),
    ] = 100_000
    identity_park_ttl_seconds: Annotated[
        float,
        Meta(ge=1, le=366 * 86_400, description="A parked event waiting longer than this for its link goes to "
             "the ingest dead-letter topic (`identity_park_expired`): when its id's next event arrives, or "
             "by the worker's sweep (every tenth of this, at most every 10 minutes)."),
    ] = 7 * 86_400.0
    rules_file: Annotated[
        str,
        Meta(description="JSON file overriding drift rule settings (grace, tolerances, severity, action, "
             "dry-run), the plan-to-tier map and field ownership (docs/rules.md). Empty: built-in defaults."),
    ] = ""
    dry_run: Annotated[
        bool, Meta(description="Detect and report, command nothing: every rule in dry-run whatever the rules file "
                   "says, and no quote-to-cash saga provisions a deal (D10 reports them). The safe first week "
                   "against a real company's systems: compare the findings with what people know, then turn it off.")
    ] = False
    admin_token: Annotated[
        str, _secret("Bearer token for admin actions (accept a finding). Admin endpoints answer 503 "
                     "while unset.")
    ] = ""
    read_token: Annotated[
        str, _secret("Bearer token for reading customer data through `/api/*` (findings, customers, ledger "
                     "entries) and the board (`/`, `/events`; a browser signs in with it at `/login`); the admin "
                     "token reads too. `/api/*` answers 503 while neither is set.")
    ] = ""
    webhook_port: Annotated[
        int, Meta(ge=0, le=65535, description="Port of a second, public listener that serves only `/webhooks/*` "
                  "and `/healthz` (expose this one to the internet). 0: webhooks are served on the worker port.")
    ] = 0
    webhook_host: Annotated[
        str, Meta(min_length=1, description="Interface the public webhook listener binds to (with "
                  "`CONCORD_WEBHOOK_PORT`).")
    ] = "0.0.0.0"
    public_url: Annotated[
        str, Meta(pattern=r"^(https?://[^\s?#]+)?$",
                  description="Base URL at which the platforms reach Concord's webhooks "
                  "(`https://concord.example.com`: Stripe posts to `<public_url>/webhooks/stripe`). `concord doctor` "
                  "checks that each platform's webhook points there; empty: it accepts any URL ending in "
                  "`/webhooks/<platform>`.")
    ] = ""
    metrics_require_token: Annotated[
        bool, Meta(description="`/metrics` needs the read token (Prometheus' `authorization` scrape setting). "
                   "Off: open on the internal listener, which only the monitoring network should reach.")
    ] = False
    session_secret: Annotated[
        str, _secret("Key that signs the board's login sessions (cookies, `app/sessions.py`). Unset: derived from "
                     "the read token. Either way the key also depends on the read token, so changing the read token "
                     "(or this) ends every session.")
    ] = ""
    session_max_age_seconds: Annotated[
        int, Meta(ge=60, le=30 * 86_400, description="How long a board login lasts; then the browser asks for the "
                  "token again. Shorter limits what a cookie left on a shared machine can read.")
    ] = 8 * 3600
    session_cookie_secure: Annotated[
        bool, Meta(description="Mark the board's session cookie `Secure`, so a browser sends it over HTTPS only: set "
                   "it when people reach the board through a TLS-terminating proxy (a browser would not send it "
                   "to a plain-HTTP board).")
    ] = False
    users_file: Annotated[
        str, Meta(description="JSON or TOML file of the console's users: each a name, a role (`viewer` reads, "
                  "`operator` also acts) and the scrypt hash of a token (docs/console.md \"Users and roles\"; "
                  "`concord users add NAME --role operator` adds one). Read again when it changes. Empty: only the "
                  "read and admin tokens.")
    ] = ""
    drift_changes_kept: Annotated[
        int, Meta(ge=100, le=10_000_000, description="Finding changes kept in Redis (the stream "
                  "`<prefix>:drift:changes`, about 300 bytes each) for the board's live updates: a board that "
                  "reconnects within this many changes misses none; one away longer reloads its page.")
    ] = 10_000
    state_closed_invoices: Annotated[
        int, Meta(ge=1, le=1000, description="Closed invoices kept per customer and system (open ones are all "
                  "kept): bounds a customer's state as its history grows.")
    ] = 12
    state_payments: Annotated[
        int, Meta(ge=1, le=1000, description="Payments, refunds and credit memos kept per customer and system.")
    ] = 12
    state_closed_cases: Annotated[
        int, Meta(ge=1, le=1000, description="Solved or closed support cases kept per customer.")
    ] = 10
    state_cache_size: Annotated[
        int, Meta(ge=0, le=10_000_000, description="Decoded customer states a worker keeps in memory beside "
                  "the table's encoded ones (most recently used): saves decoding hot customers on every event.")
    ] = 10_000
    watermark_idle_seconds: Annotated[
        float, Meta(ge=1.0, le=3600.0, description="A raw partition caught up with its log and quiet for this "
                    "long counts as read up to the clock less this much (its watermark advances with the clock): "
                    "the allowance for events still in flight at the platform.")
    ] = 30.0
    platform_behind_seconds: Annotated[
        float, Meta(ge=1.0, le=86400.0, description="A platform whose watermark trails the clock by more than "
                    "this is reported behind (`/api/health`, a log line, the lag metric).")
    ] = 120.0
    deadline_scan_seconds: Annotated[
        float, Meta(ge=0.1, le=60.0, description="How often a worker looks for grace windows and correction "
                    "timeouts that expired without a new event (SLA rules fire within this much of their due time).")
    ] = 1.0
    saga_enabled: Annotated[
        bool, Meta(description="Run the quote-to-cash saga (docs/saga.md): a closed-won deal billing has no "
                   "subscription of is provisioned by Concord. Off: D10 reports such deals for a person.")
    ] = True
    saga_version: Annotated[
        int, Meta(ge=1, le=2, description="The saga definition new sagas start on (1: without the ERP sales "
                  "order). A saga in flight finishes on the version it started with.")
    ] = 2
    saga_start_within_seconds: Annotated[
        float, Meta(gt=0, le=31_536_000, description="A deal first seen won longer ago than this starts no saga by "
                    "itself: found at rest (a reconciliation, a company connected for the first time) its subscription "
                    "may not be known yet. D10 reports it if billing has none after its grace, and its saga.resume "
                    "starts the saga.")
    ] = 3600.0
    saga_step_timeout_seconds: Annotated[
        float, Meta(gt=0, le=86_400, description="How long a saga step waits for its command's result before the "
                    "same command is sent again (the ledger makes it take effect once). Longer than a platform's "
                    "usual outage, or a step pauses while it is merely slow.")
    ] = 300.0
    saga_step_retries: Annotated[
        int, Meta(ge=0, le=20, description="How many times a step without a result is sent again before the saga "
                  "pauses (`timeout`) and D10 reports the deal.")
    ] = 2
    timeline_entries: Annotated[
        int, Meta(ge=1, le=10_000, description="Checkpoints kept in each customer's timeline (events in, "
                  "findings, commands, their results; `/api/customers/{key}/timeline`), the newest: about 320 "
                  "bytes each in Redis (65 KB for a customer with a full timeline).")
    ] = 200
    timeline_days: Annotated[
        float, Meta(gt=0, le=3650, description="A customer's timeline is dropped from Redis this long after its "
                    "newest checkpoint (the audit topic keeps every checkpoint for its retention).")
    ] = 30.0

    # Platform APIs (connectors/). Empty URL: commands for that platform are dead-lettered as
    # unconfigured instead of being sent anywhere.
    stripe_api_url: Annotated[
        str, Meta(pattern=r"^(https?://\S+)?$", description="Stripe API base URL.")
    ] = "https://api.stripe.com"
    stripe_api_key: Annotated[str, _secret("Stripe secret API key (`sk_...` or a restricted `rk_...`).")] = ""
    salesforce_instance_url: Annotated[
        str, Meta(pattern=r"^(https?://\S+)?$",
                  description="Salesforce instance URL (`https://<my-domain>.my.salesforce.com`).")
    ] = ""
    salesforce_access_token: Annotated[
        str, _secret("Salesforce OAuth 2.0 access token, for `CONCORD_SALESFORCE_AUTH_FLOW=static`: it expires with "
                     "the org's session timeout and a new one needs a restart (prefer `jwt_bearer`).")
    ] = ""
    salesforce_auth_flow: Annotated[
        str, Meta(pattern=r"^(static|jwt_bearer|client_credentials)$",
                  description="How Concord gets its Salesforce access token (docs/platform-auth.md): `static` "
                  "(`CONCORD_SALESFORCE_ACCESS_TOKEN`, as given), `jwt_bearer` (OAuth 2.0 JWT bearer flow: a "
                  "connected app's consumer key, a username and the private key of the app's certificate) or "
                  "`client_credentials` (OAuth 2.0 client credentials flow: the app's consumer key and secret, at "
                  "the org's My Domain). The two flows fetch a new token before the old one expires, and once more "
                  "when Salesforce answers 401 `INVALID_SESSION_ID`.")
    ] = "static"
    salesforce_client_id: Annotated[
        str, Meta(description="Consumer key of the connected app (`jwt_bearer`: the JWT's `iss`; "
                  "`client_credentials`: `client_id`).")
    ] = ""
    salesforce_username: Annotated[
        str, Meta(description="Username of the integration user the JWT bearer flow acts as (the JWT's `sub`); the "
                  "user must be pre-authorized for the connected app (profile or permission set).")
    ] = ""
    salesforce_private_key: Annotated[
        str, _secret("PEM private key (RSA) of the certificate uploaded to the connected app; signs the JWT bearer "
                     "flow's assertions (RS256). Read again from its file at each token request, so a rotated key "
                     "needs no restart.")
    ] = ""
    salesforce_client_secret: Annotated[
        str, _secret("Consumer secret of the connected app, for the client credentials flow. Read again from its "
                     "file at each token request, so a rotated secret needs no restart.")
    ] = ""
    salesforce_login_url: Annotated[
        str, Meta(pattern=r"^https?://[^\s/]+/?$",
                  description="Where Salesforce tokens are requested (`<this>/services/oauth2/token`), and the JWT's "
                  "`aud`: `https://login.salesforce.com`, `https://test.salesforce.com` for a sandbox org, or the "
                  "org's My Domain (`https://<my-domain>.my.salesforce.com`), which the client credentials flow "
                  "requires. The token answer names the instance: it is the API base when "
                  "`CONCORD_SALESFORCE_INSTANCE_URL` is empty.")
    ] = "https://login.salesforce.com"
    salesforce_session_seconds: Annotated[
        float, Meta(ge=1, le=86_400, description="How long a Salesforce access token lives: the org's session "
                    "timeout (Setup > Session Settings, or the connected app's own policy). Salesforce's token answer "
                    "does not say, so Concord counts from the token request.")
    ] = 7200.0
    salesforce_token_refresh_margin_seconds: Annotated[
        float, Meta(ge=0, le=3600, description="A Salesforce token is renewed this long before it expires (at most "
                    "half its lifetime before), so no request goes out with a token about to die.")
    ] = 300.0
    salesforce_api_version: Annotated[
        str, Meta(pattern=r"^v\d+\.\d$", description="Salesforce REST API version used in request paths.")
    ] = "v60.0"
    zendesk_url: Annotated[
        str, Meta(pattern=r"^(https?://\S+)?$", description="Zendesk base URL (`https://<subdomain>.zendesk.com`).")
    ] = ""
    zendesk_api_email: Annotated[
        str, Meta(description="Zendesk agent email for API token authentication (`<email>/token`).")
    ] = ""
    zendesk_api_token: Annotated[str, _secret("Zendesk API token.")] = ""
    netsuite_url: Annotated[
        str, Meta(pattern=r"^(https?://\S+)?$",
                  description="NetSuite REST base URL (`https://<account>.suitetalk.api.netsuite.com`).")
    ] = ""
    netsuite_access_token: Annotated[
        str, _secret("NetSuite OAuth 2.0 access token, for `CONCORD_NETSUITE_AUTH_FLOW=static`: it expires (60 "
                     "minutes) and a new one needs a restart (prefer `client_credentials`).")
    ] = ""
    netsuite_auth_flow: Annotated[
        str, Meta(pattern=r"^(static|client_credentials)$",
                  description="How Concord gets its NetSuite access token (docs/platform-auth.md): `static` "
                  "(`CONCORD_NETSUITE_ACCESS_TOKEN`, as given) or `client_credentials` (OAuth 2.0 machine-to-machine: "
                  "the integration record's client id, and a JWT signed with the private key of the certificate "
                  "mapped to it). A new token is fetched before the old one expires, and once more on a 401.")
    ] = "static"
    netsuite_client_id: Annotated[
        str, Meta(description="Client id (consumer key) of the NetSuite integration record (the assertion's `iss`).")
    ] = ""
    netsuite_certificate_id: Annotated[
        str, Meta(description="Certificate ID NetSuite gave the certificate mapped to the integration (Setup > "
                  "Integration > OAuth 2.0 Client Credentials (M2M) Setup); the assertion's `kid`.")
    ] = ""
    netsuite_private_key: Annotated[
        str, _secret("PEM private key (RSA) of the certificate mapped to the integration; signs the client "
                     "assertion (PS256). Read again from its file at each token request, so a rotated key needs no "
                     "restart.")
    ] = ""
    netsuite_token_url: Annotated[
        str, Meta(pattern=r"^(https?://\S+)?$",
                  description="NetSuite's OAuth 2.0 token endpoint, and the assertion's `aud`. Empty: "
                  "`<CONCORD_NETSUITE_URL>/services/rest/auth/oauth2/v1/token`.")
    ] = ""
    netsuite_scopes: Annotated[
        str, Meta(pattern=r"^(rest_webservices|restlets|suite_analytics)"
                  r"(,(rest_webservices|restlets|suite_analytics))*$",
                  description="Comma-separated scopes asked for in the client credentials flow (the integration "
                  "record must allow them): Concord calls REST web services only.")
    ] = "rest_webservices"
    netsuite_token_refresh_margin_seconds: Annotated[
        float, Meta(ge=0, le=3600, description="A NetSuite token is renewed this long before it expires (at most "
                    "half its lifetime before).")
    ] = 300.0
    connector_timeout_seconds: Annotated[
        float, Meta(ge=0.1, le=300.0, description="Timeout of one platform API call; a timeout is retried "
                    "(the idempotency key or upsert makes the retry safe).")
    ] = 10.0
    command_max_attempts: Annotated[
        int, Meta(ge=1, le=100, description="Attempts of a command on transient errors before it is "
                  "dead-lettered to `<prefix>.dlq.commands`.")
    ] = 6
    command_backoff_seconds: Annotated[
        float, Meta(ge=0.0, le=600.0, description="First retry delay; doubles per attempt with full jitter "
                    "(a platform's `Retry-After` wins when longer).")
    ] = 0.5
    command_backoff_max_seconds: Annotated[
        float, Meta(ge=0.0, le=3600.0, description="Longest delay between two attempts of a command.")
    ] = 30.0
    breaker_failure_threshold: Annotated[
        int, Meta(ge=1, le=1000, description="Consecutive transient failures that open a platform's circuit "
                  "breaker: calls to it stop for `breaker_reset_seconds`, then one probe call decides.")
    ] = 5
    breaker_reset_seconds: Annotated[
        float, Meta(ge=0.1, le=3600.0, description="How long an open circuit breaker waits before a probe call.")
    ] = 15.0
    stripe_rate_limit: Annotated[
        float, Meta(gt=0, le=10_000, description="Requests per second to Stripe, shared by all workers "
                    "(token bucket in Redis). Stripe allows 100/s live, 25/s in test mode.")
    ] = 25.0
    salesforce_rate_limit: Annotated[
        float, Meta(gt=0, le=10_000, description="Requests per second to Salesforce, shared by all workers.")
    ] = 20.0
    salesforce_reread_window_seconds: Annotated[
        float, Meta(ge=0, le=300, description="Salesforce gap events naming one record received within one "
                    "window of this length make one re-read of the record (`crm.fetch_record`), sent when the "
                    "window has closed (0: one re-read per gap event).")
    ] = 2.0
    zendesk_reread_window_seconds: Annotated[
        float, Meta(ge=0, le=300, description="Zendesk organization webhooks received within one window of "
                    "this length make one re-read of the organization, sent when the window has closed (0: one "
                    "re-read per webhook).")
    ] = 2.0
    zendesk_rate_limit: Annotated[
        float, Meta(gt=0, le=10_000, description="Requests per second to Zendesk, shared by all workers "
                    "(Zendesk plans allow 200-2500 per minute).")
    ] = 10.0
    netsuite_rate_limit: Annotated[
        float, Meta(gt=0, le=10_000, description="Requests per second to NetSuite, shared by all workers.")
    ] = 5.0
    stripe_reconcile_every_seconds: Annotated[
        float, Meta(ge=0, le=30 * 86400, description="How often a worker with the commands role lists every Stripe "
                    "record and feeds it through the live path (docs/reconcile.md); 0: never (the default; "
                    "`concord reconcile` by hand or from cron instead). A pass holds judgments of the rules reading "
                    "the platform until its records are applied, and shares the platform's rate limit.")
    ] = 0.0
    salesforce_reconcile_every_seconds: Annotated[
        float, Meta(ge=0, le=30 * 86400, description="How often Salesforce's Accounts and Opportunities are listed "
                    "and fed through the live path; 0: never (the default).")
    ] = 0.0
    zendesk_reconcile_every_seconds: Annotated[
        float, Meta(ge=0, le=30 * 86400, description="How often Zendesk's organizations and tickets are exported "
                    "and fed through the live path; 0: never (the default).")
    ] = 0.0
    netsuite_reconcile_every_seconds: Annotated[
        float, Meta(ge=0, le=30 * 86400, description="How often NetSuite's customers and transactions are listed "
                    "(SuiteQL) and fed through the live path; 0: never (the default).")
    ] = 0.0
    reconcile_full_every: Annotated[
        int, Meta(ge=1, le=1000, description="Every this many scheduled reconciliations of Salesforce, Zendesk and "
                  "NetSuite one is a full listing; the others list only what changed since the previous one began "
                  "(less 10 minutes). A full listing is what finds records deleted without an event. 1: always "
                  "full. Stripe, whose lists filter by creation only, is always listed whole.")
    ] = 4
    command_ledger_ttl_seconds: Annotated[
        int, Meta(ge=60, le=90 * 86400, description="How long the Redis ledger remembers a command id "
                  "(its outcome and attempts). `concord replay` skips dead letters older than this (the ledger "
                  "could not tell a stale correction from a due one) unless `--include-expired`.")
    ] = 14 * 86400

    # Outgoing notifications (connectors/notify.py): escalations and new findings of high severity, to a
    # Slack incoming webhook or any receiver of the same JSON.
    notify_webhook_url: Annotated[
        str, Meta(pattern=_URL_NOTIFY, extra={"secret": True},
                  description="Where escalations and new findings of `CONCORD_NOTIFY_MIN_SEVERITY` or above are "
                  "posted (Slack-compatible JSON, docs/alerts.md): a Slack incoming webhook's URL, or any HTTPS "
                  "receiver. Empty: no notifications. A Slack webhook URL is itself a credential, so this is a "
                  "secret.")
    ] = ""
    notify_webhook_secret: Annotated[
        str, _secret("Signs each notification: `X-Concord-Signature: t=<unix>,v1=<hex>`, HMAC-SHA256 over "
                     "`<t>.<body>` (docs/alerts.md). Empty: not signed (Slack does not check signatures; its URL "
                     "is the secret).")
    ] = ""
    notify_min_severity: Annotated[
        str, Meta(pattern=r"^(low|medium|high|critical)$", description="New findings of this severity or above "
                  "are notified when reported; escalations are notified whatever their severity.")
    ] = "high"
    notify_link_base_url: Annotated[
        str, Meta(pattern=_URL_NOTIFY, description="Base URL the notifications link a finding under "
                  "(`<base>/api/drift/<fingerprint>`), as the people who read them reach the API. Empty: the "
                  "path alone is shown.")
    ] = ""
    notify_max_attempts: Annotated[
        int, Meta(ge=1, le=100, description="Attempts to deliver one notification (timeouts, 5xx and 429 are "
                  "retried with a jittered backoff from 1 s up to 60 s; `Retry-After` is honoured) before it is "
                  "given up, logged and counted as failed.")
    ] = 8
    # Salesforce CDC bridge (concord bridge salesforce)
    salesforce_pubsub_url: Annotated[
        str, Meta(pattern=r"^grpcs?://[^/\s:]+:\d+$",
                  description="Salesforce Pub/Sub API endpoint the bridge subscribes at: `grpcs://` over TLS (the "
                  "real API), `grpc://` in plaintext (the sandbox's, `concord sandbox --salesforce-delivery "
                  "pubsub`). Never plaintext across a network: the access token travels with every call.")
    ] = "grpcs://api.pubsub.salesforce.com:7443"
    salesforce_cdc_channels: Annotated[
        str, Meta(pattern=r"^/data/\w+(,/data/\w+)*$",
                  description="Comma-separated Change Data Capture channels the bridge carries into "
                  "`<prefix>.raw.salesforce`, each with its own replay id: the objects Concord reads by "
                  "default; `/data/ChangeEvents` carries every entity selected for CDC in Setup.")
    ] = "/data/AccountChangeEvent,/data/OpportunityChangeEvent"
    salesforce_pubsub_batch: Annotated[
        int, Meta(ge=1, le=100, description="Events the bridge asks for at a time per channel (`num_requested`; "
                  "Salesforce sends at most 100): it asks for more as each batch is in Kafka, so no more than this "
                  "is ever waiting in the bridge.")
    ] = 100
    salesforce_pubsub_replay_preset: Annotated[
        str, Meta(pattern=r"^(LATEST|EARLIEST)$",
                  description="Where a channel with no stored replay id starts: LATEST (new events only) or "
                  "EARLIEST (everything Salesforce still retains, 72 hours). A stored replay id always wins.")
    ] = "LATEST"
    salesforce_org_id: Annotated[
        str, Meta(pattern=r"^(00D[0-9A-Za-z]{12}([0-9A-Za-z]{3})?)?$",
                  description="The org id (`00D...`) the bridge sends as `tenantid`. Empty: the one the token flow "
                  "answered with (its identity URL), else the access token's prefix (`00D...!...`).")
    ] = ""

_FIELD_VARS: Final = {name: ENV_PREFIX + name.upper() for name in Settings.__struct_fields__}


def env_var(field: str) -> str:
    """The environment variable that sets `field`."""
    return _FIELD_VARS[field]


class SettingsError(ValueError):
    """A setting has a bad value; the message names the variable and what is expected."""


@functools.cache
def secret_file_vars() -> dict[str, str]:
    """Each secret field and the `CONCORD_<NAME>_FILE` variable that may name a file holding it."""
    return {name: env_var(name) + SECRET_FILE_SUFFIX for name, (_, meta) in _field_meta().items()
            if _is_secret(meta)}


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Read settings from `environ` (default: the process environment).

    Raises `SettingsError` naming the variable and the expected value when one is bad.
    Unknown `CONCORD_*` variables are rejected too: a typo must not silently fall back to a default.
    A secret is stripped of surrounding whitespace (blank: unset), may come from the file named by
    `CONCORD_<NAME>_FILE` instead, and when set must be at least `SECRET_MIN_BYTES` bytes.
    """
    env = os.environ if environ is None else environ
    known = set(_FIELD_VARS.values()) | set(secret_file_vars().values())
    unknown = sorted(k for k in env if k.startswith(ENV_PREFIX) and k not in known and not _ignored(k))
    if unknown:
        raise SettingsError(
            f"unknown setting {unknown[0]}: Concord has no such setting "
            "(see docs/configuration.md for the list); remove it or fix its name"
        )
    raw: dict[str, Any] = {f: env[v] for f, v in _FIELD_VARS.items() if v in env}
    for field in secret_file_vars():
        value = _read_secret(env, field)
        if value:
            raw[field] = value
        else:
            raw.pop(field, None)
    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise _explain(exc, raw) from None
    check_auth_flows(settings)
    check_kafka_security(settings)
    return settings


#: What each token flow of a platform needs (connectors/tokens.py, docs/platform-auth.md).
AUTH_FLOW_SETTINGS: Final = {
    ("salesforce", "jwt_bearer"): ("salesforce_client_id", "salesforce_username", "salesforce_private_key"),
    ("salesforce", "client_credentials"): ("salesforce_client_id", "salesforce_client_secret"),
    ("netsuite", "client_credentials"): ("netsuite_client_id", "netsuite_certificate_id", "netsuite_private_key"),
}
# Login hosts that do not serve Salesforce's client credentials flow (only the org's My Domain does).
_GENERIC_SALESFORCE_LOGIN_HOSTS: Final = frozenset({"login.salesforce.com", "test.salesforce.com"})


def check_auth_flows(settings: Settings) -> None:
    """SettingsError when a platform's token flow is incomplete (naming what it lacks), or set beside a static
    token, or cannot reach its token endpoint: a worker must not start to find out at its first command."""
    for (platform, flow), required in AUTH_FLOW_SETTINGS.items():
        if getattr(settings, f"{platform}_auth_flow") != flow:
            continue
        flow_var, token_var = env_var(f"{platform}_auth_flow"), env_var(f"{platform}_access_token")
        if getattr(settings, f"{platform}_access_token"):
            raise SettingsError(E_AUTH_STATIC_TOO.format(token_var=token_var, flow_var=flow_var, flow=flow))
        missing = [env_var(name) for name in required if not getattr(settings, name)]
        if missing:
            raise SettingsError(E_AUTH_INCOMPLETE.format(flow_var=flow_var, flow=flow, missing=", ".join(missing)))
    if settings.salesforce_auth_flow == "client_credentials":
        host = settings.salesforce_login_url.split("://", 1)[-1].strip("/").lower()
        if host in _GENERIC_SALESFORCE_LOGIN_HOSTS:
            raise SettingsError(E_AUTH_MY_DOMAIN.format(url=settings.salesforce_login_url))
    netsuite_endpoint = settings.netsuite_token_url or settings.netsuite_url
    if settings.netsuite_auth_flow == "client_credentials" and not netsuite_endpoint:
        raise SettingsError(E_AUTH_NETSUITE_URL)


# Variables with the prefix that are not settings of the worker (read by other tools).
_IGNORED_PREFIXES: Final = ("CONCORD_INFRA_", "CONCORD_TEST_", "CONCORD_DEMO_")


def _ignored(name: str) -> bool:
    return name.startswith(_IGNORED_PREFIXES)


def _read_secret(env: Mapping[str, str], field: str) -> str:
    """A secret's value, stripped, from its variable or its `_FILE` (blank: unset); checked for length."""
    var, file_var = env_var(field), secret_file_vars()[field]
    direct = env.get(var, "").strip()
    path = env.get(file_var, "").strip()
    if direct and path:
        raise SettingsError(E_SECRET_TWICE.format(var=var, file_var=file_var))
    source = var
    value = direct
    if path:
        source = f"{var} (read from {file_var}={path!r})"
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SettingsError(E_SECRET_FILE.format(
                file_var=file_var, path=path, var=var, reason=exc.strerror or type(exc).__name__)) from None
        except UnicodeDecodeError:
            raise SettingsError(E_SECRET_FILE.format(
                file_var=file_var, path=path, var=var, reason="not UTF-8 text")) from None
    if value and len(value.encode()) < SECRET_MIN_BYTES:
        raise SettingsError(E_SHORT_SECRET.format(source=source, min_bytes=SECRET_MIN_BYTES))
    return value


def current_secret(settings: Settings, field: str, environ: Mapping[str, str] | None = None) -> str:
    """The secret `field`'s value now: read again from the file `CONCORD_<NAME>_FILE` names when that is set
    (a secret rotated in its file needs no restart), else the value `settings` were loaded with.

    Raises `SettingsError` as `load` does (an unreadable file, a value too short), never showing the value.
    """
    env = os.environ if environ is None else environ
    if env.get(secret_file_vars()[field], "").strip():
        return _read_secret({secret_file_vars()[field]: env[secret_file_vars()[field]]}, field)
    return str(getattr(settings, field))


def _explain(exc: msgspec.ValidationError, raw: Mapping[str, Any]) -> SettingsError:
    message = str(exc)
    match = re.search(r"at `\$\.(\w+)`", message)
    if not match:
        return SettingsError(f"invalid settings: {mask_url(message)}")
    field = match.group(1)
    problem = mask_url(message[: match.start()].rstrip(" -"))
    if field in secret_file_vars():
        return SettingsError(E_BAD_SECRET.format(var=env_var(field), problem=problem))
    value = raw.get(field)
    if isinstance(value, str):
        value = mask_url(value)
    return SettingsError(E_BAD_SETTING.format(var=env_var(field), value=value, problem=problem))


def _field_meta() -> dict[str, tuple[type, Meta]]:
    """Each field's base type and its Meta (description, bounds, secret flag)."""
    hints = typing.get_type_hints(Settings, include_extras=True)
    out: dict[str, tuple[type, Meta]] = {}
    for name in Settings.__struct_fields__:
        base, *metas = typing.get_args(hints[name])
        out[name] = (base, next(m for m in metas if isinstance(m, Meta)))
    return out


def _is_secret(meta: Meta) -> bool:
    return bool((meta.extra or {}).get("secret"))


def redacted(settings: Settings) -> dict[str, Any]:
    """Settings as a dict with secrets and URL credentials masked, safe for logs and `/api` output."""
    out = msgspec.structs.asdict(settings)
    for name, (_, meta) in _field_meta().items():
        if _is_secret(meta):
            if out[name]:
                out[name] = MASK
        elif isinstance(out[name], str):
            out[name] = mask_url(out[name])
    return out


def kafka_bootstrap(settings: Settings) -> str:
    """`host:port,...` as aiokafka wants it."""
    return settings.kafka_url.removeprefix("kafka://")


E_KAFKA_SASL_NEEDS_CREDENTIALS: Final = (
    "CONCORD_KAFKA_SECURITY_PROTOCOL={protocol} needs CONCORD_KAFKA_SASL_USERNAME and CONCORD_KAFKA_SASL_PASSWORD "
    "(missing: {missing}): set both (Confluent Cloud: the API key and secret), or choose SSL or PLAINTEXT"
)
E_KAFKA_SASL_UNUSED: Final = (
    "{given} set but CONCORD_KAFKA_SECURITY_PROTOCOL={protocol} sends no SASL credentials: set the protocol to "
    "SASL_SSL (or SASL_PLAINTEXT), or unset them"
)
E_KAFKA_TLS_UNUSED: Final = (
    "{given} set but CONCORD_KAFKA_SECURITY_PROTOCOL={protocol} does not use TLS: set the protocol to SSL or "
    "SASL_SSL, or unset them"
)
E_KAFKA_CERT_WITHOUT_KEY: Final = (
    "CONCORD_KAFKA_SSL_CERTFILE and CONCORD_KAFKA_SSL_KEYFILE go together (the client certificate and its private "
    "key): {given} is set, {missing} is not"
)
E_KAFKA_KEY_PASSWORD_UNUSED: Final = (
    "CONCORD_KAFKA_SSL_KEY_PASSWORD is set but no CONCORD_KAFKA_SSL_KEYFILE: set the key file it opens, or unset it"
)
E_KAFKA_FILE: Final = "{var}={path!r}: {problem}; give the path of a readable PEM file"

_SASL_PROTOCOLS: Final = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
_TLS_PROTOCOLS: Final = frozenset({"SSL", "SASL_SSL"})
_TLS_FILES: Final = ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")


def check_kafka_security(settings: Settings) -> None:
    """Refuse a Kafka security setting that would be ignored, is incomplete, or names a file that is not there.

    Checked when settings are loaded (and again by `core.kafka_security` before a client is built), so a
    worker with half a configuration stops at start with the variable to fix, not at its first connection
    with a broker's terse refusal.
    """
    protocol = settings.kafka_security_protocol
    sasl_given = [env_var(f) for f in ("kafka_sasl_username", "kafka_sasl_password") if getattr(settings, f)]
    if protocol in _SASL_PROTOCOLS and len(sasl_given) < 2:
        missing = [env_var(f) for f in ("kafka_sasl_username", "kafka_sasl_password") if not getattr(settings, f)]
        raise SettingsError(E_KAFKA_SASL_NEEDS_CREDENTIALS.format(protocol=protocol, missing=", ".join(missing)))
    if protocol not in _SASL_PROTOCOLS and sasl_given:
        raise SettingsError(E_KAFKA_SASL_UNUSED.format(given=" and ".join(sasl_given), protocol=protocol))
    tls_given = [env_var(f) for f in (*_TLS_FILES, "kafka_ssl_key_password") if getattr(settings, f)]
    if not settings.kafka_ssl_check_hostname:
        tls_given.append(env_var("kafka_ssl_check_hostname"))
    if protocol not in _TLS_PROTOCOLS and tls_given:
        raise SettingsError(E_KAFKA_TLS_UNUSED.format(given=", ".join(tls_given), protocol=protocol))
    pair = {"kafka_ssl_certfile": settings.kafka_ssl_certfile, "kafka_ssl_keyfile": settings.kafka_ssl_keyfile}
    if any(pair.values()) and not all(pair.values()):
        given_var, missing_var = (env_var(f) for f in sorted(pair, key=lambda f: not pair[f]))
        raise SettingsError(E_KAFKA_CERT_WITHOUT_KEY.format(given=given_var, missing=missing_var))
    if settings.kafka_ssl_key_password and not settings.kafka_ssl_keyfile:
        raise SettingsError(E_KAFKA_KEY_PASSWORD_UNUSED)
    for field in _TLS_FILES:
        path = getattr(settings, field)
        if not path:
            continue
        problem = ("no such file" if not os.path.exists(path) else "not a file" if not os.path.isfile(path)
                   else "not readable by this process" if not os.access(path, os.R_OK) else "")
        if problem:
            raise SettingsError(E_KAFKA_FILE.format(var=env_var(field), path=path, problem=problem))


def markdown_reference() -> str:
    """The configuration reference, `docs/configuration.md`, generated from `Settings`."""
    lines = [
        "# Configuration",
        "",
        "<!-- Generated from core/settings.py by `concord config --markdown`. Do not edit by hand. -->",
        "",
        "Every setting is an environment variable. A bad value stops the process at start with the",
        "variable's name and what is expected; an unknown `CONCORD_*` variable is refused too.",
        "",
        f"Secrets are never printed or logged (`concord config` shows `{MASK}`, an error never echoes",
        "one). A secret is stripped of surrounding whitespace (a blank one is unset) and, when set, must be",
        f"at least {SECRET_MIN_BYTES} bytes. Instead of the variable, `CONCORD_<NAME>{SECRET_FILE_SUFFIX}=/path` "
        "reads a secret",
        "from a file (Docker and Kubernetes secrets), stripped the same way; setting both is an error.",
        "The password of a URL setting (`redis://:password@host:6379/0`) is masked wherever the URL is",
        "shown: `concord config`, start-up lines and errors.",
        "",
        "| variable | type | default | description |",
        "|---|---|---|---|",
    ]
    defaults = Settings()
    for name, (base, meta) in _field_meta().items():
        bounds = [f"{op} {v}" for op, v in ((">=", meta.ge), ("<=", meta.le)) if v is not None]
        type_text = base.__name__ + (f" ({', '.join(bounds)})" if bounds else "")
        default = "(empty)" if _is_secret(meta) else f"`{getattr(defaults, name)}`"
        description = (meta.description or "") + (
            f" Secret: never logged; at least {SECRET_MIN_BYTES} bytes; or read from the file named by "
            f"`{env_var(name)}{SECRET_FILE_SUFFIX}`." if _is_secret(meta) else "")
        description = description.replace("|", r"\|")
        lines.append(f"| `{env_var(name)}` | {type_text} | {default} | {description} |")
    return "\n".join(lines) + "\n"
