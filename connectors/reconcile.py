"""A reconciliation pass of one platform: list it page by page into its raw topic, checkpointed, behind a barrier.

What `concord reconcile` (app/reconcile.py) and the worker's scheduled reconciliation (agents/reconcile.py)
share; docs/reconcile.md says what a pass guarantees.

* `run_pass` lists a platform through its reader (connectors/snapshots.py) from a `Checkpoint`'s cursor to
  the end. Each page goes to a `Sink` (the platform's raw topic, header `concord-snapshot: <pass id>`) and,
  once durable, the checkpoint is saved (`Store`: Redis, `<prefix>:reconcile:<platform>`, also what
  `/api/reconcile` reads): a crash resumes from the last page written (`begin`), re-reading at most one page.
* `Barrier` holds the platforms a pass lists (`<prefix>:reconcile:holds`, platform -> until when, epoch ms),
  refreshed while it runs and expiring `HOLD_TTL_S` after the last refresh: the workers judge no deadline of
  a rule reading a held platform (agents/watermarks.py). `Drain` waits until the workers' consumer group has
  committed, hop by hop (raw, identity, canonical), every record written before the listings ended; then
  the barrier is released.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Protocol

import msgspec
from msgspec import Struct

from concord.connectors.snapshots import Cursor, confirmed_gone, deletions, gone
from concord.core import messages
from concord.core.kafka_security import KafkaSecurity, kafka_client_options, kafka_security

#: How long a hold lasts past its last refresh (a run that died stops holding after this), and how often
#: a running pass refreshes it.
HOLD_TTL_S: Final = 120.0
HOLD_REFRESH_S: Final = 20.0
#: How long the run waits for the workers to apply a pass's records before it releases the holds anyway.
DRAIN_TIMEOUT_S: Final = 900.0
DRAIN_POLL_S: Final = 0.5


def reconcile_holds_key(prefix: str) -> str:
    """The Redis hash of the platforms a reconciliation holds: platform -> until when (epoch ms)."""
    return f"{prefix}:reconcile:holds"


def reconcile_changes_key(prefix: str) -> str:
    """The Redis hash of what each pass changed: pass id -> its records that changed what a customer's state
    holds, versions aside (the state agents write it, a pass's summary reads it)."""
    return f"{prefix}:reconcile:changes"


def gap_overflow_key(prefix: str) -> str:
    """The Redis hash of the platforms whose gap signals named no record: platform -> since (epoch ms)."""
    return f"{prefix}:gap-overflow"


async def clear_gap_overflow(client: Any, prefix: str, checkpoint: Checkpoint) -> bool:
    """After a complete listing: clear the platform's gap-overflow mark (changes lost, no record named: any record
    may be stale from then on) when the listing began after it; whether it did."""
    if not checkpoint.complete or checkpoint.resumed or checkpoint.count_only:
        return False
    since = await client.hget(gap_overflow_key(prefix), checkpoint.platform)
    if since is None or int(since) >= (checkpoint.listed_from or checkpoint.started_at):
        return False
    await client.hdel(gap_overflow_key(prefix), checkpoint.platform)
    return True


def checkpoint_key(prefix: str, platform: str) -> str:
    """Where a platform's last pass is checkpointed (a `Checkpoint` as JSON)."""
    return f"{prefix}:reconcile:{platform}"


def request_key(prefix: str, platform: str) -> str:
    """Where a pass of the platform is requested before its time (epoch ms of the request): the Salesforce
    bridge sets it when it declares a gap (app/bridge.py); a scheduled pass started after it satisfies it."""
    return f"{prefix}:reconcile:requested:{platform}"


OnPage = Callable[["Checkpoint", str, int, "int | None"], None]


def _ignore(checkpoint: Checkpoint, part: str, read_now: int, remaining: int | None) -> None:
    pass


class Checkpoint(Struct, kw_only=True):
    """A pass of one platform, as Redis keeps it between pages (`cursor` None: the listing is complete)."""

    pass_id: str
    platform: str
    since_ms: int | None = None
    cursor: Any = None  # a `Cursor`, as builtins (None: the listing is complete)
    records: int = 0
    pages: int = 0
    by_part: dict[str, int] = {}
    started_at: int = 0
    updated_at: int = 0
    finished_at: int = 0
    count_only: bool = False  # listed and counted, nothing written (`concord reconcile --count-only`)
    dry_run: bool = False  # what the pass reveals is reported, never corrected (`--dry-run`; docs/reconcile.md)
    error: str = ""  # why the pass stopped, if it did (it resumes from `cursor`)
    last_complete_at: int = 0  # when the platform's last pass before this one finished (epoch ms; 0: none yet)
    incremental: int = 0  # scheduled passes since the last full listing, this one included (0: a full listing)
    gone: int = 0  # records Concord held that the complete listing did not return: fed as deletions
    changes: int | None = None  # its records that changed a customer's state, once applied (None: not known)
    resumed: bool = False  # resumed after its run stopped: its run did not see every id, so it deletes nothing
    # When the platform answered the pass's first page (its own clock, epoch ms; 0: not yet): a record the
    # listing missed because it was made after its place was read is newer than this.
    listed_from: int = 0

    @property
    def complete(self) -> bool:
        return self.finished_at > 0 and self.since_ms is None


class Store(Protocol):
    """Where checkpoints live (Redis in production)."""

    async def load(self, platform: str) -> Checkpoint | None: ...

    async def save(self, checkpoint: Checkpoint) -> None: ...


def snapshot_headers(pass_id: str, dry_run: bool) -> list[tuple[str, bytes]]:
    """The headers of a listed record on its raw topic: the pass it belongs to, and whether it is a dry run's."""
    headers = [(messages.SNAPSHOT, pass_id.encode())]
    if dry_run:
        headers.append((messages.SNAPSHOT_DRY_RUN, b"1"))
    return headers


class Sink(Protocol):
    """Where a page's records go (the platform's raw topic), and Concord's own canonical events (the deletions
    of records gone: to the canonical topic, keyed by customer); each returns once Kafka acknowledged all."""

    async def send(self, platform: str, records: Sequence[Any], pass_id: str, dry_run: bool = False) -> None: ...

    async def send_events(self, events: Sequence[Any]) -> None: ...


class RedisStore:
    def __init__(self, client: Any, prefix: str) -> None:
        self._client, self._prefix = client, prefix

    def key(self, platform: str) -> str:
        return checkpoint_key(self._prefix, platform)

    async def load(self, platform: str) -> Checkpoint | None:
        raw = await self._client.get(self.key(platform))
        return None if raw is None else msgspec.json.decode(raw, type=Checkpoint)

    async def save(self, checkpoint: Checkpoint) -> None:
        await self._client.set(self.key(checkpoint.platform), msgspec.json.encode(checkpoint))


class Barrier:
    """The holds of one run's platforms (see the module): `hold` (and `keep` refreshing it), then `release`."""

    def __init__(self, client: Any, prefix: str, platforms: Sequence[str], clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Any] = asyncio.sleep) -> None:
        self._client, self._platforms, self._clock, self._sleep = client, list(platforms), clock, sleep
        self.key = reconcile_holds_key(prefix)

    async def hold(self) -> None:
        until = str(int((self._clock() + HOLD_TTL_S) * 1000))
        await self._client.hset(self.key, mapping=dict.fromkeys(self._platforms, until))

    async def keep(self) -> None:
        """Refresh the holds until cancelled (a Redis hiccup is retried at the next refresh)."""
        while True:
            await self._sleep(HOLD_REFRESH_S)
            try:
                await self.hold()
            except Exception:  # noqa: BLE001 (the hold lasts HOLD_TTL_S: the next refresh may succeed)
                continue

    async def release(self) -> None:
        await self._client.hdel(self.key, *self._platforms)


