"""Real faults between the handler and its servers, through toxiproxy: latency, resets, outages.

What must hold: the handler answers within its bounded timeouts with a 503 when
a retry helps, nothing is dispatched twice, and anything left half-done has a
record the next delivery or the sweeper finishes.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from handler.dynamo import DynamoStore
from handler.pipeline import open_pipeline
from handler.settings import Settings
from handler.sweeper import Sweeper
from tests.conftest import FAULT_PORTS
from tests.livekit_helpers import eventually, lk_api, log_json, named_dispatches
from tests.toxiproxy import Toxiproxy
from tests.webhooks import event, signed_request

pytestmark = pytest.mark.anyio
API, LIVEKIT_PROXY, DYNAMODB_PROXY, HANDLER = FAULT_PORTS
LEASE = 3


@pytest.fixture(scope="module")
def faulty(local_stack, faults):
    env = {"LIVEKIT_URL": faults.livekit_url, "AWS_ENDPOINT_URL_DYNAMODB": faults.dynamodb_url,
           "SWITCHBOARD_LIVEKIT_TIMEOUT_SECONDS": "2", "SWITCHBOARD_DYNAMODB_CONNECT_TIMEOUT_SECONDS": "1",
           "SWITCHBOARD_DYNAMODB_READ_TIMEOUT_SECONDS": "1", "SWITCHBOARD_DYNAMODB_MAX_ATTEMPTS": "2",
           "SWITCHBOARD_CLAIM_LEASE_SECONDS": str(LEASE)}
    service = local_stack.start_handler(HANDLER, "handler-faulty", **env)
    yield faults.toxiproxy, {"livekit": faults.livekit, "dynamodb": faults.dynamodb}, env
    service.stop()


@pytest.fixture(autouse=True)
def no_toxics(faulty):
    faulty[0].reset()


def deliver(room, **kw) -> tuple[bytes, dict]:
    return signed_request(event("room_started", room.name, room.sid, {"agents": [{"name": "driver"}]}, **kw))


async def post(body: bytes, headers: dict) -> httpx.Response:
    async with httpx.AsyncClient(timeout=60) as client:
        return await client.post(f"http://127.0.0.1:{HANDLER}/webhook", content=body, headers=headers)


async def redeliver_until_200(body: bytes, headers: dict, attempts: int = 30) -> list[int]:
    codes = []
    for _ in range(attempts):
        codes.append((await post(body, headers)).status_code)
        if codes[-1] == 200:
            return codes
        await asyncio.sleep(1)
    return codes


async def driver_dispatches(local_stack, room) -> list:
    async with lk_api(local_stack.livekit_url) as lk:
        return [d for d in await named_dispatches(lk, room.name) if d.agent_name == "driver"]


@pytest.mark.parametrize("fault", ["latency beyond the timeout", "connection reset", "server down"])
async def test_livekit_faults_answer_503_and_the_redelivery_dispatches_once(local_stack, aws, faulty, room, fault):
    toxiproxy, proxies, _ = faulty
    lk_proxy = proxies["livekit"]
    if fault == "latency beyond the timeout":
        lk_proxy.add("latency", "upstream", latency=4000)
    elif fault == "connection reset":
        lk_proxy.add("reset_peer", "upstream", timeout=0)
    else:
        lk_proxy.enabled(False)
    body, headers = deliver(room)
    response = await post(body, headers)
    assert response.status_code == 503 and response.headers["Retry-After"].isdigit()
    [record] = log_json(aws, "--room", room.name)
    assert record["status"] == "FAILED" and record["error"].startswith("LiveKit")

    toxiproxy.reset()
    if fault == "latency beyond the timeout":
        await asyncio.sleep(4)  # the delayed CreateDispatch may still land: the retry must find and adopt it
    codes = await redeliver_until_200(body, headers)
    assert codes[-1] == 200, codes
    dispatches = await driver_dispatches(local_stack, room)
    [record] = log_json(aws, "--room", room.name)
    assert [d.id for d in dispatches] == [record["dispatch_id"]] and record["status"] == "DISPATCHED"


@pytest.mark.parametrize("fault", ["latency beyond the timeout", "server down"])
async def test_dynamodb_faults_answer_503_and_dispatch_nothing_until_it_is_back(local_stack, aws, faulty, room, fault):
    toxiproxy, proxies, _ = faulty
    if fault == "server down":
        proxies["dynamodb"].enabled(False)
    else:
        proxies["dynamodb"].add("latency", "downstream", latency=2500)
    body, headers = deliver(room)
    response = await post(body, headers)
    assert response.status_code == 503 and "dispatch log unavailable" in response.json()["error"]
    assert await driver_dispatches(local_stack, room) == []

    toxiproxy.reset()
    codes = await redeliver_until_200(body, headers)
    assert codes[-1] == 200, codes
    assert len(await driver_dispatches(local_stack, room)) == 1


async def test_dynamodb_lost_mid_dispatch_leaves_a_claim_the_sweeper_finishes(local_stack, aws, faulty, room):
    """CreateDispatch succeeds, then DynamoDB vanishes before DISPATCHED is written."""
    toxiproxy, proxies, env = faulty
    proxies["livekit"].add("latency", "downstream", latency=1200)  # answer slowly, but inside the timeout
    body, headers = deliver(room)
    async with DynamoStore.open(Settings()) as direct:  # DynamoDB itself, not through the proxy
        request = asyncio.create_task(post(body, headers))
        # Cut DynamoDB off once the claim is written, while CreateDispatch is in flight.
        await eventually(lambda: direct.load_slots(room.sid), timeout=20, interval=0.02)
        proxies["dynamodb"].enabled(False)
    response = await request
    assert response.status_code == 503
    toxiproxy.reset()
    assert len(await driver_dispatches(local_stack, room)) == 1
    [record] = log_json(aws, "--room", room.name)
    assert record["status"] == "CLAIMED"  # half-done, but on record

    await asyncio.sleep(LEASE + 0.5)
    settings = Settings(**{"livekit_url": local_stack.livekit_url, "livekit_api_key": "devkey",
                           "livekit_api_secret": "secret", "allowed_agents": frozenset({"driver"}),
                           "claim_lease_seconds": LEASE})
    async with open_pipeline(settings) as pipeline:
        await Sweeper(pipeline).sweep()
    [record] = log_json(aws, "--room", room.name)
    dispatches = await driver_dispatches(local_stack, room)
    assert record["status"] == "DISPATCHED" and [d.id for d in dispatches] == [record["dispatch_id"]]
    assert "adopted" in record["reason"]
