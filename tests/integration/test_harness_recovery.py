"""First proof on the real broker: a table survives a SIGKILL of its worker via its changelog."""

from __future__ import annotations

import asyncio
from pathlib import Path

from concord.core.settings import Settings
from tests.integration.harness import Infra, produce, python_worker, wait_committed

APP = Path(__file__).parent / "apps" / "counter_app.py"


async def _wait_counts(worker, expected: dict[str, int], timeout: float = 60.0) -> dict[str, int]:
    deadline = asyncio.get_running_loop().time() + timeout
    counts: dict[str, int] = {}
    while asyncio.get_running_loop().time() < deadline:
        counts = await worker.get_json("/counts")  # type: ignore[assignment]
        if counts == expected:
            return counts
        await asyncio.sleep(0.5)
    raise AssertionError(f"table is {counts}, expected {expected}\n{worker.log_tail()}")


async def test_table_recovered_from_changelog_after_sigkill(infra: Infra, settings: Settings,
                                                            tmp_path: Path) -> None:
    topic = f"{settings.topic_prefix}.test-counts"
    keys = [f"customer-{i}" for i in range(10)]
    first = [(k.encode(), b"x") for i in range(30) for k in keys[: 1 + i % 10]]
    expected: dict[str, int] = {}
    for key, _ in first:
        expected[key.decode()] = expected.get(key.decode(), 0) + 1

    worker = python_worker(APP, settings, tmp_path / "worker.log").start()
    try:
        await worker.wait_ready()
        await produce(infra.bootstrap, topic, first)
        await _wait_counts(worker, expected)
        # Offsets committed: the restart must not re-count what the table already holds.
        await wait_committed(infra.bootstrap, settings.app_id, topic)
        worker.kill()
    finally:
        worker.stop()

    # The local store is memory: everything the new process knows comes from the changelog.
    restarted = python_worker(APP, settings, tmp_path / "worker2.log").start()
    try:
        await restarted.wait_ready()
        assert await _wait_counts(restarted, expected, timeout=30) == expected
        # And it keeps counting from where it was.
        await produce(infra.bootstrap, topic, [(b"customer-0", b"x")] * 5)
        expected["customer-0"] += 5
        await _wait_counts(restarted, expected)
    finally:
        restarted.stop()
