"""`concord demo`: the live closed loop on this machine.

Local Kafka and Redis (started or reused), then the `worker`, `webhooks` and `sandbox` processes of
the Procfile under one Procfile runner (honcho). The sandbox plays customer lifecycles across the four
platforms and injects drift, delivering its webhooks to the webhooks process (the ingress alone,
without Faust: it answers however busy the worker is); the worker detects the drift, commands the
sandbox's APIs, the sandbox's events come back and the findings resolve. The terminal shows one live
summary line; the processes' logs go to a file. Ctrl-C (or the end of `--duration`) stops everything
that was started here.

Platform tokens: Salesforce and NetSuite authenticate the way a real company's should (docs/platform-auth.md):
Salesforce by the OAuth 2.0 JWT bearer flow, NetSuite by OAuth 2.0 client credentials, each JWT signed with a
key whose self-signed certificate the sandbox's token endpoints check (`demo_keys`: made once under the
demo's cache folder). The sandbox's tokens live `TOKEN_LIFETIME_S`, so a run shows them renewed.

Time: the sandbox runs `--time-scale` simulated seconds per real second, so the worker gets rule
graces and the correction timeout divided by the same scale (a rules file written for the run):
an SLA of one hour at scale 3600 expires after one second, as it would after an hour of real
traffic.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from aiokafka.admin import AIOKafkaAdminClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from msgspec import Struct
from prometheus_client.parser import text_string_to_metric_families

from concord.app import users
from concord.core.kafka_security import KafkaSecurity, kafka_client_options, kafka_security
from concord.core.settings import Settings, env_var, mask_url, secret_file_vars
from concord.core.topics import PLATFORMS
from concord.drift import catalog
from concord.infra import cli as infra_cli
from concord.infra.process import port_open
from concord.sandbox.traffic import PLAN_TIERS

SANDBOX_HOST = "127.0.0.1"
SANDBOX_PORT = 6070
# The webhooks process's web port (the Procfile's `webhooks` entry): where the sandbox delivers.
WEBHOOKS_PORT = 6071
# The people of the demo's users file (docs/console.md "Users and roles"), and what each may do.
DEMO_USERS = (("vera", users.VIEWER), ("otto", users.OPERATOR))
ROLE_HINTS = {users.VIEWER: "reads", users.OPERATOR: "reads and acts: accept, snooze, retry, approve"}
# The sandbox's Salesforce Pub/Sub API (plaintext gRPC): where the Procfile's `bridge` subscribes.
SANDBOX_PUBSUB_PORT = 6072
# The Procfile's entries the demo runs: Salesforce's change events come through the bridge.
PROCESSES = ("worker", "webhooks", "bridge", "sandbox")
# The correction timeout never shrinks below this: a command, the platform's event and the
# re-evaluation take a moment even when simulated time flies.
MIN_CORRECTION_TIMEOUT_S = 30
# A due finding waits at least this long for an unread entitlement before "cannot judge" (re-reads
# take a second or two).
MIN_UNREAD_BOUND_S = 60
# Nor does a grace window shrink below this: a Zendesk change reaches Concord over a webhook and a
# re-read command, a Stripe change over one webhook; under load the two must not be judged in the
# gap between them (a grace window is there for systems that legitimately lag, Concord included).
MIN_GRACE_S = 10
# With --duration, the run has settled once nothing moved for this long after the traffic (longer than the
# smallest grace, so a finding about to fall due is waited for).
QUIET_S = 2 * MIN_GRACE_S
# How long the sandbox's Salesforce and NetSuite tokens live: a demo of some minutes renews them.
TOKEN_LIFETIME_S = 600

E_BUSY = ("concord demo: something already listens on port {worker}, {webhooks} or {sandbox} (another demo, a "
          "worker, a webhooks process or a sandbox): stop it first")
E_NO_HONCHO = ("concord demo: the Procfile runner `honcho` is not installed; install the dev extras "
               "(`pip install -e '.[dev]'`, which `make demo` does)")


class Totals(Struct, kw_only=True):
    """What the summary line shows, read from the worker's metrics and APIs and the sandbox."""

    at: float
    events: float = 0.0  # canonical events decoded
    open_findings: int = 0  # reported and not resolved (awaiting a command's effect, or a person)
    commanded: int = 0  # open findings whose correction is in flight
    escalated: int = 0  # open findings handed to a person after failed corrections
    commands: float = 0.0  # commands executed by the command agent
    dead_letters: float = 0.0  # commands dead-lettered
    resolutions: float = 0.0  # findings resolved (converged, corrected or accepted)
    injected: int = 0  # drift the sandbox injected (ground truth)
    sandbox_running: bool = True
    sagas_completed: float = 0.0  # quote-to-cash sagas that completed (docs/saga.md)
    sagas_stopped: float = 0.0  # sagas waiting for a person (paused or failed)