def behind(ends: Mapping[Any, int], committed: Mapping[Any, int | None]) -> int:
    """Records of `ends` (partition -> end offset) the group has not committed (`committed`: its offsets)."""
    return sum(max(end - (committed.get(tp) or 0), 0) for tp, end in ends.items() if end > 0)


class Drain:
    """Waits until the workers' consumer group has committed, hop by hop, every record written before."""

    def __init__(self, bootstrap: str, group: str, security: KafkaSecurity,
                 sleep: Callable[[float], Any] = asyncio.sleep, clock: Callable[[], float] = time.monotonic) -> None:
        self._bootstrap, self._group, self._sleep, self._clock = bootstrap, group, sleep, clock
        self._security = security

    async def wait(self, stages: Sequence[Sequence[str]], timeout: float = DRAIN_TIMEOUT_S) -> bool:
        """True once every stage (a list of topics, in hop order) is committed to the ends it had when the
        previous stage was; False if `timeout` passed first."""
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap, **kafka_client_options(self._security))
        consumer = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, group_id=None,
                                    **kafka_client_options(self._security))
        await admin.start()
        await consumer.start()
        deadline = self._clock() + timeout
        try:
            for topics in stages:
                partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t)
                                                                                   or ())]
                ends = await consumer.end_offsets(partitions) if partitions else {}
                while True:
                    offsets = await admin.list_consumer_group_offsets(self._group)
                    left = behind(ends, {tp: offsets[tp].offset if tp in offsets else None for tp in ends})
                    if left == 0:
                        break
                    if self._clock() > deadline:
                        return False
                    await self._sleep(DRAIN_POLL_S)
        finally:
            await consumer.stop()
            await admin.close()
        return True


