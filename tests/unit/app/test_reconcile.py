"""`concord reconcile`'s pass loop, resume and arguments, with a reader, a sink and a store of our own."""

from __future__ import annotations

import argparse
import asyncio
import io
from collections.abc import Sequence
from typing import Any

import msgspec
import pytest

from concord.app import reconcile as rc
from concord.connectors import reconcile as rp
from concord.connectors.snapshots import Cursor, Page, SnapshotRecord


class ListReader:
    """A platform of `total` records in parts of `per_part`, `size` per page; fails once at page `fail_at`."""

    platform = "stripe"
    parts = ("customers", "invoices")

    def __init__(self, per_part: int, size: int, fail_at: int | None = None) -> None:
        self.per_part, self.size, self.fail_at, self.calls = per_part, size, fail_at, 0
        self.still_there: set[str] = set()  # ids not listed, yet there when asked (made after their place was read)

    async def page(self, cursor: Cursor, since_ms: int | None) -> Page:
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            self.fail_at = None
            raise ConnectionError("the platform went away")
        start = int(cursor.token or 0)
        end = min(start + self.size, self.per_part)
        part = self.parts[cursor.part]
        records = [SnapshotRecord(f"{part}:{n}".encode(), b"{}", f"{part}:{n}", part) for n in range(start, end)]
        if end < self.per_part:
            return Page(part=part, records=records, next=Cursor(part=cursor.part, token=str(end)))
        following = Cursor(part=cursor.part + 1) if cursor.part + 1 < len(self.parts) else None
        return Page(part=part, records=records, next=following)

    async def exists(self, kind: str, record_id: str) -> bool:
        return record_id in self.still_there

    async def close(self) -> None:
        pass


class MemorySink:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, str]] = []
        self.events: list[Any] = []
        self.dry = False

    async def send(self, platform: str, records: Sequence[Any], pass_id: str, dry_run: bool = False) -> None:
        self.sent.extend((platform, r.key, pass_id) for r in records)
        self.dry = self.dry or dry_run

    async def send_events(self, events: Sequence[Any]) -> None:
        self.events.extend(events)


class MemoryStore:
    def __init__(self) -> None:
        self.saved: dict[str, rp.Checkpoint] = {}
        self.saves = 0

    async def load(self, platform: str) -> rp.Checkpoint | None:
        return self.saved.get(platform)

    async def save(self, checkpoint: rp.Checkpoint) -> None:
        self.saves += 1
        self.saved[checkpoint.platform] = msgspec.json.decode(msgspec.json.encode(checkpoint), type=rp.Checkpoint)


def _progress() -> rc.Progress:
    return rc.Progress(["stripe"], io.StringIO(), 0.0, lambda: 0.0)


async def test_a_pass_lists_every_part_to_the_end_and_checkpoints_after_each_page() -> None:
    sink, store = MemorySink(), MemoryStore()
    checkpoint, resumed = rp.begin(None, "stripe", None, False, False, 1_000)
    assert not resumed
    done = await rp.run_pass(ListReader(per_part=25, size=10), checkpoint, sink, store, _progress().update)
    keys = [key for _, key, _ in sink.sent]
    assert keys == [f"customers:{n}".encode() for n in range(25)] + [f"invoices:{n}".encode() for n in range(25)]
    assert {pass_id for _, _, pass_id in sink.sent} == {checkpoint.pass_id}
    assert (done.records, done.pages, done.by_part) == (50, 6, {"customers": 25, "invoices": 25})
    assert done.complete and done.cursor is None and store.saves == 6
    assert store.saved["stripe"].complete


async def test_a_crash_mid_listing_resumes_from_the_last_page_written_and_reads_no_record_twice() -> None:
    sink, store = MemorySink(), MemoryStore()
    checkpoint, _ = rp.begin(None, "stripe", None, False, False, 1_000)
    with pytest.raises(ConnectionError):
        await rp.run_pass(ListReader(per_part=25, size=10, fail_at=4), checkpoint, sink, store, _progress().update)
    interrupted = store.saved["stripe"]
    assert interrupted.records == 25 and interrupted.finished_at == 0  # the customers' 3 pages, then it failed
    again, resumed = rp.begin(await store.load("stripe"), "stripe", None, False, False, 2_000)
    assert resumed and again.pass_id == checkpoint.pass_id
    await rp.run_pass(ListReader(per_part=25, size=10), again, sink, store, _progress().update)
    keys = [key for _, key, _ in sink.sent]
    assert len(keys) == len(set(keys)) == 50
    assert store.saved["stripe"].complete and store.saved["stripe"].records == 50


