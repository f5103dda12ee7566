"""`concord sandbox`: serve the four platforms' APIs and play seeded customer traffic with drift.

Prints the URL, then a progress line every `--progress` seconds. With `--duration` it stops the
traffic after that many seconds, keeps serving for `--linger` seconds more (so Concord's last
corrections land and the D14 re-breaks go on), drains the emitter and exits 0; without it, it runs
until Ctrl-C (SIGINT) or SIGTERM.

`--deal-rate R` makes that share of the healthy customers deals (sandbox/deals.py): a Salesforce
account and a won opportunity only, for Concord's quote-to-cash saga to provision; their ground
truth is `GET /_sandbox/deals`.

Two options test Concord's backstop, its reconciliation: `--history N` lays N customers down in the
world before the traffic, at rest (no event about them is ever sent; sandbox/traffic.py), and
`--lose-rate R` loses that share of every platform's events (sandbox/lost.py).

The sandbox's modules are imported when the command runs, not when `concord` builds its parser.

It refuses to start (exit 1, one line naming the setting) unless every credential its platform APIs
accept and every webhook secret it signs with is set and is a test one (`check_credentials`): Stripe
API keys must be test keys (`sk_test_`/`rk_test_`; live ones are refused by prefix), and since the
other platforms' values carry no test/live marker, `--test-credentials` must declare them made up for
the sandbox. So, started with production settings, it never signs events or answers for anyone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO

from concord.core import event_loop
from concord.core import settings as settings_mod

if TYPE_CHECKING:
    from collections.abc import Callable

    from concord.sandbox.faults import Faults
    from concord.sandbox.server import EmitterLike, Sandbox, SandboxConfig
    from concord.sandbox.world import World

    EmitterFactory = Callable[[SandboxConfig, World, Faults], EmitterLike]

# How long the exit waits for the emitter to deliver what is queued.
DRAIN_SECONDS: Final = 30.0
# The settings the sandbox cannot run without: what its platform APIs require, and what it signs webhooks with.
REQUIRED_SETTINGS: Final = ("stripe_api_key", "salesforce_access_token", "zendesk_api_email", "zendesk_api_token",
                            "netsuite_access_token", "stripe_webhook_secret", "zendesk_webhook_secret",
                            "netsuite_webhook_secret")
# What stands for a static token when Concord gets its tokens by a flow (the sandbox's token endpoints check them).
FLOW_SETTINGS: Final = {
    ("salesforce", "jwt_bearer"): ("salesforce_client_id", "salesforce_username"),
    ("salesforce", "client_credentials"): ("salesforce_client_id", "salesforce_client_secret"),
    ("netsuite", "client_credentials"): ("netsuite_client_id", "netsuite_certificate_id"),
}
E_CERTIFICATE_NEEDED: Final = ("CONCORD_{platform}_AUTH_FLOW={flow}: pass {option} FILE, the certificate (PEM) whose "
                               "key signs Concord's assertions, so the sandbox's token endpoint can check them")
STRIPE_TEST_PREFIXES: Final = ("sk_test_", "rk_test_")
STRIPE_LIVE_PREFIXES: Final = ("sk_live_", "rk_live_", "pk_live_")
E_MISSING: Final = ("unset: {names}. The sandbox requires the credentials its platform APIs accept and the secrets it "
                    "signs webhooks with (unset, it would answer anyone); set them to made-up test values "
                    "(see docs/sandbox.md)")
E_LIVE: Final = ("{name} is a Stripe live key ({prefix}...): the sandbox refuses production credentials, as it would "
                 "answer and sign events for anyone who asks; use made-up test values (sk_test_...)")
E_NOT_TEST: Final = ("{name} is not a Stripe test key: the sandbox accepts only sk_test_... or rk_test_... keys, "
                     "so that it never runs with a live one")
E_UNDECLARED: Final = ("cannot tell whether {names} are test values (only Stripe API keys say whether they are live): "
                       "pass --test-credentials to declare that they are made up for the sandbox, never production "
                       "ones")
E_LISTEN: Final = ("concord sandbox: cannot listen on {host}:{port}: {error} (is another sandbox running? "
                   "choose another --port)")


E_LISTEN_PUBSUB: Final = ("concord sandbox: cannot serve the Pub/Sub API on {host}:{port}: {error} (is another sandbox "
                          "running? choose another --pubsub-port)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `concord sandbox`."""
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=6070, help="port to listen on (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1,
                        help="traffic seed: the same seed plays the same customers and drift (default: %(default)s)")
    parser.add_argument("--customers", type=int, default=50, help="customer lifecycles to play (default: %(default)s)")
    parser.add_argument("--drift-rate", type=float, default=0.05,
                        help="probability that a lifecycle step is broken, 0 to 1 (default: %(default)s)")
    parser.add_argument("--time-scale", type=float, default=3600.0,
                        help="simulated seconds per real second; 3600 plays a month in 12 minutes "
                        "(default: %(default)s)")
    parser.add_argument("--duration", type=float, default=0.0,
                        help="real seconds of traffic, then drain and exit 0; 0 runs until Ctrl-C "
                        "(default: %(default)s)")
    parser.add_argument("--linger", type=float, default=0.0,
                        help="with --duration: seconds to keep serving the APIs after the traffic ends "
                        "(default: %(default)s)")
    parser.add_argument("--deal-rate", type=float, default=0.2, metavar="R",
                        help="share of the customers not broken whose onboarding is only a Salesforce account and a "
                        "won opportunity, for Concord's quote-to-cash saga to provision (variants provision, "
                        "erp_refuses, reopened, amended in turn; ground truth in /_sandbox/deals), 0 to 1 "
                        "(default: %(default)s)")
    parser.add_argument("--rules", default="",
                        help="comma-separated rules to inject, e.g. D01,D04 (default: all of D01-D15)")
    parser.add_argument("--history", type=int, default=0, metavar="N",
                        help="customers already in the four platforms before the traffic starts, dated in the past "
                        "and never announced by an event; a --drift-rate share of them carries drift at rest "
                        "(listed with at_rest true in /_sandbox/injected), for a reconciliation to find "
                        "(default: %(default)s)")
    parser.add_argument("--lose-rate", type=float, default=0.0, metavar="R",
                        help="share of the platforms' events (webhooks and Salesforce CDC) lost instead of "
                        "delivered, 0 to 1, drawn from --seed; the records change all the same, each lost event "
                        "is listed in /_sandbox/lost and never sent (default: %(default)s)")
    parser.add_argument("--salesforce-delivery", choices=("kafka", "pubsub"), default="kafka",
                        help="how Salesforce change events reach Concord: produced to the raw topic (kafka), or served "
                        "by the Pub/Sub API on --pubsub-port for `concord bridge salesforce` (pubsub) "
                        "(default: %(default)s)")
    parser.add_argument("--pubsub-port", type=int, default=6072,
                        help="with --salesforce-delivery pubsub: the Pub/Sub API's port, plaintext gRPC "
                        "(default: %(default)s)")
    parser.add_argument("--pubsub-retention", type=float, default=0.0, metavar="SECONDS",
                        help="with --salesforce-delivery pubsub: seconds an event stays replayable; an older replay "
                        "id is refused as Salesforce refuses one past its 72 hours (0: kept for ever; "
                        "default: %(default)s)")
    parser.add_argument("--concord-url", default=None,
                        help="where webhooks go (default: http://<CONCORD_WEB_HOST>:<CONCORD_WEB_PORT>)")
    parser.add_argument("--no-traffic", action="store_true",
                        help="serve the APIs only; start the traffic with POST /_sandbox/traffic")
    parser.add_argument("--progress", type=float, default=10.0,
                        help="seconds between progress lines; 0 prints none (default: %(default)s)")
    parser.add_argument("--test-credentials", action="store_true",
                        help="declare that the CONCORD_* credentials and webhook secrets are made-up test values "
                        "(required: only Stripe API keys show whether they are live)")
    parser.add_argument("--token-lifetime", type=float, default=300.0, metavar="SECONDS",
                        help="how long a token of the Salesforce and NetSuite token endpoints lives; short, so Concord "
                        "renews its tokens during a run (default: %(default)s)")
    parser.add_argument("--salesforce-jwt-certificate", default="", metavar="FILE",
                        help="the connected app's certificate (PEM): opens the JWT bearer flow of the Salesforce token "
                        "endpoint, for CONCORD_SALESFORCE_AUTH_FLOW=jwt_bearer")
    parser.add_argument("--netsuite-certificate", default="", metavar="FILE",
                        help="the certificate (PEM) mapped to the NetSuite integration under "
                        "CONCORD_NETSUITE_CERTIFICATE_ID: opens the NetSuite token endpoint, for "
                        "CONCORD_NETSUITE_AUTH_FLOW=client_credentials")
    parser.add_argument("--control-public", action="store_true",
                        help="serve the control API (/_sandbox/*) to non-loopback peers too (default: loopback only)")