async def run_pass(reader: Any, checkpoint: Checkpoint, sink: Sink, store: Store, on_page: OnPage = _ignore,
                   clock: Callable[[], float] = time.time, listed: dict[str, set[str]] | None = None) -> Checkpoint:
    """List `reader`'s platform from `checkpoint`'s cursor to the end, page by page (see the module);
    `on_page(checkpoint, part, records read by this run, records left in the part if known)` after each page is
    checkpointed; `listed` (kind ->
    ids) gathers the ids the listing returned."""
    cursor: Cursor | None = (msgspec.convert(checkpoint.cursor, Cursor) if checkpoint.cursor is not None
                             else None)
    read_now = 0
    while cursor is not None:
        page = await reader.page(cursor, checkpoint.since_ms)
        if not checkpoint.listed_from:
            checkpoint.listed_from = getattr(reader, "answered_ms", 0)
        if listed is not None:
            for record in page.records:
                listed.setdefault(record.kind, set()).add(record.record_id)
        if not checkpoint.count_only and page.records:
            await sink.send(reader.platform, page.records, checkpoint.pass_id, checkpoint.dry_run)
        cursor = page.next
        read_now += len(page.records)
        checkpoint.records += len(page.records)
        checkpoint.pages += 1
        checkpoint.by_part[page.part] = checkpoint.by_part.get(page.part, 0) + len(page.records)
        checkpoint.cursor = msgspec.to_builtins(cursor) if cursor is not None else None
        checkpoint.updated_at = int(clock() * 1000)
        if cursor is None:
            checkpoint.finished_at = checkpoint.updated_at
        if not checkpoint.count_only:
            await store.save(checkpoint)
        on_page(checkpoint, page.part, read_now, getattr(reader, "remaining", None))
    return checkpoint


def begin(previous: Checkpoint | None, platform: str, since_ms: int | None, restart: bool, count_only: bool,
          now_ms: int, dry_run: bool = False) -> tuple[Checkpoint, bool]:
    """The pass to run for `platform`: the unfinished one to resume (True), or a new one (False)."""
    if (previous is not None and not restart and not count_only and previous.finished_at == 0
            and previous.since_ms == since_ms and previous.cursor is not None and previous.dry_run == dry_run):
        previous.resumed = True
        return previous, True
    last_complete = 0 if previous is None else _last_finished(previous)
    incremental = 0 if since_ms is None or previous is None else previous.incremental + 1
    fresh = Checkpoint(pass_id=f"{platform}-{uuid.uuid4().hex[:12]}", platform=platform, since_ms=since_ms,
                       cursor={"part": 0, "token": ""}, started_at=now_ms, updated_at=now_ms, count_only=count_only,
                       dry_run=dry_run, last_complete_at=last_complete, incremental=incremental)
    return fresh, False


def _last_finished(checkpoint: Checkpoint) -> int:
    """When the platform was last reconciled: this pass if it finished (a listing of what changed since a time
    included: it read every change), else the one before it."""
    return checkpoint.finished_at if checkpoint.finished_at and not checkpoint.count_only \
        else checkpoint.last_complete_at


#: Platforms whose list API lists what changed since a time (Salesforce's SystemModstamp, Zendesk's incremental
#: exports, NetSuite's lastmodifieddate): their scheduled passes may list only that. Stripe filters by creation.
INCREMENTAL: Final = frozenset({"salesforce", "zendesk", "netsuite"})
#: An incremental pass lists what changed since the previous pass's first page less this: changes made around
#: then, and Zendesk's export, which leaves its last minute out, are listed again rather than missed.
INCREMENTAL_OVERLAP_MS: Final = 10 * 60_000


def next_since(platform: str, previous: Checkpoint | None, full_every: int) -> int | None:
    """Since when a scheduled pass of `platform` lists (None: everything). An unfinished pass resumes as it was;
    otherwise every `full_every`-th pass is a full listing (what tells deletions and clears a gap-overflow mark),
    the others list what changed since the previous pass began."""
    if previous is None:
        return None
    if previous.finished_at == 0 and previous.cursor is not None:
        return previous.since_ms
    if platform not in INCREMENTAL or full_every <= 1 or not previous.listed_from or previous.count_only:
        return None
    if previous.incremental + 1 >= full_every:
        return None
    return previous.listed_from - INCREMENTAL_OVERLAP_MS


