"""The saga API and `concord saga` on a real worker, broker and Redis (issue 17): sagas written to the saga index
through `SagaIndex` (as a state worker's mirror writes them) are listed over HTTP with a viewer's token; the
viewer and nobody are refused the resume; an operator resumes the paused saga (and is refused the completed one),
and the `ResumeSaga` lands on the canonical topic keyed by the customer, under the operator's name; `concord saga
resume` sends one as `cli:<the OS user>`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import aiohttp
import msgspec

from concord.app import users
from concord.codecs.records import decode_state
from concord.connectors.ledger import redis_client
from concord.connectors.saga_index import SagaIndex
from concord.core.messages import ResumeSaga
from concord.core.settings import Settings
from concord.core.topics import topic_names
from concord.drift import saga as sg
from tests.integration.harness import REPO, Infra, WorkerProcess, settings_env, wait_for_record
from tests.unit.drift.builders import KEY
from tests.unit.drift.test_saga import Driver, deal


def sagas() -> sg.SagaBook:
    """One customer's sagas as the engine leaves them: a deal paused for want of a VAT number, one provisioned."""
    paused = Driver(deal(country="DE"))
    paused.step()
    done = Driver(deal())
    done.step()
    done.answer_all()
    assert (paused.saga.state, done.saga.state) == (sg.PAUSED, sg.COMPLETED)
    provisioned = msgspec.structs.replace(done.saga, opportunity_id="006DONE")
    return sg.SagaBook(sagas={"006A": paused.saga, "006DONE": provisioned})


async def test_a_paused_saga_is_listed_and_resumed_by_name_over_http_and_from_the_cli(
        infra: Infra, settings: Settings, tmp_path: Path) -> None:
    users_file = tmp_path / "users.toml"
    alice = users.add(users_file, "alice", "operator")
    bob = users.add(users_file, "bob", "viewer")
    settings = msgspec.structs.replace(settings, users_file=str(users_file))
    client = redis_client(settings.redis_url)
    try:
        await SagaIndex(client, settings.topic_prefix)._write({KEY: sagas()})
    finally:
        await client.aclose()
    worker = WorkerProcess([sys.executable, "-m", "concord.app.cli", "worker", "--roles", "commands"], settings,
                           tmp_path / "worker.log").start()
    try:
        await worker.wait_ready()
        api = f"{worker.base_url}/api/v1/sagas"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{api}?state=paused", headers={"Authorization": f"Bearer {bob}"}) as resp:
                assert resp.status == 200, await resp.text()
                listed = await resp.json()
            assert [s["opportunity_id"] for s in listed["sagas"]] == ["006A"]
            assert listed["sagas"][0]["reason_code"] == sg.MISSING_TAX_ID and "tax id" in listed["sagas"][0]["fix"]
            assert (listed["counts"]["paused"], listed["counts"]["completed"]) == (1, 1)
            async with http.get(f"{api}?state=stuck", headers={"Authorization": f"Bearer {bob}"}) as resp:
                assert resp.status == 400 and "not a saga state" in (await resp.json())["detail"]

            async with http.post(f"{api}/006A/resume", json={"note": "VAT number set"}) as resp:
                assert resp.status == 401
            async with http.post(f"{api}/006A/resume", headers={"Authorization": f"Bearer {bob}"}) as resp:
                assert resp.status == 403 and (await resp.json())["error"] == "forbidden"
            operator = {"Authorization": f"Bearer {alice}"}
            async with http.post(f"{api}/006DONE/resume", headers=operator) as resp:
                assert resp.status == 409 and (await resp.json())["error"] == "not_resumable"
            async with http.post(f"{api}/006A/resume", headers=operator, json={"note": "VAT number set"}) as resp:
                assert resp.status == 202, await resp.text()
                answer = await resp.json()
            assert answer["sent"] == {"kind": "saga_resume", "customer_key": KEY, "opportunity_id": "006A",
                                      "by": "alice", "note": "VAT number set"}

        canonical = topic_names(settings).canonical
        record = await wait_for_record(infra.bootstrap, canonical, lambda r: b"saga_resume" in r.value, timeout=20)
        assert record.key == KEY.encode()
        assert decode_state(record.value) == ResumeSaga(customer_key=KEY, opportunity_id="006A", by="alice",
                                                         note="VAT number set")

        env = {"PATH": "/usr/bin:/bin", "LOGNAME": "carol", **settings_env(settings)}  # getpass reads LOGNAME first
        cli = subprocess.run([sys.executable, "-m", "concord.app.cli", "saga", "resume", "006A", "--note", "again"],
                             capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
        assert cli.returncode == 0, cli.stderr
        by = "cli:carol"
        assert f"sent as {by}" in cli.stdout
        record = await wait_for_record(infra.bootstrap, canonical, lambda r: by.encode() in r.value, timeout=20)
        assert record.key == KEY.encode() and decode_state(record.value) == ResumeSaga(
            customer_key=KEY, opportunity_id="006A", by=by, note="again")
    finally:
        worker.stop()
