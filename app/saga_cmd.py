"""`concord saga`: the quote-to-cash sagas from the command line (issue 17; drift/saga.py).

    concord saga list [--state paused] [--customer 001A] [--limit 50] [--json]
    concord saga show 006A000000XYZ [--json]
    concord saga resume 006A000000XYZ --note "tax id set in Salesforce"

`list` and `show` read the saga index in Redis (connectors/saga_index.py), as `/api/v1/sagas` does: every
worker's sagas, listed most recently changed first (`list` puts the ones waiting for a person, paused then
failed, first, as the console does). `resume` looks the saga up there, refuses one that does not wait for a
person with the same words as the API (app/sagas.py: only paused, failed and compensated sagas resume), and
sends a `ResumeSaga` on the canonical topic keyed by the customer key (acks=all; it says "sent" only once Kafka
has it), under the name `cli:<the OS user>`, which the saga's `saga.resumed` checkpoint and the customer's
timeline show. The state agent that owns the customer continues the saga from the step that stopped it.

Exit status: 0 done; 1 with a one-line reason (Redis or Kafka unreachable, no such saga, not resumable).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, Final

import msgspec

from concord.core.kafka_security import kafka_client_options
from concord.core.settings import Settings, kafka_bootstrap, mask_url
from concord.drift.saga import STATES, SagaView

# redis, aiokafka and the index are imported where used: `concord --help` builds this parser and should stay quick.

E_REDIS: Final = ("cannot reach Redis at {url} ({error}): the saga index is there. Is it running (`concord infra "
                  "status`) and is CONCORD_REDIS_URL right?")
E_KAFKA: Final = ("cannot reach Kafka at {bootstrap} ({error}): the resume was not sent. Is it running (`concord infra "
                  "status`) and is CONCORD_KAFKA_URL right?")
E_LIMIT: Final = "--limit {limit}: ask for 1 to {most} sagas"
CONNECT_TIMEOUT_SECONDS: Final = 15.0


class SagaCommandError(Exception):
    """`concord saga` cannot do what it was asked; the message says why and what to do."""


def _print(line: str) -> None:
    print(line, flush=True)


def cli_user() -> str:
    """Who resumes from the command line: `cli:<the OS user>` (the audit checkpoint's `by`)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container), and no LOGNAME/USER set
        user = "unknown"
    return f"cli:{user}"


def _when(ms: int) -> str:
    from concord.core.messages import iso_minutes

    return iso_minutes(ms) if ms else "-"


def table(sagas: Sequence[SagaView]) -> list[str]:
    """The sagas as `concord saga list` prints them: one line each, then why each waiting one stopped."""
    if not sagas:
        return ["no saga matches"]
    lines = [f"{'opportunity':20} {'customer':20} {'state':12} {'step':18} {'changed':23} reason"]
    for s in sagas:
        lines.append(f"{s.opportunity_id:20} {s.customer_key:20} {s.state:12} {s.step:18} {_when(s.updated_at):23} "
                     f"{s.reason_code or '-'}")
    return lines


def details(saga: SagaView) -> list[str]:
    """One saga as `concord saga show` prints it."""
    deal = " ".join(str(part) for part in (saga.plan, f"x {saga.quantity}" if saga.quantity is not None else None,
                                           saga.amount, saga.currency) if part is not None)
    lines = [
        f"opportunity  {saga.opportunity_id}",
        f"customer     {saga.customer_key}",
        f"state        {saga.state}",
        f"step         {saga.step}",
        f"version      {saga.version}",
        f"deal         {deal or '-'}",
        f"started      {_when(saga.started_at)}",
        f"changed      {_when(saga.updated_at)}",
        f"done         {', '.join(saga.done) or '-'}",
    ]
    if saga.undone:
        lines.append(f"undone       {', '.join(saga.undone)}")
    for step, record in saga.records.items():
        lines.append(f"record       {step}: {record}")
    if saga.command_id:
        lines.append(f"in flight    command {saga.command_id} (sent {saga.attempts} times)")
    if saga.reason_code:
        lines.append(f"reason       {saga.reason_code}: {saga.reason}")
    if saga.fix:
        lines.append(f"to fix       {saga.fix}")
    from concord.app.sagas import resumable

    if resumable(saga):
        lines.append(f"resume with  concord saga resume {saga.opportunity_id} --note '<what was fixed>'")
    return lines


def _json(value: Any) -> str:
    return json.dumps(msgspec.to_builtins(value), indent=2)


async def _with_index(settings: Settings, use: Callable[[Any], Any]) -> Any:
    """`use(index)` against the saga index, the Redis client closed after; SagaCommandError when Redis does not
    answer."""
    from concord.connectors.executor import REDIS_ERRORS
    from concord.connectors.ledger import redis_client
    from concord.connectors.saga_index import SagaIndex

    client = redis_client(settings.redis_url)
    try:
        return await use(SagaIndex(client, settings.topic_prefix))
    except REDIS_ERRORS as exc:
        raise SagaCommandError(E_REDIS.format(url=mask_url(settings.redis_url),
                                              error=f"{type(exc).__name__}: {exc}")) from None
    finally:
        await client.aclose()


async def list_sagas(settings: Settings, state: str | None, customer: str | None, limit: int) -> list[SagaView]:
    """The sagas asked for; with no state, those waiting for a person first (as the console lists them)."""
    from concord.app.sagas import waiting_first

    every: list[SagaView] = await _with_index(settings, lambda index: index.all())
    return waiting_first(every, state, customer, limit)


async def find(settings: Settings, opportunity_id: str) -> SagaView:
    from concord.app.sagas import E_NO_SAGA

    found: SagaView | None = await _with_index(settings, lambda index: index.get(opportunity_id))
    if found is None:
        raise SagaCommandError(E_NO_SAGA.format(opportunity_id=opportunity_id))
    return found


async def send_resume(settings: Settings, key: bytes, value: bytes) -> None:
    """Produce one record on the canonical topic (acks=all) and wait until Kafka has it."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    from concord.core.topics import topic_names

    bootstrap = kafka_bootstrap(settings)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", request_timeout_ms=30_000,
                                **kafka_client_options(settings))
    try:
        await asyncio.wait_for(producer.start(), CONNECT_TIMEOUT_SECONDS)
        await producer.send_and_wait(topic_names(settings).canonical, value=value, key=key)
    except (KafkaError, OSError, TimeoutError) as exc:
        raise SagaCommandError(E_KAFKA.format(bootstrap=mask_url(bootstrap),
                                              error=f"{type(exc).__name__}: {exc}")) from None
    finally:
        await producer.stop()


async def resume(settings: Settings, opportunity_id: str, note: str, by: str) -> tuple[SagaView, Any]:
    """Look the saga up, refuse it when it does not wait for a person, send its resume; (the saga, the message)."""
    from concord.app.sagas import NotResumable, resume_of
    from concord.core import messages

    saga = await find(settings, opportunity_id)
    try:
        message = resume_of(saga, by, note)
    except NotResumable as exc:
        raise SagaCommandError(str(exc)) from None
    await send_resume(settings, saga.customer_key.encode(), messages.encode(message))
    return saga, message


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `concord saga` sub-commands and their options."""
    from concord.connectors.saga_index import LIMIT_MAX

    what = parser.add_subparsers(dest="what", metavar="COMMAND", required=True)
    listing = what.add_parser(
        "list", help="list the sagas, waiting for a person first",
        description="List the quote-to-cash sagas from the saga index in Redis: with no --state, the ones waiting "
        "for a person (paused, then failed) first, then the most recently changed.")
    listing.add_argument("--state", choices=STATES, help="only the sagas in this state")
    listing.add_argument("--customer", metavar="KEY", help="only this customer's sagas (its CRM account id)")
    listing.add_argument("--limit", type=int, default=100, help=f"at most this many (1 to {LIMIT_MAX}; default "
                         "%(default)s)")
    listing.add_argument("--json", action="store_true", help="print the sagas as JSON (as /api/v1/sagas has them)")
    show = what.add_parser(
        "show", help="one saga: its state and step, why it stopped and what to fix",
        description="Show one saga from the saga index: state, step, the steps done and their records, the "
        "command in flight, why it stopped and what to fix before resuming it.")
    show.add_argument("opportunity_id", metavar="ID", help="the won opportunity the saga provisions")
    show.add_argument("--json", action="store_true", help="print the saga as JSON")
    resume_cmd = what.add_parser(
        "resume", help="resume a paused, failed or compensated saga from the step that stopped it",
        description="Send a resume of the saga to the state agent that owns its customer (on the canonical topic, "
        "keyed by the customer), as `cli:<your OS user>`. Only a paused, failed or compensated saga resumes: fix "
        "what `concord saga show` says first.")
    resume_cmd.add_argument("opportunity_id", metavar="ID", help="the won opportunity the saga provisions")
    resume_cmd.add_argument("--note", default="", help="why, or what was fixed (shown on the customer's timeline)")


def run(settings: Settings, args: argparse.Namespace, out: Callable[[str], None] = _print) -> int:
    """`concord saga ...`: 0 when done; 1, with a one-line reason on standard error, when not."""
    from concord.app.sagas import MAX_NOTE
    from concord.connectors.saga_index import LIMIT_MAX

    try:
        if args.what == "list":
            if not 1 <= args.limit <= LIMIT_MAX:
                raise SagaCommandError(E_LIMIT.format(limit=args.limit, most=LIMIT_MAX))
            sagas = asyncio.run(list_sagas(settings, args.state, args.customer or None, args.limit))
            for line in [_json(sagas)] if args.json else table(sagas):
                out(line)
        elif args.what == "show":
            saga = asyncio.run(find(settings, args.opportunity_id))
            for line in [_json(saga)] if args.json else details(saga):
                out(line)
        else:
            if len(args.note) > MAX_NOTE:
                raise SagaCommandError(f"--note: at most {MAX_NOTE} characters, got {len(args.note)}")
            saga, message = asyncio.run(resume(settings, args.opportunity_id, args.note, cli_user()))
            out(f"resume of the saga of opportunity {saga.opportunity_id} (customer {saga.customer_key}, {saga.state} "
                f"at step {saga.step}) sent as {message.by}; the state agent continues it from that step")
    except SagaCommandError as exc:
        print(f"concord saga {args.what}: {exc}", file=sys.stderr)
        return 1
    return 0