def listing(checkpoint: Checkpoint | None, now_ms: int) -> bool:
    """Whether a pass is listing now: unfinished, and checkpointed within `HOLD_TTL_S` (else its run died)."""
    return (checkpoint is not None and checkpoint.finished_at == 0 and checkpoint.cursor is not None
            and now_ms - checkpoint.updated_at < HOLD_TTL_S * 1000)


def due(checkpoint: Checkpoint | None, every_seconds: float, now_ms: int, requested_at: int = 0) -> bool:
    """Whether a pass of the platform should start (or resume) now: its interval is up, or a pass was requested
    (`requested_at`, epoch ms, `request_key`: the bridge after a gap) after the last one started. A platform
    with no schedule (`every_seconds` 0) runs only the passes requested of it."""
    if every_seconds <= 0:
        return requested(checkpoint, requested_at) and not listing(checkpoint, now_ms)
    if checkpoint is None:
        return True
    if checkpoint.finished_at == 0 and checkpoint.cursor is not None:
        return not listing(checkpoint, now_ms)  # a pass whose run died: resume it
    return now_ms - checkpoint.started_at >= every_seconds * 1000 or requested(checkpoint, requested_at)


def requested(checkpoint: Checkpoint | None, requested_at: int) -> bool:
    """Whether a pass requested at `requested_at` (epoch ms; 0: none) is still owed: no pass started since.
    A requested pass is a full listing: it is asked for after a gap, whose mark only a full listing clears."""
    return requested_at > 0 and (checkpoint is None or requested_at > checkpoint.started_at)


class Schedule(Struct, frozen=True, kw_only=True):
    """One platform's reconciliation as `/api/reconcile` and the metrics show it."""

    platform: str
    every_seconds: float  # 0: not scheduled (`concord reconcile` may still have run)
    listing: bool
    last: Checkpoint | None  # the last pass (complete, failed, interrupted or running)
    last_complete_at: int  # epoch ms; 0: none yet
    next_due_at: int  # epoch ms; 0: not scheduled
    overdue: bool  # no complete pass within twice the interval (counted from `since_ms` before the first)


def schedule(platform: str, checkpoint: Checkpoint | None, every_seconds: float, now_ms: int,
             since_ms: int) -> Schedule:
    """`platform`'s schedule at `now_ms` (`since_ms`: when the schedule began, for a platform never reconciled)."""
    last_complete = 0 if checkpoint is None else _last_finished(checkpoint)
    next_due = 0
    if every_seconds > 0:
        started = checkpoint.started_at if checkpoint is not None else since_ms
        next_due = started + int(every_seconds * 1000)
    # From the last complete pass once there is one: a worker's restart does not reset an overdue platform.
    overdue = every_seconds > 0 and now_ms - (last_complete or since_ms) > 2 * every_seconds * 1000
    return Schedule(platform=platform, every_seconds=every_seconds, listing=listing(checkpoint, now_ms),
                    last=checkpoint, last_complete_at=last_complete, next_due_at=next_due, overdue=overdue)


async def schedules(store: Store, intervals: Mapping[str, float], now_ms: int, since_ms: int) -> list[Schedule]:
    """The schedule of each platform of `intervals` (platform -> seconds, in its order) at `now_ms`, from its
    checkpoint in `store`: what `/api/v1/reconcile` and the console's health strip show."""
    return [schedule(platform, await store.load(platform), every_seconds, now_ms, since_ms)
            for platform, every_seconds in intervals.items()]


def pacer(limiter: Any, platform: str) -> Callable[[], Any]:
    """`HttpClient.pace` for a reader: a token of the platform's shared bucket before each request, as the
    commands take one (connectors/ratelimit.py), so live corrections keep their share of the rate limit."""
    async def pace() -> None:
        while (wait := await limiter.take(platform)) > 0:
            await asyncio.sleep(wait)
    return pace


#: How far before the platform's answer to a pass's first page its deletions are dated (the platform's clock,
#: the one its records' versions are in): a second, so that a record made in the same second as that answer,
#: after its place in the listing was read, stays. Without that answer (no `Date` header): this much before
#: the pass began by Concord's clock, against a platform's clock a little ahead of ours.
GONE_MARGIN_MS: Final = 1_000
GONE_MARGIN_NO_DATE_MS: Final = 60_000