def required_settings(settings: settings_mod.Settings) -> tuple[str, ...]:
    """`REQUIRED_SETTINGS`, with a flow's identities instead of the static token of a platform that uses one."""
    names: list[str] = []
    for name in REQUIRED_SETTINGS:
        platform = name.removesuffix("_access_token")
        flow = getattr(settings, f"{platform}_auth_flow", "static") if platform != name else "static"
        names.extend(FLOW_SETTINGS.get((platform, flow), (name,)))
    return tuple(names)


def check_credentials(settings: settings_mod.Settings, *, test_credentials: bool) -> None:
    """ValueError unless every setting of `REQUIRED_SETTINGS` is set and is a test value (see the module doc).

    The messages name settings and key prefixes, never a value."""
    values = {name: getattr(settings, name) for name in required_settings(settings)}
    missing = [settings_mod.env_var(name) for name, value in values.items() if not value]
    if missing:
        raise ValueError(E_MISSING.format(names=", ".join(missing)))
    for name, value in values.items():
        live = next((prefix for prefix in STRIPE_LIVE_PREFIXES if value.startswith(prefix)), None)
        if live:
            raise ValueError(E_LIVE.format(name=settings_mod.env_var(name), prefix=live))
    if not values["stripe_api_key"].startswith(STRIPE_TEST_PREFIXES):
        raise ValueError(E_NOT_TEST.format(name=settings_mod.env_var("stripe_api_key")))
    if not test_credentials:
        unmarked = [settings_mod.env_var(name) for name in values if name != "stripe_api_key"]
        raise ValueError(E_UNDECLARED.format(names=", ".join(unmarked)))


