"""The drift board on a real worker (real Kafka and Redis): findings made by the real pipeline appear on `/`,
their changes arrive over `/events` and a reconnect resumes from `Last-Event-ID`; credentials on every route."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from concord.bench.workload import customer_key
from concord.codecs.model import encode as encode_event
from concord.core.settings import Settings
from concord.core.topics import topic_names
from tests.integration.harness import Infra, produce
from tests.integration.test_drift import MISSING_ERP, histories, rules_file, state_worker, wait_drift

STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_read=None, sock_connect=10)


@pytest.fixture
def board_settings(settings: Settings, tmp_path: Path) -> Settings:
    return msgspec.structs.replace(settings, rules_file=str(rules_file(tmp_path)), deadline_scan_seconds=0.2)


class Events:
    """An open `/events` stream, read event by event."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self, timeout: float = 30.0) -> dict[str, str]:
        """The next event (comments skipped): its fields."""
        while True:
            raw = await asyncio.wait_for(self.response.content.readuntil(b"\n\n"), timeout)
            fields: dict[str, str] = {}
            for line in raw.decode().strip("\n").split("\n"):
                if not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    fields[name] = value
            if "event" in fields or "data" in fields:
                return fields

    async def findings(self, until: Any, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Finding changes (with their `id`) until `until(changes so far)` is true."""
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        while not until(seen):
            event = await self.next(max(0.1, deadline - time.monotonic()))
            if event.get("event") == "finding":
                seen.append({"id": event["id"], **json.loads(event["data"])})
        return seen


async def open_events(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> Events:
    response = await session.get(url, headers=headers, timeout=STREAM_TIMEOUT)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert response.headers["Cache-Control"] == "no-cache"
    return Events(response)


async def test_the_board_shows_pipeline_findings_live_and_resumes(infra: Infra, board_settings: Settings,
                                                                  tmp_path: Path) -> None:
    names = topic_names(board_settings)
    token = {"Authorization": f"Bearer {board_settings.read_token}"}
    missing_erp = customer_key(MISSING_ERP)
    worker = state_worker(board_settings, tmp_path / "worker.log").start()
    try:
        await worker.wait_ready()
        async with aiohttp.ClientSession() as session:
            # Credentials first: a person is sent to sign in, a script gets a 401.
            async with session.get(f"{worker.base_url}/", allow_redirects=False) as resp:
                assert resp.status == 303 and resp.headers["Location"] == "/login?next=%2F"
            async with session.get(f"{worker.base_url}/events") as resp:
                assert resp.status == 401
            empty = await worker.get_text("/")
            assert "No finding matches these filters." in empty
            after = empty.split('data-after="', 1)[1].split('"', 1)[0]

            live = await open_events(session, f"{worker.base_url}/events?after={after}", token)
            events, _, _ = histories()
            await produce(infra.bootstrap, names.canonical,
                          [((e.customer_key or "").encode(), encode_event(e)) for e in events])
            changes = await live.findings(lambda seen: {c["rule"] for c in seen} >= {"D01", "D04", "D15"})
            d04 = next(c for c in changes if c["rule"] == "D04")
            assert d04["customer_key"] == missing_erp and d04["kind"] in ("new", "status")
            live.response.close()

            # The page, rendered with the finding made by the pipeline: owner, title, evidence side by side.
            opened = await wait_drift(worker, "open", 3)
            page = await worker.get_text("/")
            row = page.split(f'id="f-{d04["fingerprint"]}"', 1)[1].split("\n</tbody>", 1)[0]  # its own, not a side's
            assert missing_erp in row and "Finalized billing invoice missing in the ERP" in row and "Finance" in row
            assert "<caption>stripe</caption>" in row and "<caption>netsuite</caption>" in row
            assert 'class="missing"' in row  # the ERP side has no invoice
            assert page.count('class="finding ') == 3
            assert all(f["owner"] in ("finance", "support") for f in opened)  # /api/drift names the owner too
            filtered = await worker.get_text("/?owner=support")
            assert f'id="f-{d04["fingerprint"]}"' not in filtered and filtered.count('class="finding ') == 2
            fragment = await worker.get_text(f"/board/findings/{d04['fingerprint']}?owner=finance")
            assert fragment.startswith('<tbody class="finding') and missing_erp in fragment
            async with session.get(f"{worker.base_url}/board/findings/{d04['fingerprint']}?owner=support",
                                   headers=token) as resp:
                assert resp.status == 204  # not on that list
            assert "Open findings: <span id=\"open-total\">3</span>" in await worker.get_text("/board/summary")

            # Reconnect with the first change's id: everything after it comes again, in order, same ids.
            seen = changes
            assert len(seen) >= 3
            resumed = await open_events(session, f"{worker.base_url}/events?after={after}",
                                        {**token, "Last-Event-ID": seen[0]["id"]})
            again = await resumed.findings(lambda got: len(got) >= len(seen) - 1)
            assert [c["id"] for c in again[: len(seen) - 1]] == [c["id"] for c in seen[1:]]

            # A browser signs in once and reads with its cookie, the live stream included.
            async with session.post(f"{worker.base_url}/login", data={"token": board_settings.read_token},
                                    allow_redirects=False) as resp:
                assert resp.status == 303
                cookie = resp.headers["Set-Cookie"].split(";", 1)[0]
            async with session.get(f"{worker.base_url}/?status=all", headers={"Cookie": cookie}) as resp:
                assert resp.status == 200 and missing_erp in await resp.text()

            # The worker stops promptly with a board still connected: its stream is ended, not waited for.
            await open_events(session, f"{worker.base_url}/events", {"Cookie": cookie})
            started = time.monotonic()
            assert worker.stop() == 0, worker.log_tail()
            assert time.monotonic() - started < 20, "a connected board held the worker's shutdown"
            resumed.response.close()
    finally:
        worker.stop()
