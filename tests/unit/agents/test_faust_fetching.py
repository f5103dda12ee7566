"""The worker consumer's fetch long-poll is the setting's, not Faust's fixed 1.5 s (faust_internals/fetching.py)."""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka

from concord.agents.faust_internals import fetching


class Consumer:
    _fetch_max_wait_ms = 1500


def test_the_consumer_faust_creates_gets_the_configured_wait_once_wrapped(monkeypatch: Any) -> None:
    created: list[Consumer] = []

    def create(self: Any, transport: Any) -> Consumer:
        created.append(Consumer())
        return created[-1]

    monkeypatch.setattr(faust_aiokafka.AIOKafkaConsumerThread, "_create_worker_consumer", create)
    fetching.apply(100)
    fetching.apply(50)  # installed once: the last value wins, no second wrapper
    wrapped = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer
    assert getattr(wrapped, "_concord_patched", False) and wrapped.__wrapped__ is create  # type: ignore[attr-defined]
    consumer = wrapped(object(), object())  # type: ignore[arg-type]
    assert consumer is created[-1] and consumer._fetch_max_wait_ms == 50
