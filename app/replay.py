"""`concord replay`: re-drive dead letters, once they can succeed.

* `concord replay commands [--id ID ...] [--rule R] [--platform P] [--action A] [--all] [--dry-run]`
  re-sends matching command dead letters (`<prefix>.dlq.commands`) to `<prefix>.commands` with the
  header `concord-replay: 1`. They go through the same ledger: the first replay of a dead-lettered
  command executes it once (failed -> pending), a second replay finds it done and does nothing. Each
  command id is re-sent once per run, however often it was dead-lettered.
* `concord replay ingest [--reason R] [--platform P] [--all] [--dry-run]` re-sends ingest dead
  letters' original bytes with their original headers (without the dead-letter headers) to their
  source topic (header `concord-source-topic`), e.g. after a codec fix.

Both read the dead-letter topic from the beginning up to the end offsets it had when the run started
(records dead-lettered again during the run are not re-read), with a consumer of their own that
commits nothing, so the topic's other readers are not affected. A filter or `--all` is required.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

import msgspec
from msgspec import Struct

from concord.core import messages
from concord.core.kafka_security import KafkaSecurity, kafka_client_options, kafka_security
from concord.core.messages import Command
from concord.core.settings import Settings, kafka_bootstrap

# aiokafka is imported where Kafka is used: `concord --help` builds this parser and should stay quick.

E_EXPIRED: Final = (
    "skipped {command_id}: dead-lettered {hours:.0f} h longer ago than the ledger remembers "
    "(CONCORD_COMMAND_LEDGER_TTL_SECONDS); a later correction may have superseded it, which the ledger can no "
    "longer tell: check the finding, then replay with --include-expired if it still applies")
E_KAFKA: Final = (
    "cannot reach Kafka at {bootstrap} ({error}). Is it running (`concord infra status`) and is "
    "CONCORD_KAFKA_URL right?"
)
E_NO_FILTER_COMMANDS: Final = (
    "say which command dead letters to replay: --id, --rule, --platform or --action (they combine), "
    "or --all for every one"
)
E_NO_FILTER_INGEST: Final = "say which ingest dead letters to replay: --reason or --platform, or --all for every one"

PROGRESS_EVERY: Final = 100
CONNECT_TIMEOUT_SECONDS: Final = 15.0

_decode_command = msgspec.json.Decoder(Command).decode


def _print(line: str) -> None:
    print(line, flush=True)


class ReplayError(Exception):
    """Replay cannot run (Kafka unreachable, no filter); the message says what to do."""


class CommandFilter(Struct, frozen=True, kw_only=True):
    """Which command dead letters to replay: every given criterion must match; `all` matches everything."""

    ids: frozenset[str] = frozenset()
    rule: str | None = None
    platform: str | None = None
    action: str | None = None
    all: bool = False

    @property
    def given(self) -> bool:
        return self.all or bool(self.ids or self.rule or self.platform or self.action)

    def matches(self, command: Command) -> bool:
        if self.all:
            return True
        return ((not self.ids or command.command_id in self.ids)
                and (self.rule is None or command.rule == self.rule)
                and (self.platform is None or command.platform == self.platform)
                and (self.action is None or command.action == self.action))


class IngestFilter(Struct, frozen=True, kw_only=True):
    """Which ingest dead letters to replay, by the reason and platform the ingest agent recorded."""

    reason: str | None = None
    platform: str | None = None
    all: bool = False

    @property
    def given(self) -> bool:
        return self.all or bool(self.reason or self.platform)

    def matches(self, headers: dict[str, bytes]) -> bool:
        if self.all:
            return True
        return ((self.reason is None or headers.get(messages.DLQ_REASON, b"").decode() == self.reason)
                and (self.platform is None or headers.get(messages.DLQ_PLATFORM, b"").decode() == self.platform))


class Summary(Struct, frozen=True, kw_only=True):
    """What a replay run did."""

    read: int  # dead letters read
    matched: int  # of those, matching the filter
    replayed: int  # re-sent
    skipped: int  # matched but not re-sent: dry run, duplicate command id, unreadable, no source topic

    def line(self, what: str) -> str:
        return (f"replay {what}: {self.read} dead letters read, {self.matched} matched, {self.replayed} replayed, "
                f"{self.skipped} skipped")


def original_headers(headers: Sequence[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """An ingest dead letter's headers without the ones the ingest agent added."""
    return [(k, v) for k, v in headers if k not in messages.INGEST_DLQ_HEADERS]


def _last_headers(headers: Sequence[tuple[str, bytes]]) -> dict[str, bytes]:
    return {k: v for k, v in headers}


