"""The sandbox's HTTP service: the four platforms' APIs, the traffic, and the `/_sandbox` control API.

`build_app(config)` assembles one aiohttp application around one `World`:

* the platform routes the connectors call (`sandbox/stripe.py`, `salesforce.py`, `zendesk.py`,
  `netsuite.py`), each behind the per-platform faults (`sandbox/faults.py`), accepting the
  credentials Concord's connectors are configured with, and the tokens of Salesforce's and NetSuite's
  OAuth 2.0 token endpoints (`sandbox/oauth.py`, `SandboxConfig.oauth`: short-lived, so a run renews
  them);
* the `Emitter` (`sandbox/emit.py`), which delivers every world change to Concord as the
  platform's native event, started and stopped with the application; each platform loses its
  `lose_rate` share of them (`SandboxConfig.lose_rate` at start, a fault at runtime), recorded in
  `GET /_sandbox/lost`;
* the history customers (`TrafficConfig.history`), laid down in the world at rest when the service
  is assembled, before the emitter starts: no event about them is ever sent;
* the seeded traffic (`sandbox/traffic.py`), started with the application unless `run_traffic` is
  off (then `POST /_sandbox/traffic {"action": "start"}` starts it);
* the control API:

  ========================  =======================================================================
  GET  /_sandbox/healthz    `{"ok": true}`
  GET  /_sandbox/status     customers, history, steps, injections per rule, deals per outcome, lost events,
                            emitter stats, tokens issued and refused per platform (`tokens`)
  GET  /_sandbox/injected   the ground truth: every `Injection` (`?rule=D01` filters; `at_rest` marks history)
  GET  /_sandbox/deals      the saga's ground truth: `{"deals": [Deal, ...]}`, every deal played to its end
                            (opportunity_id, customer_key, variant, expected, reason, plan, quantity)
  GET  /_sandbox/lost       every event lost on purpose, a `LostEvent` each (`?platform=stripe` filters)
  GET  /_sandbox/effects    side effects per platform and key, and the `duplicates` (applied twice)
  GET  /_sandbox/faults     the fault settings of every platform
  POST /_sandbox/faults     merge fault settings: `{"stripe": {"error_rate": 0.3}}`, `{"zendesk": {"lose_rate": 0.1}}`
  POST /_sandbox/traffic    `{"action": "start"}` or `{"action": "stop"}` (pause; start resumes)
  ========================  =======================================================================

  The control API reveals the ground truth and changes faults and traffic, so it answers loopback
  peers only (403 otherwise) unless `control_public` is set (`concord sandbox --control-public`).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

import msgspec
from aiohttp import web
from msgspec import Struct

from concord.core.kafka_security import KafkaSecurity, kafka_security
from concord.core.settings import Settings, kafka_bootstrap
from concord.core.topics import topic_names
from concord.sandbox import netsuite, salesforce, stripe, webhook_setup, zendesk
from concord.sandbox.catalog import PLAN_TIERS
from concord.sandbox.deals import Deal
from concord.sandbox.emit import Emitter, EmitterStats
from concord.sandbox.faults import PLATFORMS, Faults, FaultsError, FaultSettings, PlatformCredentials
from concord.sandbox.injection import Injection
from concord.sandbox.lost import LostEvent
from concord.sandbox.oauth import OAuthConfig, TokenStats, sessions_for, token_routes
from concord.sandbox.pubsub import EventBus, start_server
from concord.sandbox.traffic import Runner, Traffic, TrafficConfig, TrafficStatus
from concord.sandbox.webhook_setup import WebhookSetup
from concord.sandbox.world import Effect, World

if TYPE_CHECKING:
    import grpc

E_TRAFFIC_BODY: Final = 'POST /_sandbox/traffic wants JSON {{"action": "start"}} or {{"action": "stop"}}: {problem}'
E_CONTROL_PUBLIC: Final = ("the sandbox control API (/_sandbox/*) answers loopback peers only; start the sandbox with "
                           "--control-public to serve it to other hosts")
E_LOST_PLATFORM: Final = "GET /_sandbox/lost?platform= names one of {platforms}, got {platform!r}"
CONTROL_PREFIX: Final = "/_sandbox"


class SandboxConfig(Struct, frozen=True, kw_only=True):
    """Everything the sandbox service needs: where it listens, its traffic, and Concord's side."""

    host: str = "127.0.0.1"
    port: int = 6070
    traffic: TrafficConfig = TrafficConfig()
    run_traffic: bool = True  # start the traffic with the service (False: `POST /_sandbox/traffic`)
    concord_url: str = "http://127.0.0.1:6066"  # where webhooks go
    stripe_webhook_secret: str = ""
    zendesk_webhook_secret: str = ""
    netsuite_webhook_secret: str = ""
    kafka_bootstrap: str = "127.0.0.1:9092"  # Salesforce CDC goes to Kafka, as a CDC pipeline's would
    kafka_security: KafkaSecurity = KafkaSecurity()  # Concord's TLS and SASL settings, for that producer
    salesforce_topic: str = "concord.raw.salesforce"
    credentials: PlatformCredentials = PlatformCredentials()  # what the platform APIs accept
    fault_seed: int = 1
    control_public: bool = False  # serve `/_sandbox/*` to non-loopback peers too
    lose_rate: float = 0.0  # every platform's `lose_rate` fault at start: share of events lost, not delivered
    oauth: OAuthConfig = OAuthConfig()  # the token endpoints: apps, certificates, token lifetime
    # How Salesforce change events reach Concord: "kafka" (produced to the raw topic, as a customer's CDC
    # pipeline would) or "pubsub" (served by the Pub/Sub API on `pubsub_port`, for `concord bridge salesforce`).
    salesforce_delivery: str = "kafka"
    pubsub_port: int = 6072
    pubsub_retention: float = 0.0  # seconds an event stays replayable (0: for ever; Salesforce keeps 72 hours)
    pubsub_keepalive: float = 270.0  # seconds without events before an empty FetchResponse, as Salesforce's