def metric_sums(text: str) -> dict[str, float]:
    """Prometheus text -> {sample name: sum over labels}, plus `<name>{status=resolved}` style keys."""
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
            for label, value in sample.labels.items():
                key = f"{sample.name}{{{label}={value}}}"
                sums[key] = sums.get(key, 0.0) + sample.value
    return sums


def totals_from(at: float, metrics_text: str, findings: dict[str, int], sandbox: dict[str, Any]) -> Totals:
    """`findings`: counts by index status (`open` = every finding not resolved)."""
    sums = metric_sums(metrics_text)
    return Totals(
        at=at,
        events=sums.get("concord_ingest_events_total", 0.0),
        open_findings=findings.get("open", 0),
        commanded=findings.get("commanded", 0),
        escalated=findings.get("escalated", 0),
        commands=sums.get("concord_commands_executed_total", 0.0),
        dead_letters=sums.get("concord_command_dead_letters_total", 0.0),
        resolutions=sums.get("concord_drift_transitions_total{status=resolved}", 0.0),
        injected=int(sandbox.get("injected", 0)),
        sandbox_running=bool(sandbox.get("running", True)),
        sagas_completed=sums.get("concord_saga_checkpoints_total{kind=completed}", 0.0),
        sagas_stopped=sums.get("concord_sagas_stopped", 0.0),
    )


def render(now: Totals, before: Totals | None) -> str:
    """One line: rates from the difference with the previous reading."""
    rate = 0.0
    if before is not None and now.at > before.at:
        rate = max(0.0, now.events - before.events) / (now.at - before.at)
    return (f"events/s {rate:7.1f} | injected {now.injected:4d} | open findings {now.open_findings:4d} | "
            f"commands {int(now.commands):5d} | dead letters {int(now.dead_letters):3d} | "
            f"resolved {int(now.resolutions):5d} | sagas done {int(now.sagas_completed):3d}, "
            f"stopped {int(now.sagas_stopped):3d}")