class Replayable(Struct, frozen=True):
    """One dead letter chosen for replay: where it goes and what is sent."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    label: str  # for the dry run's listing
    # A keyless record (an envelope of events: agents/envelopes.py) goes back to the partition it was read from,
    # where its keys live; a keyed one to its key's partition.
    partition: int | None = None


def choose_commands(records: Sequence[Any], flt: CommandFilter, commands_topic: str,
                    out: Callable[[str], None], not_before_ms: int = 0) -> tuple[int, list[Replayable], int]:
    """The command dead letters to re-send (one per command id); returns (matched, chosen, skipped).

    Dead letters that failed before `not_before_ms` are skipped: the ledger no longer remembers them,
    so a replay could not tell whether a later correction superseded them (see E_EXPIRED).
    """
    matched = skipped = 0
    chosen: dict[str, Replayable] = {}
    for record in records:
        try:
            command = _decode_command(record.value)
        except msgspec.DecodeError as exc:
            if flt.all:
                matched += 1
                skipped += 1
                out(f"skipped unreadable dead letter at {record.topic}[{record.partition}]@{record.offset}: {exc}")
            continue
        if not flt.matches(command):
            continue
        matched += 1
        if command.command_id in chosen:
            skipped += 1  # dead-lettered more than once: one replay re-drives it
            continue
        headers = _last_headers(record.headers)
        reason = headers.get(messages.DLQ_REASON, b"").decode()
        failed_at = int(headers.get(messages.DLQ_FAILED_AT, b"0") or 0)
        if not_before_ms and failed_at < not_before_ms:
            skipped += 1
            out(E_EXPIRED.format(command_id=command.command_id, hours=(not_before_ms - failed_at) / 3_600_000))
            continue
        chosen[command.command_id] = Replayable(
            commands_topic, record.key, record.value, [(messages.REPLAY, b"1")],
            f"{command.command_id} {command.platform} {command.action} rule={command.rule or '-'} "
            f"customer={command.customer_key or '-'}: {reason}")
    return matched, list(chosen.values()), skipped


def choose_ingest(records: Sequence[Any], flt: IngestFilter,
                  out: Callable[[str], None]) -> tuple[int, list[Replayable], int]:
    """The ingest dead letters to re-send to their source topics; returns (matched, chosen, skipped)."""
    matched = skipped = 0
    chosen: list[Replayable] = []
    for record in records:
        headers = _last_headers(record.headers)
        if not flt.matches(headers):
            continue
        matched += 1
        source = headers.get(messages.DLQ_SOURCE_TOPIC, b"").decode()
        if not source:
            skipped += 1
            out(f"skipped dead letter at {record.topic}[{record.partition}]@{record.offset}: it names no source "
                f"topic ({messages.DLQ_SOURCE_TOPIC})")
            continue
        reason = headers.get(messages.DLQ_REASON, b"").decode()
        partition = headers.get(messages.DLQ_SOURCE_PARTITION, b"").decode()
        chosen.append(Replayable(source, record.key, record.value, original_headers(record.headers),
                                 f"{record.topic}@{record.partition}:{record.offset} -> {source}: {reason}",
                                 int(partition) if record.key is None and partition.isdigit() else None))
    return matched, chosen, skipped


async def read_dead_letters(bootstrap: str, topic: str, security: KafkaSecurity,
                            timeout: float = 120.0) -> list[Any]:
    """Every record of `topic` up to the end offsets it has now (none when the topic does not exist)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaError

    from concord.agents.faust_internals.recovery import force_metadata_update

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", request_timeout_ms=10_000,
                                **kafka_client_options(security))
    try:
        await asyncio.wait_for(consumer.start(), CONNECT_TIMEOUT_SECONDS)
    except (KafkaError, OSError, TimeoutError) as exc:
        await consumer.stop()
        raise ReplayError(E_KAFKA.format(bootstrap=bootstrap, error=f"{type(exc).__name__}: {exc}")) from None
    try:
        await force_metadata_update(consumer)
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            return []
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        out: list[Any] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            if loop.time() > deadline:
                raise ReplayError(f"could not read {topic} to its end within {timeout:.0f} s; is Kafka healthy?")
            for tp, records in (await consumer.getmany(*partitions, timeout_ms=500)).items():
                out.extend(r for r in records if r.offset < ends[tp])
        return out
    finally:
        await consumer.stop()


