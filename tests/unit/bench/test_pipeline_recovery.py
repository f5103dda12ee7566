"""The pure parts of the recovery benchmark (bench/pipeline/recovery.py): its changelog records are the agent's."""

from __future__ import annotations

import random
from typing import Any

import pytest
from faust.serializers import codecs

from concord.agents.faust_internals.changelog import ChangelogWriter
from concord.app.factory import create_concord
from concord.bench.pipeline.recovery import (
    TABLE,
    changelog_record,
    changelog_topic,
    main,
    parse_cpu_seconds,
    parse_status,
    typical_state,
)
from concord.bench.workload import customer_key
from concord.core.partitioning import partition_for
from concord.core.settings import Settings
from concord.tables import state as st


class _Topic:
    def __init__(self, name: str) -> None:
        self.name = name

    def get_topic_name(self) -> str:
        return self.name


class _Table:
    """What `ChangelogWriter` reads of a Faust table: its changelog topic and its local data."""

    def __init__(self, topic: str) -> None:
        self.changelog_topic = _Topic(topic)
        self.data: dict[str, bytes] = {}


class _Producer:
    """Not aiokafka's producer: `ChangelogWriter.flush` sends record by record, as Faust would."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes, int]] = []

    async def send(self, topic: str, key: bytes, value: bytes, partition: int, *rest: Any) -> None:
        self.sent.append((topic, key, value, partition))


class _App:
    def __init__(self) -> None:
        self.producer = _Producer()


async def test_the_records_are_those_the_state_agent_writes_for_the_same_states() -> None:
    rng = random.Random(1)
    states = [typical_state(i, rng) for i in range(20)]
    app, table = _App(), _Table("app-customers-changelog")
    writer = ChangelogWriter(app, table)  # type: ignore[arg-type]  # duck-typed app and table
    for state in states:
        # The agent writes to the partition of the canonical event, keyed by the customer key.
        writer.put(state.key, st.dump(state), partition_for(state.key.encode(), 6))
    await writer.flush()
    ours = [changelog_record(state, 6) for state in states]
    assert sorted(app.producer.sent) == sorted(("app-customers-changelog", r.key, r.value, r.partition) for r in ours)
    assert {p for *_, p in app.producer.sent} == {r.partition for r in ours} and len({r.partition for r in ours}) > 1


def test_a_record_decodes_back_to_its_customer_and_state_as_faust_recovers_it() -> None:
    state = typical_state(7, random.Random(2))
    record = changelog_record(state, 4)
    assert codecs.get_codec("json").loads(record.key) == customer_key(7) == state.key
    assert st.load(record.value) == state
    assert len(state.billing.invoices) == 3 and state.support.cases  # a typical customer, all 15 events in


def test_the_changelog_topic_is_the_one_faust_names_for_the_state_table() -> None:
    concord = create_concord(Settings(app_id="bench-x-recovery", topic_partitions=4, topic_replication_factor=1),
                             roles=["state"])
    table = concord.table(TABLE)
    assert table.changelog_topic.get_topic_name() == changelog_topic("bench-x-recovery")
    assert table.changelog_topic.compacting and table.changelog_topic.partitions == 4


def test_memory_and_cpu_are_read_from_proc() -> None:
    memory = parse_status("Name:\tpython\nVmHWM:\t  300 kB\nVmRSS:\t  200 kB\nThreads:\t3\n")
    assert (memory.rss_bytes, memory.peak_rss_bytes) == (200 * 1024, 300 * 1024)
    # The command name may hold spaces and parentheses; utime and stime are the 14th and 15th fields.
    stat = "42 (py thon (x)) S 1 42 42 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 3 0 1 0 0"
    assert parse_cpu_seconds(stat, 100) == 3.0


@pytest.mark.parametrize("sizes", ["0", "10k", "1000,-5"])
async def test_customer_counts_must_be_positive_integers(sizes: str) -> None:
    with pytest.raises(SystemExit):
        await main(["--customers", sizes])