def scaled_rules(time_scale: float, approve: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A rules file: every grace window, the correction timeout and the unread bound divided by the time scale, and
    the sandbox's plan -> support tier map (D03 judges tiers only for mapped plans). The rules in `approve` are in
    `mode: approve`: their corrections wait on the board for an operator."""
    defaults = catalog.default_configs()
    rules: dict[str, dict[str, Any]] = {
        rule_id: {"grace_seconds": max(MIN_GRACE_S, int(config.grace_seconds / time_scale))
                  if config.grace_seconds else 0}
        for rule_id, config in defaults.items()}
    for rule_id in approve:
        rules[rule_id]["mode"] = "approve"
    timeout = max(MIN_CORRECTION_TIMEOUT_S, int(1800 / time_scale))
    unread = max(MIN_UNREAD_BOUND_S, int(3600 / time_scale))
    return {"rules": rules, "correction_timeout_seconds": timeout, "unread_bound_seconds": unread,
            "plan_tiers": dict(PLAN_TIERS)}


def approve_rules(text: str) -> frozenset[str]:
    """`--approve D01,D13` as a set of rule ids; an unknown id is an error naming the known ones."""
    chosen = frozenset(part.strip().upper() for part in text.split(",") if part.strip())
    known = {rule.id for rule in catalog.RULES}
    if unknown := sorted(chosen - known):
        raise argparse.ArgumentTypeError(f"unknown rule {', '.join(unknown)}; the rules are {', '.join(sorted(known))}")
    return chosen


class DemoUser(Struct, frozen=True):
    name: str
    role: str
    token: str


def demo_users(workdir: Path) -> tuple[Path, list[DemoUser]]:
    """A fresh users file for this run: a viewer and an operator, with new tokens (printed as the login hint)."""
    path = workdir / "users.toml"
    path.unlink(missing_ok=True)
    made = [DemoUser(name, role, users.add(path, name, role)) for name, role in DEMO_USERS]
    return path, made


class DemoKeys(Struct, frozen=True):
    """The demo's signing key and its self-signed certificate (PEM files)."""

    private_key: Path
    certificate: Path


def demo_keys(workdir: Path) -> DemoKeys:
    """An RSA key and a self-signed certificate for it under `workdir`, made on the first run and kept: the
    connected app's and the NetSuite integration's, as an admin would upload to them."""
    keys = DemoKeys(private_key=workdir / "platform-key.pem", certificate=workdir / "platform-cert.pem")
    if keys.private_key.exists() and keys.certificate.exists():
        return keys
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "concord-demo")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=730)).sign(key, hashes.SHA256()))
    keys.private_key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    keys.private_key.chmod(0o600)
    keys.certificate.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return keys


def token_flows(sandbox: str, keys: DemoKeys, environ: dict[str, str]) -> dict[str, str]:
    """The environment of the demo's token flows (variable -> value): Salesforce's JWT bearer, NetSuite's client
    credentials, and the certificate each sandbox token endpoint checks (`SANDBOX_*`, read by the Procfile).
    A platform whose static token the user set keeps it."""
    flows: dict[str, str] = {}
    if env_var("salesforce_access_token") not in environ:
        flows.update({env_var(field): value for field, value in (
            ("salesforce_auth_flow", "jwt_bearer"), ("salesforce_client_id", "3MVG9concord.demo.consumer.key"),
            ("salesforce_username", "integration@concord-demo.invalid"), ("salesforce_login_url", sandbox),
            ("salesforce_session_seconds", str(TOKEN_LIFETIME_S)))})
        flows[secret_file_vars()["salesforce_private_key"]] = str(keys.private_key)
        flows["SANDBOX_SALESFORCE_CERTIFICATE"] = str(keys.certificate)
    else:  # the user's static token: the instance is the sandbox
        flows[env_var("salesforce_instance_url")] = sandbox
    if env_var("netsuite_access_token") not in environ:
        flows.update({env_var(field): value for field, value in (
            ("netsuite_auth_flow", "client_credentials"), ("netsuite_client_id", "concord-demo-client-id"),
            ("netsuite_certificate_id", "concord-demo-certificate"))})
        flows[secret_file_vars()["netsuite_private_key"]] = str(keys.private_key)
        flows["SANDBOX_NETSUITE_CERTIFICATE"] = str(keys.certificate)
    return flows