def test_a_pass_is_resumed_only_when_unfinished_with_the_same_since_and_not_restarted() -> None:
    unfinished = rp.Checkpoint(pass_id="stripe-1", platform="stripe", cursor={"part": 1, "token": "x"})
    assert rp.begin(unfinished, "stripe", None, False, False, 0) == (unfinished, True)
    assert rp.begin(unfinished, "stripe", None, True, False, 0)[1] is False  # --restart
    assert rp.begin(unfinished, "stripe", 5, False, False, 0)[1] is False  # another --since
    assert rp.begin(unfinished, "stripe", None, False, True, 0)[1] is False  # counting only never resumes
    assert rp.begin(unfinished, "stripe", None, False, False, 0, dry_run=True)[1] is False  # nor another kind
    finished = rp.Checkpoint(pass_id="stripe-1", platform="stripe", cursor=None, finished_at=9)
    fresh, resumed = rp.begin(finished, "stripe", None, False, False, 7)
    assert not resumed and fresh.pass_id != "stripe-1" and fresh.started_at == 7


async def test_counting_only_reads_every_page_and_writes_nothing() -> None:
    sink, store = MemorySink(), MemoryStore()
    checkpoint, _ = rp.begin(None, "stripe", None, False, True, 1_000)
    done = await rp.run_pass(ListReader(per_part=5, size=2), checkpoint, sink, store, _progress().update)
    assert done.records == 10 and sink.sent == [] and store.saves == 0
    assert "counted only" in "\n".join(rc.summary([done], 1.0))


def test_since_takes_a_date_a_date_time_or_a_duration_back() -> None:
    now = 1_793_491_200.0
    assert rc.parse_since("2026-11-01", now) == 1_793_491_200_000
    assert rc.parse_since("2026-11-01T00:00:10Z", now) == 1_793_491_210_000
    assert rc.parse_since("2026-11-01T01:00:00+01:00", now) == 1_793_491_200_000
    assert rc.parse_since("90m", now) == (now - 5400) * 1000
    assert rc.parse_since("7d", now) == (now - 7 * 86400) * 1000
    with pytest.raises(ValueError, match="neither a date"):
        rc.parse_since("last tuesday", now)


def test_the_summary_says_what_each_listing_is() -> None:
    complete = rp.Checkpoint(pass_id="p1", platform="stripe", records=3, pages=1, by_part={"customers": 3},
                             finished_at=5)
    since = rp.Checkpoint(pass_id="p2", platform="zendesk", since_ms=1, finished_at=5)
    stopped = rp.Checkpoint(pass_id="p3", platform="salesforce", cursor={"part": 0, "token": "t"})
    text = "\n".join(rc.summary([complete, since, stopped], 2.0))
    assert "complete listing" in text and "not a complete listing" in text and "run again to resume" in text
    assert "customers 3" in text


def test_the_progress_line_names_the_part_the_count_and_the_rate() -> None:
    out = io.StringIO()
    now = [0.0]
    progress = rc.Progress(["stripe"], out, 0.0, lambda: now[0])
    checkpoint = rp.Checkpoint(pass_id="p", platform="stripe", records=500)
    now[0] = 10.0
    progress.update(checkpoint, "invoices", 500)
    assert "[invoices]" in out.getvalue() and "500 records" in out.getvalue() and "50/s" in out.getvalue()
    progress.update(checkpoint, "invoices", 500, remaining=1_000)  # the platform counts its list: an ETA
    assert "invoices ETA 20 s (1,000 left)" in out.getvalue()


