"""The `concord` command line."""

from __future__ import annotations

import argparse
import sys

from concord.core import settings as settings_mod

E_SETTINGS = "concord: configuration error: {error}"
E_WEBHOOKS_ALONE = ("concord worker: the webhooks role alone needs no stream processing: run `concord webhooks` "
                    "(the ingress without Faust), or add the roles this worker should run beside it")


def _load_settings() -> settings_mod.Settings:
    try:
        return settings_mod.load()
    except settings_mod.SettingsError as exc:
        raise SystemExit(E_SETTINGS.format(error=exc)) from None


def cmd_worker(args: argparse.Namespace) -> int:
    from concord.agents.context import ROLES
    from concord.agents.faust_internals import UnsupportedVersion
    from concord.app.main import build
    from concord.app.worker import run

    settings = _load_settings()
    roles = [r.strip() for r in args.roles.split(",") if r.strip()] if args.roles else list(ROLES)
    if set(roles) == {"webhooks"}:
        raise SystemExit(E_WEBHOOKS_ALONE)
    try:
        concord = build(settings, roles=roles)
    except (ValueError, UnsupportedVersion) as exc:
        raise SystemExit(f"concord worker: {exc}") from None
    print(f"concord: worker {settings.app_id} on {settings_mod.mask_url(settings.kafka_url)}, "
          f"web http://{settings.web_host}:{settings.web_port}/ (roles: {', '.join(sorted(concord.roles))})",
          flush=True)
    try:
        created = concord.prepare()
    except RuntimeError as exc:
        raise SystemExit(f"concord worker: {exc}") from None
    if created:
        print(f"concord: created {len(created)} topics ({settings.topic_partitions} partitions each)", flush=True)
    run(concord.app, loglevel=args.loglevel, on_started=concord.started, loop=settings.event_loop)
    return 0