def demo_environment(rules_file: Path, environ: dict[str, str], kafka_port: int = 9092,
                     redis_port: int = 6379, run_id: str = "concord-demo") -> dict[str, str]:
    """The processes' environment: connectors aimed at the sandbox, shared demo secrets, scaled rules.

    Each run gets its own app id and topic prefix (`run_id`): the sandbox starts from an empty world
    with the same ids every run (a seed replays the same customers), so Concord must start from empty
    tables and topics too, or it would judge this run's records against the last run's.
    Anything the user already set wins (a demo against a real Stripe test account stays possible).
    Salesforce and NetSuite get their tokens by their OAuth 2.0 flows (`token_flows`), with the key and
    certificate of `demo_keys` beside the rules file.
    """
    sandbox = f"http://{SANDBOX_HOST}:{SANDBOX_PORT}"
    demo = {
        "app_id": run_id,
        "topic_prefix": run_id,
        "kafka_url": f"kafka://127.0.0.1:{kafka_port}",
        "redis_url": f"redis://127.0.0.1:{redis_port}/0",
        "stripe_api_url": sandbox,
        "stripe_api_key": "sk_test_concord_demo_key",
        # The sandbox's Pub/Sub API, for the bridge; from the run's first event, not from when it subscribed
        # (the bridge and the sandbox start together).
        "salesforce_pubsub_url": f"grpc://{SANDBOX_HOST}:{SANDBOX_PUBSUB_PORT}",
        "salesforce_pubsub_replay_preset": "EARLIEST",
        "zendesk_url": sandbox,
        "zendesk_api_email": "demo@concord.invalid",
        "zendesk_api_token": "concord-demo-zendesk-token",
        "netsuite_url": sandbox,
        "stripe_webhook_secret": "whsec_concord_demo_signing_secret_0001",
        "zendesk_webhook_secret": "concord-demo-zendesk-signing-secret-01",
        "netsuite_webhook_secret": "concord-demo-netsuite-signing-secret-1",
        "admin_token": "concord-demo-admin-token",
        "read_token": "concord-demo-read-token",
        # Rules run at demo speed (graces of 10 s): an idle platform counts as read up to 5 s ago.
        "watermark_idle_seconds": "5",
        "rules_file": str(rules_file),
        # Simulated months pass in minutes: look for expired deadlines often.
        "deadline_scan_seconds": "0.2",
        # Fail over fast if a worker is killed during the demo.
        "kafka_session_timeout": "10",
        # The sandbox has no rate limits of its own; the defaults fit the real platforms' plans.
        "stripe_rate_limit": "200",
        "salesforce_rate_limit": "200",
        "zendesk_rate_limit": "200",
        "netsuite_rate_limit": "200",
    }
    env = dict(environ)
    for field, value in demo.items():
        env.setdefault(env_var(field), value)
    for variable, value in token_flows(sandbox, demo_keys(rules_file.parent), environ).items():
        env.setdefault(variable, value)
    env.setdefault("TOKEN_LIFETIME", str(TOKEN_LIFETIME_S))
    return env