def config_from_args(args: argparse.Namespace, settings: settings_mod.Settings) -> SandboxConfig:
    """The sandbox configuration from the command line and Concord's settings; ValueError when invalid."""
    from concord.sandbox import injection
    from concord.sandbox.server import config_from_settings
    from concord.sandbox.traffic import TrafficConfig
    from concord.sandbox.zendesk import EntitlementKeys

    if args.customers < 0:
        raise ValueError(f"--customers must be 0 or more, got {args.customers}")
    if not 0.0 <= args.drift_rate <= 1.0:
        raise ValueError(f"--drift-rate is a probability between 0 and 1, got {args.drift_rate}")
    if not 0.0 <= args.deal_rate <= 1.0:
        raise ValueError(f"--deal-rate is the share of customers that are deals, between 0 and 1, got "
                         f"{args.deal_rate}")
    if args.time_scale <= 0:
        raise ValueError(f"--time-scale must be above 0 (simulated seconds per real second), got {args.time_scale}")
    if args.duration < 0 or args.linger < 0:
        raise ValueError("--duration and --linger are seconds, 0 or more")
    if args.history < 0:
        raise ValueError(f"--history is a number of customers, 0 or more, got {args.history}")
    if not 0.0 <= args.lose_rate <= 1.0:
        raise ValueError(f"--lose-rate is the share of events lost, between 0 and 1, got {args.lose_rate}")
    if args.token_lifetime <= 0:
        raise ValueError(f"--token-lifetime is seconds, above 0, got {args.token_lifetime}")
    certificates = {"salesforce": _certificate("--salesforce-jwt-certificate", args.salesforce_jwt_certificate),
                    "netsuite": _certificate("--netsuite-certificate", args.netsuite_certificate)}
    for platform, flow, option in (("salesforce", "jwt_bearer", "--salesforce-jwt-certificate"),
                                   ("netsuite", "client_credentials", "--netsuite-certificate")):
        if getattr(settings, f"{platform}_auth_flow") == flow and not certificates[platform]:
            raise ValueError(E_CERTIFICATE_NEEDED.format(platform=platform.upper(), flow=flow, option=option))
    if args.pubsub_retention < 0:
        raise ValueError(f"--pubsub-retention is seconds, 0 or more, got {args.pubsub_retention}")
    traffic = TrafficConfig(
        seed=args.seed,
        customers=args.customers,
        drift_rate=args.drift_rate,
        time_scale=args.time_scale,
        duration=args.duration,
        rules=injection.parse_rules(args.rules),
        entitlement=EntitlementKeys(status=settings.zendesk_status_field, tier=settings.zendesk_tier_field,
                                    end_date=settings.zendesk_end_date_field),
        plan_field=settings.salesforce_plan_field,
        history=args.history,
        deal_rate=args.deal_rate,
    )
    return config_from_settings(settings, traffic, host=args.host, port=args.port, run_traffic=not args.no_traffic,
                                concord_url=args.concord_url, control_public=args.control_public,
                                lose_rate=args.lose_rate, token_lifetime=args.token_lifetime,
                                salesforce_certificate=certificates["salesforce"],
                                netsuite_certificate=certificates["netsuite"],
                                salesforce_delivery=args.salesforce_delivery,
                                pubsub_port=args.pubsub_port, pubsub_retention=args.pubsub_retention)


def _certificate(option: str, path: str) -> str:
    """The PEM certificate (or public key) in the file `path` ("" for none); ValueError naming the option."""
    from concord.sandbox.oauth import E_CERTIFICATE, load_public_key

    if not path:
        return ""
    try:
        pem = Path(path).read_text(encoding="utf-8")
        load_public_key(pem)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(E_CERTIFICATE.format(option=option, path=path, problem=type(exc).__name__)) from None
    return pem