def config_from_settings(settings: Settings, traffic: TrafficConfig, *, host: str = "127.0.0.1", port: int = 6070,
                         run_traffic: bool = True, concord_url: str | None = None,
                         control_public: bool = False, lose_rate: float = 0.0, token_lifetime: float = 300.0,
                         salesforce_certificate: str = "", netsuite_certificate: str = "",
                         salesforce_delivery: str = "kafka", pubsub_port: int = 6072,
                         pubsub_retention: float = 0.0) -> SandboxConfig:
    """The sandbox's configuration from Concord's settings: the secrets it signs with, the topic it
    produces to, and the connector credentials it accepts (so Concord's connectors authenticate).

    The certificates (PEM) open the token endpoints' JWT flows; the apps' identities come from the settings,
    and Salesforce's client credentials flow opens when the settings hold a client secret."""
    web_host = "127.0.0.1" if settings.web_host in ("0.0.0.0", "::") else settings.web_host
    return SandboxConfig(
        host=host,
        port=port,
        traffic=traffic,
        run_traffic=run_traffic,
        concord_url=concord_url or f"http://{web_host}:{settings.web_port}",
        stripe_webhook_secret=settings.stripe_webhook_secret,
        zendesk_webhook_secret=settings.zendesk_webhook_secret,
        netsuite_webhook_secret=settings.netsuite_webhook_secret,
        kafka_bootstrap=kafka_bootstrap(settings),
        kafka_security=kafka_security(settings),
        salesforce_topic=topic_names(settings).raw["salesforce"],
        credentials=PlatformCredentials(
            stripe_api_key=settings.stripe_api_key,
            salesforce_access_token=settings.salesforce_access_token,
            zendesk_api_email=settings.zendesk_api_email,
            zendesk_api_token=settings.zendesk_api_token,
            netsuite_access_token=settings.netsuite_access_token,
        ),
        fault_seed=traffic.seed,
        control_public=control_public,
        lose_rate=lose_rate,
        oauth=OAuthConfig(
            token_lifetime=token_lifetime,
            salesforce_certificate=salesforce_certificate,
            salesforce_client_id=settings.salesforce_client_id,
            salesforce_username=settings.salesforce_username,
            salesforce_client_secret=settings.salesforce_client_secret,
            netsuite_certificate=netsuite_certificate,
            netsuite_certificate_id=settings.netsuite_certificate_id,
            netsuite_client_id=settings.netsuite_client_id,
        ),
        salesforce_delivery=salesforce_delivery,
        pubsub_port=pubsub_port,
        pubsub_retention=pubsub_retention,
    )