async def test_without_a_platform_or_all_it_says_what_to_pass() -> None:
    from concord.core.settings import Settings

    args = argparse.Namespace(all=False, platform=[], since="", dry_run=False, count_only=False, restart=False,
                              progress=5.0, settle=0.0)
    assert await rc.reconcile(Settings(), args, io.StringIO()) == 2
    args.platform, args.since = ["stripe"], "soon"
    assert await rc.reconcile(Settings(), args, io.StringIO()) == 2


class FakeRedis:
    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, str]] = {}

    async def hset(self, key: str, mapping: dict[str, str]) -> None:
        self.hashes.setdefault(key, {}).update(mapping)

    async def hdel(self, key: str, *fields: str) -> None:
        for name in fields:
            self.hashes.get(key, {}).pop(name, None)


async def test_a_pass_holds_its_platforms_refreshes_the_hold_and_releases_it() -> None:
    redis = FakeRedis()
    now = [1_000.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds
        if len(slept) == 2:
            raise asyncio.CancelledError

    barrier = rp.Barrier(redis, "acme", ["stripe", "netsuite"], clock=lambda: now[0], sleep=sleep)
    await barrier.hold()
    assert redis.hashes["acme:reconcile:holds"] == {"stripe": "1120000", "netsuite": "1120000"}
    with pytest.raises(asyncio.CancelledError):
        await barrier.keep()
    assert slept == [rp.HOLD_REFRESH_S, rp.HOLD_REFRESH_S]
    assert redis.hashes["acme:reconcile:holds"]["stripe"] == str(int((1_020.0 + rp.HOLD_TTL_S) * 1000))
    await barrier.release()
    assert redis.hashes["acme:reconcile:holds"] == {}


def test_behind_counts_what_the_group_has_not_committed_of_the_ends() -> None:
    ends = {"raw-0": 10, "raw-1": 0, "raw-2": 5}
    assert rp.behind(ends, {"raw-0": 10, "raw-2": 5}) == 0
    assert rp.behind(ends, {"raw-0": 7, "raw-2": None}) == 3 + 5
    assert rp.behind(ends, {}) == 15


HOUR_MS = 3_600_000


def test_a_platform_is_due_when_never_reconciled_an_interval_after_its_last_start_or_when_its_run_died() -> None:
    assert not rp.due(None, 0, 10)  # not scheduled
    assert rp.due(None, 3600, 10)
    done = rp.Checkpoint(pass_id="p", platform="stripe", started_at=1_000, finished_at=2_000, cursor=None)
    assert not rp.due(done, 3600, 1_000 + HOUR_MS - 1) and rp.due(done, 3600, 1_000 + HOUR_MS)
    listing = rp.Checkpoint(pass_id="p", platform="stripe", started_at=1_000, updated_at=50_000,
                            cursor={"part": 1, "token": "x"})
    assert rp.listing(listing, 60_000) and not rp.due(listing, 1, 60_000)  # another worker is on it
    dead = 50_000 + int(rp.HOLD_TTL_S * 1000)
    assert not rp.listing(listing, dead) and rp.due(listing, 3600, dead)  # its run died: resume it


def test_a_requested_pass_is_due_at_once_until_a_pass_starts_after_the_request() -> None:
    done = rp.Checkpoint(pass_id="p", platform="salesforce", started_at=1_000, finished_at=2_000, cursor=None)
    assert rp.due(done, 3600, 5_000, requested_at=4_000) and rp.requested(done, 4_000)
    assert not rp.due(done, 3600, 5_000, requested_at=500)  # the pass that started at 1 000 answered it
    assert not rp.due(done, 3600, 5_000) and not rp.requested(done, 0)
    assert rp.due(done, 0, 5_000, requested_at=4_000)  # not scheduled: a requested pass still runs
    assert not rp.due(done, 0, 5_000, requested_at=500) and not rp.due(None, 0, 5_000)


def test_the_schedule_says_when_next_and_whether_overdue_and_keeps_the_last_complete_pass_across_passes() -> None:
    complete = rp.Checkpoint(pass_id="p1", platform="zendesk", started_at=1_000, finished_at=5_000, cursor=None)
    shown = rp.schedule("zendesk", complete, 3600, 10_000, since_ms=0)
    assert (shown.last_complete_at, shown.next_due_at, shown.overdue, shown.listing) == (5_000, 1_000 + HOUR_MS,
                                                                                        False, False)
    assert rp.schedule("zendesk", complete, 3600, 5_000 + 2 * HOUR_MS + 1, since_ms=0).overdue
    # A worker that started since (a restart) does not make it on time again.
    assert rp.schedule("zendesk", complete, 3600, 5_000 + 2 * HOUR_MS + 1, since_ms=2 * HOUR_MS).overdue
    # A new pass starts: the last complete one is still known, while and after it runs (failed, here).
    following, resumed = rp.begin(complete, "zendesk", None, False, False, 6_000)
    assert not resumed and following.last_complete_at == 5_000
    following.error = "ConnectorError: 401"
    assert rp.schedule("zendesk", following, 3600, 7_000, since_ms=0).last_complete_at == 5_000
    # Never reconciled: overdue twice the interval after the schedule began, not before.
    assert not rp.schedule("zendesk", None, 3600, 2 * HOUR_MS, since_ms=1).overdue
    assert rp.schedule("zendesk", None, 3600, 2 * HOUR_MS + 2, since_ms=1).overdue
    off = rp.schedule("zendesk", None, 0, 10 * HOUR_MS, since_ms=0)
    assert (off.next_due_at, off.overdue) == (0, False)


async def test_schedules_read_each_platform_s_checkpoint_in_the_order_of_the_intervals() -> None:
    store = MemoryStore()
    await store.save(rp.Checkpoint(pass_id="p1", platform="zendesk", started_at=1_000, finished_at=5_000,
                                   cursor=None))
    shown = await rp.schedules(store, {"stripe": 0.0, "zendesk": 3600.0}, 10_000, since_ms=0)
    assert [(s.platform, s.every_seconds, s.last_complete_at) for s in shown] == [("stripe", 0.0, 0),
                                                                                  ("zendesk", 3600.0, 5_000)]
    assert shown[1] == rp.schedule("zendesk", store.saved["zendesk"], 3600, 10_000, since_ms=0)


def test_only_platforms_with_their_url_and_credentials_are_scheduled() -> None:
    from concord.agents import reconcile as scheduled
    from concord.core.settings import Settings

    settings = msgspec.structs.replace(Settings(), stripe_reconcile_every_seconds=60.0, stripe_api_key="sk_live_x")
    assert scheduled.every(settings)["stripe"] == 60.0 and scheduled.every(settings)["zendesk"] == 0.0
    assert scheduled.configured(settings, "stripe") and not scheduled.configured(settings, "netsuite")


def test_make_demo_and_concord_demo_pass_the_reconciliation_interval_to_the_worker() -> None:
    from concord.app.cli import build_parser
    from tests.conftest import REPO_ROOT

    assert build_parser().parse_args(["demo", "--reconcile-every", "60"]).reconcile_every == 60.0
    assert build_parser().parse_args(["demo"]).reconcile_every == 0.0
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "RECONCILE_EVERY ?= 0" in makefile and "--reconcile-every $(RECONCILE_EVERY)" in makefile
    demo = (REPO_ROOT / "app" / "demo.py").read_text()
    assert 'env_var(f"{platform}_reconcile_every_seconds")' in demo


async def test_only_a_complete_listing_in_one_run_feeds_the_deletions_of_what_it_did_not_return() -> None:
    # 99: gone from the platform; 50: not listed either, but there when asked (made while the listing ran).
    known = [("customers:0", "customer", "001A"), ("customers:99", "customer", "001B"),
             ("customers:50", "customer", "001C")]
    for kind_of_run in ("complete", "since", "resumed", "counted"):
        sink, store = MemorySink(), MemoryStore()
        checkpoint, _ = rp.begin(None, "stripe", 5 if kind_of_run == "since" else None, False,
                                 kind_of_run == "counted", 1_000_000)
        checkpoint.resumed = kind_of_run == "resumed"
        listed: dict[str, set[str]] = {}
        reader = ListReader(per_part=3, size=2)
        reader.parts = ("customer", "invoice")  # the search index's kinds, as the real readers give them
        reader.still_there = {"customers:50"}
        await rp.run_pass(reader, checkpoint, sink, store, listed=listed)
        assert listed["customer"] >= {"customer:0", "customer:1", "customer:2"}
        deleted = await rp.delete_gone(checkpoint, {"customer": {"customers:0"}}, known, sink, store, reader)
        assert deleted == (1 if kind_of_run == "complete" else 0), kind_of_run
        assert [(e.customer_id, e.customer_key, e.deleted) for e in sink.events] == (
            [("customers:99", "001B", True)] if kind_of_run == "complete" else [])
    assert checkpoint.gone == 0


async def test_a_dry_run_pass_writes_its_records_marked_as_such() -> None:
    sink, store = MemorySink(), MemoryStore()
    checkpoint, _ = rp.begin(None, "stripe", None, False, False, 1_000, dry_run=True)
    await rp.run_pass(ListReader(per_part=2, size=2), checkpoint, sink, store)
    assert len(sink.sent) == 4 and sink.dry and store.saved["stripe"].dry_run
    assert "dry run: what it reveals is reported" in "\n".join(rc.summary([checkpoint], 1.0))


async def test_a_complete_listing_begun_after_a_gap_overflow_clears_its_mark_and_no_other_does() -> None:
    class Hash:
        def __init__(self) -> None:
            self.fields: dict[str, bytes] = {"salesforce": b"5000"}

        async def hget(self, key: str, field: str) -> bytes | None:
            assert key == "acme:gap-overflow"
            return self.fields.get(field)

        async def hdel(self, key: str, field: str) -> None:
            self.fields.pop(field, None)

    client = Hash()
    before = rp.Checkpoint(pass_id="p", platform="salesforce", finished_at=9_000, listed_from=4_000)
    assert not await rp.clear_gap_overflow(client, "acme", before)  # listed from before the changes were lost
    partial = rp.Checkpoint(pass_id="p", platform="salesforce", finished_at=9_000, listed_from=6_000, since_ms=1)
    assert not await rp.clear_gap_overflow(client, "acme", partial)  # not a complete listing
    after = rp.Checkpoint(pass_id="p", platform="salesforce", finished_at=9_000, listed_from=6_000)
    assert await rp.clear_gap_overflow(client, "acme", after) and client.fields == {}
    assert not await rp.clear_gap_overflow(client, "acme", after)  # nothing left to clear


def test_scheduled_passes_list_what_changed_since_the_previous_began_and_every_nth_is_full() -> None:
    def finished(platform: str, since: int | None, incremental: int, listed_from: int) -> rp.Checkpoint:
        return rp.Checkpoint(pass_id="p", platform=platform, since_ms=since, incremental=incremental,
                             listed_from=listed_from, started_at=listed_from, finished_at=listed_from + 5_000)

    overlap = rp.INCREMENTAL_OVERLAP_MS
    assert rp.next_since("salesforce", None, 4) is None  # never reconciled: a full listing
    full = finished("salesforce", None, 0, 1_000_000)
    assert rp.next_since("salesforce", full, 4) == 1_000_000 - overlap
    assert rp.next_since("stripe", finished("stripe", None, 0, 1_000_000), 4) is None  # Stripe: always whole
    assert rp.next_since("salesforce", full, 1) is None  # always full
    # The passes after a full one count up; the fourth is full again.
    second, _ = rp.begin(full, "salesforce", rp.next_since("salesforce", full, 4), False, False, 2_000_000)
    assert second.incremental == 1 and second.last_complete_at == full.finished_at
    third = finished("salesforce", 1, 2, 3_000_000)
    assert rp.next_since("salesforce", third, 4) == 3_000_000 - overlap
    fourth = finished("salesforce", 1, 3, 4_000_000)
    assert rp.next_since("salesforce", fourth, 4) is None
    # An unfinished pass resumes as it was listing.
    stopped = rp.Checkpoint(pass_id="p", platform="zendesk", since_ms=777, cursor={"part": 1, "token": "t"})
    assert rp.next_since("zendesk", stopped, 4) == 777
    # An incremental pass that finished is a reconciliation: it keeps the platform from being overdue.
    assert rp.schedule("salesforce", third, 3600, 3_005_000 + 7_000_000, since_ms=0).last_complete_at == 3_005_000