def cmd_webhooks(args: argparse.Namespace) -> int:
    import logging

    from aiokafka.errors import KafkaError

    from concord.app.webhooks import listeners, run

    settings = _load_settings()
    logging.basicConfig(level=args.loglevel.upper(),
                        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s")
    if args.loglevel != "debug":
        logging.getLogger("aiokafka").setLevel(logging.WARNING)  # chatty at info; warnings still show
    where = ", ".join(f"http://{host}:{port}/" for host, port in listeners(settings))
    print(f"concord: webhooks {settings.app_id} on {settings_mod.mask_url(settings.kafka_url)}, web {where}",
          flush=True)
    try:
        run(settings)
    except (RuntimeError, KafkaError, OSError) as exc:  # broker unreachable, topics refused, port taken
        raise SystemExit(f"concord webhooks: {settings_mod.mask_url(str(exc))}") from None
    return 0


def cmd_bridge_salesforce(args: argparse.Namespace) -> int:
    import logging

    from aiokafka.errors import KafkaError

    from concord.app.bridge import channels, run

    settings = _load_settings()
    logging.basicConfig(level=args.loglevel.upper(),
                        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s")
    if args.loglevel != "debug":
        logging.getLogger("aiokafka").setLevel(logging.WARNING)
    print(f"concord: bridge salesforce {', '.join(channels(settings))} from {settings.salesforce_pubsub_url} to "
          f"{settings_mod.mask_url(settings.kafka_url)}", flush=True)
    try:
        return run(settings, metrics_port=args.metrics_port)
    except (RuntimeError, KafkaError, OSError) as exc:  # broker or Redis unreachable, topic refused
        raise SystemExit(f"concord bridge salesforce: {settings_mod.mask_url(str(exc))}") from None


def cmd_config(args: argparse.Namespace) -> int:
    if args.markdown:
        sys.stdout.write(settings_mod.markdown_reference())
        return 0
    settings = _load_settings()
    for name, value in settings_mod.redacted(settings).items():
        print(f"{settings_mod.env_var(name)}={value}")
    return 0


def cmd_infra(args: argparse.Namespace) -> int:
    from concord.infra.cli import run

    return run(args)


def cmd_decode(args: argparse.Namespace) -> int:
    from concord.app.decode_cmd import main as decode_main
    from concord.codecs.config import codec_config

    return decode_main(args.platform, args.file, codec_config(_load_settings()))


def duration(seconds: int) -> str:
    """A duration as a person reads it at a glance: the largest of h, m, s that divides it (`24h`, `15m`, `90s`)."""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def cmd_rules(args: argparse.Namespace) -> int:
    import json

    import msgspec

    from concord.app.api import rules_listing
    from concord.app.main import drift_config
    from concord.drift import catalog

    try:
        config = drift_config(_load_settings())
    except ValueError as exc:
        raise SystemExit(f"concord rules: {exc}") from None
    listing = msgspec.to_builtins(rules_listing(catalog.RULES, config))
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    print(f"{'id':4} {'name':34} {'on':3} {'grace':>7} {'severity':8} {'dry':4} {'tolerance':>9}  {'owner':11} "
          "action")
    for r in listing:
        print(f"{r['id']:4} {r['name']:34} {'yes' if r['enabled'] else 'no':3} {duration(r['grace_seconds']):>7} "
              f"{r['severity']:8} {'yes' if r['dry_run'] else 'no':4} {r['amount_tolerance']:>9}  {r['owner']:11} "
              f"{r['action']}")
    print(f"\nplan -> tier: {config.plan_tiers or '(none: D03 skips unmapped plans)'}")
    print(f"field owners: {config.ownership}")
    print(f"corrections before escalation: {config.max_corrections}, "
          f"correction timeout: {duration(config.correction_timeout_seconds)}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from concord.app.replay import run

    return run(_load_settings(), args)


def cmd_reconcile(args: argparse.Namespace) -> int:
    from concord.app.reconcile import run

    return run(_load_settings(), args)


def cmd_doctor(args: argparse.Namespace) -> int:
    from concord.app.doctor import run

    return run(_load_settings(), args)


def cmd_saga(args: argparse.Namespace) -> int:
    from concord.app.saga_cmd import run

    return run(_load_settings(), args)


E_NO_USERS_FILE = ("concord users add: no users file: pass --file PATH, or set CONCORD_USERS_FILE to the file the "
                   "workers read")


def cmd_users_add(args: argparse.Namespace) -> int:
    from concord.app import users

    path = args.file or _load_settings().users_file
    if not path:
        raise SystemExit(E_NO_USERS_FILE)
    try:
        token = users.add(path, args.name, args.role)
    except users.UsersFileError as exc:
        raise SystemExit(f"concord users add: {exc}") from None
    print(f"added {args.name} ({args.role}) to {path}. Their token, shown this once (only its hash is kept):",
          file=sys.stderr)
    print(token)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from concord.app.demo import run

    return run(_load_settings(), args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="concord",
        description="Concord keeps Salesforce, Stripe, Zendesk and NetSuite in agreement, in real time.",
        epilog="Settings come from CONCORD_* environment variables: see `concord config` and "
        "docs/configuration.md.",
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    worker = sub.add_parser("worker", help="run a stream-processing worker (Faust) until Ctrl-C",
                            description="Run a Concord worker: agents, tables and the HTTP server.")
    worker.add_argument("-l", "--loglevel", default="info",
                        choices=["debug", "info", "warning", "error", "critical"],
                        help="log level (default: %(default)s)")
    worker.add_argument("--roles", default="",
                        help="comma-separated subset of roles to run: webhooks,ingest,state,commands (default: "
                        "all); the webhooks role alone is `concord webhooks`")
    worker.set_defaults(func=cmd_worker)

    webhooks = sub.add_parser(
        "webhooks", help="run the webhook ingress alone, without Faust, until Ctrl-C",
        description="Serve /webhooks/{stripe,zendesk,netsuite} and write each signed delivery to its raw "
        "topic, answering 200 once Kafka has it; also /healthz, /readyz and /metrics. It only writes to "
        "Kafka, so it answers in milliseconds whatever the workers are doing: run it beside workers "
        "started with --roles ingest,state,commands.")
    webhooks.add_argument("-l", "--loglevel", default="info",
                          choices=["debug", "info", "warning", "error", "critical"],
                          help="log level (default: %(default)s)")
    webhooks.set_defaults(func=cmd_webhooks)

    bridge = sub.add_parser("bridge", help="carry a platform's event stream into its raw topic until Ctrl-C",
                            description="Bridges from a platform's own event API into Concord's raw topics.")
    bridges = bridge.add_subparsers(title="platforms", metavar="PLATFORM", required=True)
    bridge_salesforce = bridges.add_parser(
        "salesforce", help="Salesforce Change Data Capture (Pub/Sub API) into <prefix>.raw.salesforce",
        description="Subscribe to the CDC channels of CONCORD_SALESFORCE_CDC_CHANNELS on the Pub/Sub API "
        "(CONCORD_SALESFORCE_PUBSUB_URL), decode each event's Avro payload and produce it to "
        "<prefix>.raw.salesforce (acks=all); each channel's replay id is stored in Redis once its events are in "
        "Kafka, and a restart resumes after it (a crash replays events, never skips one). A replay id past "
        "Salesforce's retention becomes a GAP_OVERFLOW event for the entity. Setup: docs/ingestion.md.")
    bridge_salesforce.add_argument("-l", "--loglevel", default="info",
                                   choices=["debug", "info", "warning", "error", "critical"],
                                   help="log level (default: %(default)s)")
    bridge_salesforce.add_argument("--metrics-port", type=int, default=0,
                                   help="serve the concord_bridge_* metrics on this port (default: none)")
    bridge_salesforce.set_defaults(func=cmd_bridge_salesforce)

    config = sub.add_parser("config", help="print the effective settings (secrets masked)",
                            description="Print the effective settings, or the configuration reference.")
    config.add_argument("--markdown", action="store_true",
                        help="print docs/configuration.md as generated from the settings")
    config.set_defaults(func=cmd_config)

    infra = sub.add_parser("infra", help="start, stop or show the local Kafka and Redis (no Docker)",
                           description="Local Apache Kafka (KRaft, fetched with Maven) and Redis.")
    from concord.infra.cli import add_arguments

    add_arguments(infra)
    infra.set_defaults(func=cmd_infra)

    decode = sub.add_parser(
        "decode", help="decode a platform payload and print its canonical events (one JSON per line)",
        description="Run a payload (one JSON document, or JSON Lines) through its platform's codec and "
        "print each canonical event as one JSON object per line. Exit 0 when everything decoded (a valid "
        "payload of no interest prints nothing), 1 with a one-line reason when something did not.")
    decode.add_argument("platform", choices=["stripe", "salesforce", "zendesk", "netsuite"])
    decode.add_argument("file", nargs="?", default=None, help="file to read (default: standard input)")
    decode.set_defaults(func=cmd_decode)

    rules = sub.add_parser("rules", help="list the drift rules with their configuration",
                           description="List drift rules D01-D15 with the effective configuration "
                           "(built-in defaults overridden by CONCORD_RULES_FILE). See docs/rules.md.")
    rules.add_argument("--json", action="store_true", help="print JSON instead of a table")
    rules.set_defaults(func=cmd_rules)

    replay = sub.add_parser("replay", help="re-send dead letters (commands or ingest) for another try",
                            description="Re-drive dead letters: commands through the same ledger (a command "
                            "already done is not applied again), ingest payloads to their source topics.")
    from concord.app.replay import add_arguments as add_replay_arguments

    add_replay_arguments(replay)
    replay.set_defaults(func=cmd_replay)

    reconcile = sub.add_parser(
        "reconcile", help="list every record of the platforms and feed them through the live path",
        description="List each platform's records through its list API (resumable, paced by the shared rate "
        "limits) and feed them to the raw topics, where the live path judges them (docs/reconcile.md).")
    from concord.app.reconcile import add_arguments as add_reconcile_arguments

    add_reconcile_arguments(reconcile)
    reconcile.set_defaults(func=cmd_reconcile)

    doctor = sub.add_parser(
        "doctor", help="check the configuration against the live platforms and Kafka before the first run",
        description="Check this configuration against Kafka, Redis and the platforms: credentials, webhook secrets, "
        "the Stripe webhook endpoint and the Zendesk webhook (posting to Concord, subscribed to the event types "
        "Concord reads), topics and partitions, and the identity coverage (the share of customer records that carry "
        "the Salesforce Account Id). Prints a checklist with what to fix; exits 1 when something blocks a first run.")
    from concord.app.doctor import add_arguments as add_doctor_arguments

    add_doctor_arguments(doctor)
    doctor.set_defaults(func=cmd_doctor)

    saga = sub.add_parser(
        "saga", help="list, show or resume the quote-to-cash sagas (closed-won deal -> paying, entitled customer)",
        description="The quote-to-cash sagas (docs/console.md, \"Sagas\"): list them from the saga index in Redis, "
        "show one with why it stopped and what to fix, and resume a paused, failed or compensated one from the step "
        "that stopped it (sent to the state agent on the canonical topic).")
    from concord.app.saga_cmd import add_arguments as add_saga_arguments

    add_saga_arguments(saga)
    saga.set_defaults(func=cmd_saga)

    users_cmd = sub.add_parser("users", help="manage the console's users (the users file)",
                               description="The people who use the console: CONCORD_USERS_FILE (docs/console.md).")
    users_sub = users_cmd.add_subparsers(title="commands", metavar="COMMAND", required=True)
    users_add = users_sub.add_parser(
        "add", help="add a user and print their new token once",
        description="Add a user to the users file (created if missing, mode 0600) with the scrypt hash of a new "
        "random token, and print the token on standard output, once: it is stored nowhere. The workers read the "
        "file again when it changes.")
    users_add.add_argument("name", help="the user's name (letters, digits, _@+-): audit checkpoints show it")
    users_add.add_argument("--role", required=True, choices=["viewer", "operator"],
                           help="viewer reads; operator reads and acts")
    users_add.add_argument("--file", default="", help="the users file (default: CONCORD_USERS_FILE)")
    users_add.set_defaults(func=cmd_users_add)

    demo = sub.add_parser(
        "demo", help="the live closed loop on this machine: Kafka, Redis, Concord and the platform sandbox",
        description="Start (or reuse) local Kafka and Redis, then the Procfile's worker, webhooks and sandbox "
        "(honcho): the sandbox plays customers on Stripe, Salesforce, Zendesk and NetSuite and injects drift, "
        "the webhooks process takes its deliveries, the worker detects and corrects the drift. Prints a live "
        "summary; Ctrl-C (or the end of --duration) stops everything started here.")
    add_arguments(demo, with_action=False, with_session=False)  # the demo keeps its own session file
    from concord.app.demo import add_arguments as add_demo_arguments

    add_demo_arguments(demo)
    demo.set_defaults(func=cmd_demo)

    sandbox = sub.add_parser(
        "sandbox", help="serve Stripe, Salesforce, Zendesk and NetSuite APIs and play seeded customer traffic",
        description="The platform sandbox: the four platforms' APIs (for Concord's connectors), their native "
        "events delivered to Concord (webhooks, Salesforce CDC on Kafka or its Pub/Sub API), and seeded customer "
        "lifecycles with drift injected at --drift-rate. Ground truth at /_sandbox/injected, progress at "
        "/_sandbox/status.")
    from concord.sandbox.cli import add_arguments as add_sandbox_arguments
    from concord.sandbox.cli import run as run_sandbox

    add_sandbox_arguments(sandbox)
    sandbox.set_defaults(func=run_sandbox)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