def progress_line(sandbox: Sandbox) -> str:
    """One line of progress: simulated time, customers, steps, injections, deliveries, lost events."""
    status = sandbox.status()
    lanes = status.emitter.platforms.values()
    delivered = sum(lane.delivered for lane in lanes)
    pending = sum(lane.pending for lane in lanes)
    failed = sum(lane.failed for lane in lanes)
    state = "finished" if status.finished else "running" if status.running else "paused"
    return (f"concord sandbox: {state}, day {status.simulated_seconds / 86400:6.1f} | customers "
            f"{status.arrived}/{status.customers} | steps {status.steps_done}/{status.steps_total} | injected "
            f"{status.injected} | events delivered {delivered}, pending {pending}, failed {failed}, lost {status.lost}")


async def serve(config: SandboxConfig, *, linger: float = 0.0, progress: float = 10.0, out: TextIO = sys.stdout,
                stop: asyncio.Event | None = None, emitter: EmitterFactory | None = None) -> int:
    """Run the sandbox until `stop` is set (SIGINT/SIGTERM by default) or, with a duration, the traffic ends.

    `emitter` builds the event emitter (default: the real one, delivering to Concord).
    """
    from aiohttp import web

    from concord.sandbox.server import SANDBOX, build_app

    app = build_app(config, emitter=emitter)
    sandbox = app[SANDBOX]
    runner = web.AppRunner(app)
    try:
        await runner.setup()  # starts the Pub/Sub API too, with pubsub delivery
    except OSError as exc:
        await runner.cleanup()
        raise SystemExit(E_LISTEN_PUBSUB.format(host=config.host, port=config.pubsub_port, error=exc)) from None
    try:
        await web.TCPSite(runner, config.host, config.port).start()
    except OSError as exc:
        await runner.cleanup()
        raise SystemExit(E_LISTEN.format(host=config.host, port=config.port, error=exc)) from None
    if stop is None:
        stop = event_loop.stop_on_signals()
    traffic = config.traffic
    print(f"concord sandbox: http://{config.host}:{config.port}/ (status /_sandbox/status, ground truth "
          f"/_sandbox/injected, deals /_sandbox/deals); seed {traffic.seed}, {traffic.customers} customers, drift rate "
          f"{traffic.drift_rate}, deal rate {traffic.deal_rate:g}, "
          f"{traffic.history} history customers, lose rate {config.lose_rate:g}, "
          f"time scale {traffic.time_scale:g}x, webhooks to {settings_mod.mask_url(config.concord_url)}, "
          f"Salesforce CDC {_salesforce_delivery(config)}; "
          f"{event_loop.loop_name(asyncio.get_running_loop())} event loop", file=out, flush=True)
    try:
        await _wait(sandbox, stop, config, linger, progress, out)
        print(progress_line(sandbox), file=out, flush=True)
        if not await sandbox.emitter.drain(DRAIN_SECONDS):
            print(f"concord sandbox: events still undelivered after {DRAIN_SECONDS:g}s (is Concord up at "
                  f"{settings_mod.mask_url(config.concord_url)}?)", file=out, flush=True)
    finally:
        await runner.cleanup()
    return 0


def _salesforce_delivery(config: SandboxConfig) -> str:
    if config.salesforce_delivery == "pubsub":
        return f"on the Pub/Sub API grpc://{config.host}:{config.pubsub_port}"
    return f"to Kafka {config.salesforce_topic}"


async def _wait(sandbox: Sandbox, stop: asyncio.Event, config: SandboxConfig, linger: float, progress: float,
                out: TextIO) -> None:
    """Print progress until `stop`, or until the traffic of a `--duration` run ended `linger` seconds ago."""
    stopping = asyncio.create_task(stop.wait())
    finished = asyncio.create_task(sandbox.runner.done.wait())
    ends = {stopping}
    if config.traffic.duration > 0:
        ends.add(finished)
    try:
        while True:
            done, _ = await asyncio.wait(ends, timeout=progress if progress > 0 else None)
            if done:
                break
            print(progress_line(sandbox), file=out, flush=True)
        if finished in done and not stop.is_set() and linger > 0:
            print(f"concord sandbox: traffic finished; serving {linger:g}s more", file=out, flush=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), linger)
    finally:
        for task in (stopping, finished):
            task.cancel()


def run(args: argparse.Namespace) -> int:
    """`concord sandbox` with parsed arguments."""
    try:
        settings = settings_mod.load()
        check_credentials(settings, test_credentials=args.test_credentials)
        config = config_from_args(args, settings)
    except ValueError as exc:  # SettingsError is a ValueError
        raise SystemExit(f"concord sandbox: {exc}") from None
    return event_loop.run(serve(config, linger=args.linger, progress=args.progress), settings.event_loop)
