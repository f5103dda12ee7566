"""The partition of a key, exactly as the Kafka producer picks it (murmur2, as Java's client)."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner

_partitioner = DefaultPartitioner()


def partition_for(key: bytes, partitions: int) -> int:
    """Partition of `key` among `partitions`: where a keyed record (and its table state) lives."""
    every = list(range(partitions))
    return int(_partitioner(key, every, every))