async def resend(bootstrap: str, security: KafkaSecurity, chosen: Sequence[Replayable], out: Callable[[str], None],
                 every: int = PROGRESS_EVERY) -> int:
    """Produce `chosen` (acks=all, each acknowledged); progress every `every` records. Returns how many."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", request_timeout_ms=30_000,
                                **kafka_client_options(security))
    try:
        await asyncio.wait_for(producer.start(), CONNECT_TIMEOUT_SECONDS)
    except (KafkaError, OSError, TimeoutError) as exc:
        await producer.stop()
        raise ReplayError(E_KAFKA.format(bootstrap=bootstrap, error=f"{type(exc).__name__}: {exc}")) from None
    sent = 0
    try:
        for start in range(0, len(chosen), every):
            batch = chosen[start:start + every]
            # In flight together, acknowledged together: one round trip per batch, not per record.
            pending = [await producer.send(item.topic, value=item.value, key=item.key, headers=item.headers,
                                           partition=item.partition) for item in batch]
            for delivery in pending:
                await delivery
            sent += len(batch)
            if sent < len(chosen):
                out(f"replayed {sent}/{len(chosen)} ...")
    except KafkaError as exc:
        raise ReplayError(f"replay stopped after {sent} of {len(chosen)} records: {type(exc).__name__}: {exc}; "
                          "running it again is safe (the ledger skips commands already done)") from None
    finally:
        await producer.stop()
    out(f"replayed {sent}/{len(chosen)}")
    return sent


async def replay_commands(settings: Settings, flt: CommandFilter, dry_run: bool = False,
                          out: Callable[[str], None] = _print, include_expired: bool = False) -> Summary:
    """Re-send the command dead letters matching `flt` to the command topic, marked as replays.

    Dead letters older than the ledger's memory (`command_ledger_ttl_seconds`) are skipped unless
    `include_expired`."""
    from concord.core.topics import topic_names

    if not flt.given:
        raise ReplayError(E_NO_FILTER_COMMANDS)
    names = topic_names(settings)
    bootstrap, security = kafka_bootstrap(settings), kafka_security(settings)
    records = await read_dead_letters(bootstrap, names.dlq_commands, security)
    not_before = 0 if include_expired else int(time.time() * 1000) - settings.command_ledger_ttl_seconds * 1000
    matched, chosen, skipped = choose_commands(records, flt, names.commands, out, not_before)
    return await _send(bootstrap, security, records, matched, chosen, skipped, dry_run, out)


async def replay_ingest(settings: Settings, flt: IngestFilter, dry_run: bool = False,
                        out: Callable[[str], None] = _print) -> Summary:
    """Re-send the ingest dead letters matching `flt`, as they were delivered, to their source topics."""
    from concord.core.topics import topic_names

    if not flt.given:
        raise ReplayError(E_NO_FILTER_INGEST)
    names = topic_names(settings)
    bootstrap, security = kafka_bootstrap(settings), kafka_security(settings)
    records = await read_dead_letters(bootstrap, names.dlq_ingest, security)
    matched, chosen, skipped = choose_ingest(records, flt, out)
    return await _send(bootstrap, security, records, matched, chosen, skipped, dry_run, out)


async def _send(bootstrap: str, security: KafkaSecurity, records: Sequence[Any], matched: int,
                chosen: Sequence[Replayable], skipped: int, dry_run: bool, out: Callable[[str], None]) -> Summary:
    if dry_run:
        for item in chosen:
            out(f"would replay {item.label}")
        return Summary(read=len(records), matched=matched, replayed=0, skipped=skipped + len(chosen))
    replayed = await resend(bootstrap, security, chosen, out) if chosen else 0
    return Summary(read=len(records), matched=matched, replayed=replayed, skipped=skipped)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `concord replay` sub-commands and options."""
    what = parser.add_subparsers(dest="what", metavar="WHAT", required=True)
    commands = what.add_parser(
        "commands", help="re-send command dead letters to the command topic (through the same ledger)",
        description="Re-send dead-lettered corrective commands. Criteria combine (all must match); "
        "a command already done is not applied again.")
    commands.add_argument("--id", dest="ids", action="append", default=[], metavar="ID",
                          help="a command id (repeat for several)")
    commands.add_argument("--rule", help="only commands of this drift rule (e.g. D04)")
    commands.add_argument("--platform", help="only commands to this platform (stripe, salesforce, zendesk, netsuite, "
                          "concord)")
    commands.add_argument("--action", help="only this action (e.g. erp.upsert_invoice)")
    commands.add_argument("--all", action="store_true", help="every command dead letter")
    commands.add_argument("--dry-run", action="store_true", help="list what would be replayed; send nothing")
    commands.add_argument("--include-expired", action="store_true",
                          help="also replay dead letters older than the ledger's memory "
                          "(CONCORD_COMMAND_LEDGER_TTL_SECONDS); they may undo later corrections")
    ingest = what.add_parser(
        "ingest", help="re-send ingest dead letters (original bytes and headers) to their source topics",
        description="Re-send payloads the ingest agent could not use, as they were delivered, e.g. after a "
        "codec fix.")
    ingest.add_argument("--reason", help="only dead letters with this reason (header concord-dlq-reason)")
    ingest.add_argument("--platform", help="only payloads of this platform")
    ingest.add_argument("--all", action="store_true", help="every ingest dead letter")
    ingest.add_argument("--dry-run", action="store_true", help="list what would be replayed; send nothing")


def run(settings: Settings, args: argparse.Namespace, out: Callable[[str], None] = _print) -> int:
    """`concord replay ...`: 0 when done (also when nothing matched), 1 with a one-line reason when not."""
    try:
        if args.what == "commands":
            flt = CommandFilter(ids=frozenset(args.ids), rule=args.rule, platform=args.platform, action=args.action,
                                all=args.all)
            summary = asyncio.run(replay_commands(settings, flt, args.dry_run, out, args.include_expired))
        else:
            summary = asyncio.run(replay_ingest(settings, IngestFilter(reason=args.reason, platform=args.platform,
                                                                       all=args.all), args.dry_run, out))
    except ReplayError as exc:
        raise SystemExit(f"concord replay {args.what}: {exc}") from None
    out(summary.line(args.what) + (" (dry run: nothing sent)" if args.dry_run else ""))
    return 0