class EmitterLike(Protocol):
    """What the service needs of the emitter (tests pass one that delivers nowhere)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def drain(self, timeout: float) -> bool: ...

    def stats(self) -> EmitterStats: ...

    def lost(self) -> list[LostEvent]: ...


class SandboxStatus(Struct, kw_only=True):
    """`GET /_sandbox/status`."""

    customers: int
    arrived: int
    history: int  # history customers in the world (`--history`), laid down at rest before the traffic
    injected_at_rest: int  # of `injected`, drift of history customers (`at_rest` in /_sandbox/injected)
    steps_done: int
    steps_total: int
    step_errors: int
    injected: int
    injections: dict[str, int]
    rebreaks: int
    deals: dict[str, int]  # deals played to their end, per expected outcome (each listed in /_sandbox/deals)
    running: bool
    finished: bool
    simulated_seconds: float
    last_error: str | None
    seed: int
    drift_rate: float
    time_scale: float
    plan_tiers: dict[str, str]  # what Concord's rules file needs as `plan_tiers` for D03
    lost: int  # events lost on purpose, all platforms (`lose_rate`; each listed in /_sandbox/lost)
    emitter: EmitterStats
    tokens: dict[str, TokenStats]  # Salesforce's and NetSuite's token endpoints and sessions (sandbox/oauth.py)


class DealsView(Struct, kw_only=True):
    """`GET /_sandbox/deals`."""

    deals: list[Deal]


class EffectsView(Struct, kw_only=True):
    """`GET /_sandbox/effects`."""

    effects: list[Effect]
    duplicates: list[Effect]


class TrafficCommand(Struct, frozen=True, forbid_unknown_fields=True):
    action: Literal["start", "stop"]


class Sandbox:
    """The parts of one running sandbox, shared by its handlers."""

    def __init__(self, config: SandboxConfig, world: World, emitter: EmitterLike, faults: Faults,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.world = world
        self.faults = faults
        self.sessions = {
            "salesforce": sessions_for("salesforce", config.credentials.salesforce_access_token, config.oauth, clock),
            "netsuite": sessions_for("netsuite", config.credentials.netsuite_access_token, config.oauth, clock),
        }
        self.traffic = Traffic(world, config.traffic)
        # Before the emitter starts (on app startup), and unheard in any case: see Traffic.play_history.
        self.traffic.play_history()
        self.runner = Runner(self.traffic)
        self.emitter = emitter
        self.bus: EventBus | None = None  # the Pub/Sub API's events, with pubsub delivery (sandbox/pubsub.py)
        self.pubsub: grpc.aio.Server | None = None

    def status(self) -> SandboxStatus:
        traffic: TrafficStatus = self.runner.status()
        emitter = self.emitter.stats()
        return SandboxStatus(
            **msgspec.structs.asdict(traffic),
            seed=self.config.traffic.seed,
            drift_rate=self.config.traffic.drift_rate,
            time_scale=self.config.traffic.time_scale,
            plan_tiers=PLAN_TIERS,
            lost=sum(lane.lost for lane in emitter.platforms.values()),
            emitter=emitter,
            tokens={platform: sessions.counts for platform, sessions in self.sessions.items()},
        )


SANDBOX: Final = web.AppKey("sandbox", Sandbox)


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(value), status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


async def _healthz(request: web.Request) -> web.Response:
    return _json({"ok": True})


async def _status(request: web.Request) -> web.Response:
    return _json(request.app[SANDBOX].status())


async def _injected(request: web.Request) -> web.Response:
    injections: list[Injection] = request.app[SANDBOX].traffic.injections
    rule = request.query.get("rule", "").upper()
    return _json([i for i in injections if i.rule == rule] if rule else injections)


async def _deals(request: web.Request) -> web.Response:
    return _json(DealsView(deals=request.app[SANDBOX].traffic.deals))


async def _lost(request: web.Request) -> web.Response:
    platform = request.query.get("platform", "").lower()
    if platform and platform not in PLATFORMS:
        return _error(400, E_LOST_PLATFORM.format(platforms=", ".join(PLATFORMS), platform=platform))
    lost = request.app[SANDBOX].emitter.lost()
    return _json([event for event in lost if event.platform == platform] if platform else lost)


async def _effects(request: web.Request) -> web.Response:
    effects = request.app[SANDBOX].world.effects
    return _json(EffectsView(effects=effects.all(), duplicates=effects.duplicates()))


async def _get_faults(request: web.Request) -> web.Response:
    return web.Response(body=request.app[SANDBOX].faults.to_json(), content_type="application/json")


async def _post_faults(request: web.Request) -> web.Response:
    faults = request.app[SANDBOX].faults
    try:
        faults.update(await request.read())
    except FaultsError as exc:
        return _error(400, str(exc))
    return web.Response(body=faults.to_json(), content_type="application/json")


async def _traffic(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    try:
        command = msgspec.json.decode(await request.read(), type=TrafficCommand)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return _error(400, E_TRAFFIC_BODY.format(problem=exc))
    if command.action == "start":
        changed = sandbox.runner.start()
    else:
        changed = await sandbox.runner.stop()
    return _json({"action": command.action, "changed": changed, "running": sandbox.runner.running,
                  "finished": sandbox.runner.finished})


def is_loopback(peer: object) -> bool:
    """Whether a transport's `peername` is a loopback address (IPv4, IPv6 or IPv4-mapped IPv6)."""
    if not isinstance(peer, tuple) or not peer or not isinstance(peer[0], str):
        return False  # unknown peer (e.g. a Unix socket): not provably loopback
    try:
        address = ipaddress.ip_address(peer[0].split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _is_control(path: str) -> bool:
    return path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/")


@web.middleware
async def control_guard(request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
    """Refuse `/_sandbox/*` with 403 to a non-loopback peer unless the config's `control_public` is set.

    The peer is the TCP connection's, never a forwarded-for header (which any client can write)."""
    if _is_control(request.path) and not request.app[SANDBOX].config.control_public:
        transport = request.transport
        if transport is None or not is_loopback(transport.get_extra_info("peername")):
            return _error(403, E_CONTROL_PUBLIC)
    response: web.StreamResponse = await handler(request)
    return response


async def _on_startup(app: web.Application) -> None:
    sandbox = app[SANDBOX]
    if sandbox.bus is not None:
        config = sandbox.config
        sandbox.pubsub, _ = await start_server(sandbox.bus, sandbox.sessions["salesforce"].accepts, host=config.host,
                                               port=config.pubsub_port, keepalive=config.pubsub_keepalive)
    await sandbox.emitter.start()
    if sandbox.config.run_traffic:
        sandbox.runner.start()


async def _on_cleanup(app: web.Application) -> None:
    sandbox = app[SANDBOX]
    await sandbox.runner.stop()
    await sandbox.emitter.stop()
    if sandbox.pubsub is not None:
        await sandbox.pubsub.stop(grace=1.0)
        sandbox.pubsub = None


def build_emitter(config: SandboxConfig, world: World, faults: Faults, bus: EventBus | None = None) -> Emitter:
    """The emitter delivering `world`'s changes to the Concord named in `config` (gaps and losses per `faults`);
    Salesforce's change events go to `bus` instead of Kafka when one is given (pubsub delivery)."""
    return Emitter(world, concord_url=config.concord_url, stripe_secret=config.stripe_webhook_secret,
                   zendesk_secret=config.zendesk_webhook_secret, netsuite_secret=config.netsuite_webhook_secret,
                   kafka_bootstrap=config.kafka_bootstrap, kafka_security=config.kafka_security,
                   salesforce_topic=config.salesforce_topic,
                   gaps=faults.gap, lose=faults.lose, producer_factory=None if bus is None else lambda: bus)


def build_app(config: SandboxConfig, *, world: World | None = None,
              emitter: Callable[[SandboxConfig, World, Faults], EmitterLike] | None = None,
              clock: Callable[[], float] = time.time) -> web.Application:
    """The sandbox service: platform APIs, control API, emitter and traffic (started on app startup).

    `emitter` builds the emitter (default: `build_emitter`, with the Pub/Sub event bus when
    `config.salesforce_delivery` is "pubsub"; its gRPC server starts and stops with the app)."""
    world = world if world is not None else World(clock=clock)
    faults = Faults(FaultSettings.losing(config.lose_rate), seed=config.fault_seed)
    bus = EventBus(retention=config.pubsub_retention, clock=clock) if config.salesforce_delivery == "pubsub" else None
    built = emitter(config, world, faults) if emitter is not None else build_emitter(config, world, faults, bus)
    sandbox = Sandbox(config, world, built, faults, clock)
    sandbox.bus = bus
    app = web.Application(client_max_size=4 * 1024 * 1024, middlewares=[control_guard])
    app[SANDBOX] = sandbox
    for platform in (stripe, zendesk):
        app.add_routes(platform.routes(world, sandbox.faults, config.credentials))
    app.add_routes(salesforce.routes(world, sandbox.faults, config.credentials, sandbox.sessions["salesforce"]))
    app.add_routes(netsuite.routes(world, sandbox.faults, config.credentials, sandbox.sessions["netsuite"]))
    app.add_routes(token_routes(config.oauth, sandbox.sessions["salesforce"], sandbox.sessions["netsuite"], clock))
    app.add_routes(webhook_setup.routes(WebhookSetup(config.concord_url, config.zendesk_webhook_secret,
                                                     config.credentials)))
    app.add_routes([
        web.get("/_sandbox/healthz", _healthz),
        web.get("/_sandbox/status", _status),
        web.get("/_sandbox/injected", _injected),
        web.get("/_sandbox/deals", _deals),
        web.get("/_sandbox/lost", _lost),
        web.get("/_sandbox/effects", _effects),
        web.get("/_sandbox/faults", _get_faults),
        web.post("/_sandbox/faults", _post_faults),
        web.post("/_sandbox/traffic", _traffic),
    ])
    app.on_startup.append(_on_startup)
    app.on_cleanup.append(_on_cleanup)
    return app