async def delete_gone(checkpoint: Checkpoint, listed: Mapping[str, set[str]],
                      known: Sequence[tuple[str, str, str]], sink: Sink, store: Store, reader: Any) -> int:
    """After a complete listing in one run (no `--since`, not resumed, not `--count-only`): feed the deletion of each
    record Concord holds (`known`: (id, kind, customer key), from the search index) that the platform no longer
    returned, dated `GONE_MARGIN_MS` before the platform answered the pass's first page (docs/reconcile.md,
    "Missed deletions"). How many records."""
    if not checkpoint.finished_at or checkpoint.since_ms is not None or checkpoint.resumed or checkpoint.count_only:
        return 0
    at = (checkpoint.listed_from - GONE_MARGIN_MS if checkpoint.listed_from
          else checkpoint.started_at - GONE_MARGIN_NO_DATE_MS)
    missing = await confirmed_gone(reader, gone(checkpoint.platform, listed, known))
    events = [event for kind, record_id, key in missing
              for event in deletions(checkpoint.platform, kind, record_id, key, at, checkpoint.pass_id,
                                     checkpoint.dry_run)]
    if events:
        await sink.send_events(events)
    checkpoint.gone = len(missing)
    await store.save(checkpoint)
    return len(missing)


class GroupOutcome(Struct, kw_only=True):
    """How a group of passes ended: each pass's error (None: listed to its end), and whether the workers applied
    the group's records before the barrier was released (False for a count-only group: it writes nothing)."""

    errors: list[BaseException | None]
    applied: bool


async def run_group(checkpoints: Sequence[Checkpoint], readers: Mapping[str, Any], sink: Sink, store: Store,
                    client: Any, settings: Any, on_page: OnPage = _ignore,
                    say: Callable[[str], None] = lambda line: None) -> GroupOutcome:
    """The passes of `checkpoints` side by side behind one barrier: what `concord reconcile` and the schedule share.

    Holds the platforms, lists each (`run_pass`), feeds the deletions each complete listing reveals
    (`delete_gone`), waits until the workers applied every record (`Drain`), notes what each pass changed and
    clears the gap-overflow marks a complete listing settles, and releases the platforms, whatever happened.
    `say` is told what a person running it would want to know. A count-only group only lists.
    """
    from concord.connectors.search_index import known_ids
    from concord.core.settings import kafka_bootstrap
    from concord.core.topics import topic_names

    platforms = [c.platform for c in checkpoints]
    writes = not all(c.count_only for c in checkpoints)
    barrier = Barrier(client, settings.topic_prefix, platforms)
    keeper: asyncio.Task[None] | None = None
    listed: dict[str, dict[str, set[str]]] = {c.platform: {} for c in checkpoints}
    try:
        if writes:
            await barrier.hold()
            keeper = asyncio.create_task(barrier.keep())
        results = await asyncio.gather(*(run_pass(readers[c.platform], c, sink, store, on_page,
                                                  listed=listed[c.platform]) for c in checkpoints),
                                       return_exceptions=True)
        errors = [r if isinstance(r, BaseException) else None for r in results]
        if not writes:
            return GroupOutcome(errors=errors, applied=False)
        for checkpoint, error in zip(checkpoints, errors, strict=True):
            if error is None:
                known = await known_ids(client, settings.topic_prefix, checkpoint.platform)
                if await delete_gone(checkpoint, listed[checkpoint.platform], known, sink, store,
                                     readers[checkpoint.platform]):
                    say(f"{checkpoint.platform}: {checkpoint.gone} record(s) Concord held are gone from the platform: "
                        "fed as deletions")
        say(f"listings of {', '.join(platforms)} ended; waiting for the workers to apply their records (the "
            "platforms stay held until then)")
        names = topic_names(settings)
        applied = await Drain(kafka_bootstrap(settings), settings.app_id, kafka_security(settings)).wait(
            [[names.raw[p] for p in platforms], [names.identity], [names.canonical]])
        if applied:
            await asyncio.sleep(CHANGES_SAID_S)
            for checkpoint in checkpoints:
                found = await client.hget(reconcile_changes_key(settings.topic_prefix), checkpoint.pass_id)
                checkpoint.changes = int(found or 0)
                await store.save(checkpoint)
                if await clear_gap_overflow(client, settings.topic_prefix, checkpoint):
                    say(f"{checkpoint.platform}: the mark of changes lost without a record named (gap_overflow_since) "
                        "is cleared: the listing re-read every record")
        return GroupOutcome(errors=errors, applied=applied)
    finally:
        if keeper is not None:
            keeper.cancel()
            await barrier.release()


#: How long after its records were applied a pass waits for the state agents to say what they changed (they say
#: it once a second).
CHANGES_SAID_S: Final = 1.5