def _get(url: str, timeout: float = 2.0, token: str = "") -> bytes | None:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (local URLs only)
            return bytes(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def read_totals(worker_url: str, sandbox_url: str, read_token: str = "") -> Totals | None:
    metrics = _get(f"{worker_url}/metrics")
    if metrics is None:
        return None
    findings = {}
    for status in ("open", "commanded", "escalated"):
        page = _get(f"{worker_url}/api/v1/drift?status={status}&limit=1", token=read_token)
        findings[status] = int(json.loads(page).get("total", 0)) if page else 0
    body = _get(f"{sandbox_url}/_sandbox/status")
    sandbox = json.loads(body) if body else {}
    return totals_from(time.time(), metrics.decode(), findings, sandbox)


class Settling:
    """When a run with `--duration` has settled: the traffic is over, no correction is in flight, and nothing
    moved (findings, resolutions, commands) for `quiet` seconds (a finding inside its grace window moves
    once due, and the demo's smallest grace is MIN_GRACE_S), or `limit` seconds passed since the traffic."""

    def __init__(self, quiet: float, limit: float) -> None:
        self.quiet = quiet
        self.limit = limit
        self.traffic_over_at: float | None = None
        self._last: tuple[int, int, float, float] | None = None
        self._still_since = 0.0

    def settled(self, now: Totals) -> bool:
        if now.sandbox_running:
            return False
        self.traffic_over_at = self.traffic_over_at or now.at
        seen = (now.open_findings, now.commanded, now.resolutions, now.commands)
        if seen != self._last:
            self._last, self._still_since = seen, now.at
        if now.at - self.traffic_over_at >= self.limit:
            return True
        return now.commanded == 0 and now.at - self._still_since >= self.quiet


def write_env_file(path: Path, env: dict[str, str]) -> Path:
    """The demo's `CONCORD_*` settings as `NAME=value` lines (mode 0600), so a person can run `concord doctor` or
    any command against the running demo: `env $(cat .cache/demo/demo.env) concord doctor`."""
    path.write_text("".join(f"{name}={value}\n" for name, value in sorted(env.items()) if name.startswith("CONCORD_")))
    path.chmod(0o600)
    return path


def doctor_line(env: dict[str, str], env_file: Path) -> str:
    """`concord doctor` run against the demo's own setup, in one line (its checklist when something blocks)."""
    try:
        done = subprocess.run([sys.executable, "-m", "concord.app.cli", "doctor", "--sample", "500"], env=env,
                              capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return "concord demo: concord doctor did not finish within 120 s"
    lines = done.stdout.strip().splitlines()
    summary = lines[-1] if lines else done.stderr.strip()[-200:]
    if done.returncode != 0:
        return "concord demo: concord doctor found problems:\n" + "\n".join(lines)
    verdict = summary.split(". ")[0].lower()
    warnings = [line.strip() for line in lines if "[warn]" in line]
    return "\n".join([f"concord demo: concord doctor: {verdict} (again: env $(cat {env_file}) concord doctor)",
                      *(f"concord demo:   {line}" for line in warnings)])


def _honcho() -> str:
    found = shutil.which("honcho", path=str(Path(sys.executable).parent)) or shutil.which("honcho")
    if found is None:
        raise SystemExit(E_NO_HONCHO)
    return found


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Infra up, `honcho start worker webhooks bridge sandbox`, a live summary until Ctrl-C or the end; stop what we
    started."""
    honcho = _honcho()
    cache = Path(args.cache)
    workdir = cache / "demo"
    workdir.mkdir(parents=True, exist_ok=True)
    session = cache / "demo-session.json"
    if infra_cli.run(argparse.Namespace(**{**vars(args), "action": "up", "session": session})) != 0:
        return 2
    rules_file = workdir / "rules.json"
    rules_file.write_text(json.dumps(scaled_rules(args.time_scale, args.approve), indent=2))
    if any(port_open(host, port) for host, port in ((settings.web_host, settings.web_port),
                                                     (settings.web_host, WEBHOOKS_PORT), (SANDBOX_HOST, SANDBOX_PORT),
                                                     (SANDBOX_HOST, SANDBOX_PUBSUB_PORT))):
        raise SystemExit(E_BUSY.format(worker=settings.web_port, webhooks=WEBHOOKS_PORT,
                                       sandbox=f"{SANDBOX_PORT}/{SANDBOX_PUBSUB_PORT}"))
    run_id = f"concord-demo-{int(time.time())}"
    webhooks_url = f"http://{settings.web_host}:{WEBHOOKS_PORT}"
    env = demo_environment(rules_file, dict(os.environ), args.kafka_port, args.redis_port, run_id)
    people: list[DemoUser] = []
    if env_var("users_file") not in env:  # the user's own users file wins
        users_file, people = demo_users(workdir)
        env[env_var("users_file")] = str(users_file)
    env.update({"SEED": str(args.seed), "CUSTOMERS": str(args.customers), "DRIFT_RATE": str(args.drift_rate),
                "TIME_SCALE": str(args.time_scale), "DURATION": str(args.duration), "HISTORY": str(args.history),
                "LOSE_RATE": str(args.lose_rate), "DEAL_RATE": str(args.deal_rate),
                "SANDBOX_PORT": str(SANDBOX_PORT), "PYTHONUNBUFFERED": "1", "WEBHOOKS_PORT": str(WEBHOOKS_PORT),
                "SANDBOX_CONCORD_URL": webhooks_url,
                "SALESFORCE_DELIVERY": "pubsub", "SANDBOX_PUBSUB_PORT": str(SANDBOX_PUBSUB_PORT),
                # The Procfile says `concord ...`: the one installed beside this Python.
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"})
    if args.reconcile_every > 0:
        for platform in PLATFORMS:  # the user's own setting wins
            env.setdefault(env_var(f"{platform}_reconcile_every_seconds"), str(args.reconcile_every))
    log_path = workdir / "demo.log"
    worker_url = f"http://{settings.web_host}:{settings.web_port}"
    sandbox_url = f"http://{SANDBOX_HOST}:{SANDBOX_PORT}"
    procfile = Path(args.procfile)
    with log_path.open("wb") as log:
        runner = subprocess.Popen([honcho, "-f", str(procfile), "-d", str(procfile.parent.resolve()),
                                   "start", *PROCESSES],
                                  env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    print(f"concord demo: seed {args.seed}, {args.customers} customers, drift rate {args.drift_rate}, "
          f"time scale {args.time_scale:g}x, duration {args.duration or 'until Ctrl-C'}"
          f"{'s' if args.duration else ''}")
    print(f"concord demo:   platform tokens: Salesforce {env.get(env_var('salesforce_auth_flow'), 'static')}, "
          f"NetSuite {env.get(env_var('netsuite_auth_flow'), 'static')}, tokens live {env['TOKEN_LIFETIME']} s")
    if args.reconcile_every > 0:
        print(f"concord demo:   every platform reconciled every {args.reconcile_every:g} s "
              f"(progress on the board's health strip and {worker_url}/api/v1/reconcile)")
    read_token = env[env_var("read_token")]
    print(f"concord demo: drift board {worker_url}/")
    for person in people:
        print(f"concord demo:   sign in as {person.role} {person.name} ({ROLE_HINTS[person.role]}) "
              f"with the token {person.token}")
    if not people:
        print(f"concord demo:   sign in with a token of {env[env_var('users_file')]} or the read token {read_token}")
    if args.approve:
        print(f"concord demo:   corrections of {', '.join(sorted(args.approve))} wait for an operator's approval")
    print(f"concord demo: findings {worker_url}/api/v1/drift (Authorization: Bearer {read_token})   "
          f"metrics {worker_url}/metrics   webhooks' metrics {webhooks_url}/metrics   "
          f"sandbox {sandbox_url}/_sandbox/status")
    print(f"concord demo: process logs in {log_path}; Ctrl-C stops everything started here\n", flush=True)
    code = 0
    before: Totals | None = None
    last: Totals | None = None
    settling = Settling(quiet=min(args.settle, QUIET_S), limit=args.settle)
    held = False
    env_file = write_env_file(workdir / "demo.env", env)
    checked = False
    try:
        while runner.poll() is None:
            time.sleep(1.0)
            now = read_totals(worker_url, sandbox_url, read_token)
            if now is None:
                print("\rconcord demo: waiting for the worker ...", end="", flush=True)
                continue
            if not checked:  # the worker made the topics: what `concord doctor` says of this setup
                checked = True
                print("\r" + doctor_line(env, env_file), flush=True)
            print("\r" + render(now, before), end="", flush=True)
            before, last = now, now
            # With --duration: once the sandbox stopped, give the loop time to finish the corrections
            # in flight (findings left for a person stay open: that is their end).
            if args.duration and not held and settling.settled(now):
                if not args.hold:
                    break
                held = True
                print("\nconcord demo: settled; holding everything up until Ctrl-C", flush=True)
        else:
            code = 1
            print(f"\nconcord demo: a process stopped; see {log_path}", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        print("\nconcord demo: stopping ...", flush=True)
        _stop(runner)
        if env[env_var("topic_prefix")] == run_id:
            forget_run(env[env_var("kafka_url")], kafka_security(settings), env[env_var("redis_url")], run_id)
        infra_cli.run(argparse.Namespace(**{**vars(args), "action": "down", "session": session}))
    if last is not None:
        review = last.open_findings - last.commanded - last.escalated
        print(f"concord demo: {last.injected} drifts injected, {int(last.resolutions)} findings resolved, "
              f"{int(last.commands)} commands executed, {int(last.dead_letters)} dead-lettered; open: "
              f"{review} for review, {last.escalated} escalated, {last.commanded} corrections in flight")
    return code


def forget_run(kafka_url: str, security: KafkaSecurity, redis_url: str, run_id: str) -> None:
    """Delete this run's topics (its own and its tables' changelogs) and Redis keys: runs never pile up."""

    async def forget() -> tuple[int, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_url.removeprefix("kafka://"),
                                    **kafka_client_options(security))
        await admin.start()
        try:
            topics = [t for t in await admin.list_topics() if t.startswith((f"{run_id}.", f"{run_id}-"))]
            if topics:
                await admin.delete_topics(topics)
        finally:
            await admin.close()
        client = aioredis.from_url(redis_url)
        try:
            keys = [key async for key in client.scan_iter(match=f"{run_id}:*", count=1000)]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()
        return len(topics), len(keys)

    try:
        topics, keys = asyncio.run(forget())
    except Exception as exc:  # cleanup must not hide how the run ended
        print(f"concord demo: could not delete this run's topics and keys "
              f"({type(exc).__name__}: {mask_url(str(exc))})", file=sys.stderr)
        return
    print(f"concord demo: deleted this run's {topics} topics and {keys} Redis keys")


def _stop(runner: subprocess.Popen[bytes]) -> None:
    if runner.poll() is not None:
        return
    os.killpg(runner.pid, signal.SIGINT)  # honcho passes it on to the processes
    try:
        runner.wait(timeout=40)
    except subprocess.TimeoutExpired:
        os.killpg(runner.pid, signal.SIGKILL)
        runner.wait()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's own options (the infra options are added by the caller)."""
    parser.add_argument("--seed", type=int, default=1, help="sandbox traffic seed (default: %(default)s)")
    parser.add_argument("--customers", type=int, default=50, help="customers played (default: %(default)s)")
    parser.add_argument("--drift-rate", type=float, default=0.05,
                        help="probability that a lifecycle step injects drift (default: %(default)s)")
    parser.add_argument("--time-scale", type=float, default=3600.0,
                        help="simulated seconds per real second (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=0.0,
                        help="seconds of sandbox traffic; 0 runs until Ctrl-C (default: %(default)s)")
    parser.add_argument("--history", type=int, default=0, metavar="N",
                        help="customers the sandbox holds at rest before its traffic, no event sent about them "
                        "(`concord sandbox --history`; default: %(default)s)")
    parser.add_argument("--lose-rate", type=float, default=0.0, metavar="R",
                        help="share of the sandbox's platform events lost instead of delivered, 0 to 1 "
                        "(`concord sandbox --lose-rate`; default: %(default)s)")
    parser.add_argument("--deal-rate", type=float, default=0.2, metavar="R",
                        help="share of the sandbox's new customers whose closed-won deal Concord's quote-to-cash saga "
                        "provisions, 0 to 1 (`concord sandbox --deal-rate`, docs/saga.md; default: %(default)s)")
    parser.add_argument("--reconcile-every", type=float, default=0.0, metavar="SECONDS",
                        help="the worker reconciles every platform this often (the sandbox's list APIs; "
                        "CONCORD_<PLATFORM>_RECONCILE_EVERY_SECONDS); 0: never (default: %(default)s)")
    parser.add_argument("--settle", type=float, default=60.0,
                        help="with --duration: at most this many seconds after the traffic for open findings to "
                        f"resolve; the run ends sooner once nothing moved for {QUIET_S} s (default: %(default)s)")
    parser.add_argument("--hold", action="store_true",
                        help="with --duration: once settled, keep everything running until Ctrl-C (to look "
                        "at the findings, or score the run: python -m concord.bench.reliability)")
    parser.add_argument("--approve", type=approve_rules, default=frozenset(), metavar="RULES",
                        help="rules (comma-separated, e.g. D01,D13) whose corrections wait on the board until an "
                        "operator approves them (`mode: approve`; default: none, every correction is sent)")
    parser.add_argument("--procfile", default="Procfile", help="Procfile to run (default: %(default)s)")
