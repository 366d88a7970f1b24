"""Hostile input: each case gets a clear answer, and nothing is dispatched or lost that should not be."""

from __future__ import annotations

import asyncio
import datetime
import json
import socket

import httpx
import pytest

from handler.app import create_app
from handler.settings import Settings
from tests.conftest import HOSTILE_HANDLER_PORT, SECOND_KEY
from tests.livekit_helpers import assert_nothing_dispatched, lk_api, log_json, named_dispatches
from tests.webhooks import event, participant, signed_request

pytestmark = pytest.mark.anyio
MiB = 1024 * 1024


def post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(url, content=body, headers=headers, timeout=30)


def drill(room, metadata=None, **kw):
    return event("room_started", room.name, room.sid, metadata or {"agents": [{"name": "driver"}]}, **kw)


@pytest.mark.parametrize("case", ["no token", "garbage token", "forged signature", "token for another key",
                                  "a known key's token signed with another secret", "expired token",
                                  "body altered after signing"])
async def test_bad_signatures_get_401_and_nothing_is_dispatched(local_stack, aws, room, case):
    body, headers = signed_request(drill(room))
    if case == "no token":
        del headers["Authorization"]
    elif case == "garbage token":
        headers["Authorization"] = "garbage"
    elif case == "forged signature":
        headers["Authorization"] = signed_request(body, secret="not-the-secret")[1]["Authorization"]
    elif case == "token for another key":
        headers["Authorization"] = signed_request(body, key="stranger", secret="stranger-secret")[1]["Authorization"]
    elif case == "a known key's token signed with another secret":
        headers["Authorization"] = signed_request(body, key=SECOND_KEY, secret="secret")[1]["Authorization"]
    elif case == "expired token":
        headers["Authorization"] = signed_request(body, ttl=datetime.timedelta(seconds=-60))[1]["Authorization"]
    elif case == "body altered after signing":
        body = body.replace(b"driver", b"dispatcher")
        assert b"dispatcher" in body
    response = post(local_stack.webhook_url, body, headers)
    assert response.status_code == 401
    assert set(response.json()) == {"error"} and len(response.json()["error"]) < 100
    await assert_nothing_dispatched(local_stack, aws, room)


async def test_a_replay_after_processing_is_answered_from_the_record(local_stack, aws, room):
    body, headers = signed_request(drill(room))
    first = post(local_stack.webhook_url, body, headers)
    assert first.status_code == 200
    replay = post(local_stack.webhook_url, body, headers)
    assert replay.status_code == 200
    # The first answer again, from the event's record (tests/test_event_path.py).
    assert replay.json()["outcome"] == first.json()["outcome"] | {"replayed": True}
    assert [s["result"] for s in replay.json()["outcome"]["slots"]] == ["dispatched"]
    async with lk_api(local_stack.livekit_url) as lk:
        assert len(await named_dispatches(lk, room.name)) == 1


async def test_a_replay_after_the_room_ended_dispatches_nothing(local_stack, aws, room):
    body, headers = signed_request(drill(room))
    assert post(local_stack.webhook_url, body, headers).status_code == 200
    finished = signed_request(event("room_finished", room.name, room.sid))
    assert post(local_stack.webhook_url, *finished).status_code == 200
    assert post(local_stack.webhook_url, body, headers).status_code == 200
    [record] = log_json(aws, "--room", room.name)
    assert record["status"] == "ENDED"
    async with lk_api(local_stack.livekit_url) as lk:
        assert len(await named_dispatches(lk, room.name)) == 1


async def test_an_oversized_declared_body_gets_413(local_stack):
    body = b"x" * (MiB + 1)
    response = post(local_stack.webhook_url, body, signed_request(body)[1])
    assert response.status_code == 413


async def test_an_oversized_streamed_body_without_length_gets_413(local_stack):
    def chunks():
        for _ in range(40):
            yield b"x" * 65536  # 2.5 MiB, never declared

    response = httpx.post(local_stack.webhook_url, content=chunks(), headers=signed_request(b"x")[1], timeout=30)
    assert response.status_code == 413


def asgi_scope() -> dict:
    return {"type": "http", "method": "POST", "path": "/webhook", "headers": [
        (b"authorization", b"token"), (b"content-type", b"application/webhook+json")],
        "query_string": b"", "http_version": "1.1", "scheme": "http", "server": ("t", 80), "root_path": ""}


async def test_the_body_limit_stops_reading_the_stream_early():
    """At the ASGI level, so we can count what the app pulled from the stream."""
    app = create_app(Settings(livekit_api_key="devkey", livekit_api_secret="secret"), store=object())
    pulled, sent = 0, []

    async def receive():
        nonlocal pulled
        pulled += 65536
        return {"type": "http.request", "body": b"x" * 65536, "more_body": pulled < 64 * MiB}

    async def send(message):
        sent.append(message)

    await app(asgi_scope(), receive, send)
    assert sent[0]["status"] == 413
    assert pulled <= MiB + 65536  # stopped at the limit, not after 64 MiB


async def test_a_slow_body_gets_408_from_a_real_socket(local_stack):
    local_stack.start_handler(HOSTILE_HANDLER_PORT, "handler-hostile", SWITCHBOARD_BODY_READ_TIMEOUT_SECONDS="1")
    loop = asyncio.get_running_loop()

    def slowloris() -> bytes:
        with socket.create_connection(("127.0.0.1", HOSTILE_HANDLER_PORT), timeout=20) as s:
            s.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\nAuthorization: t\r\n"
                      b"Content-Type: application/webhook+json\r\nContent-Length: 1000\r\n\r\n{")
            reply = b""
            for _ in range(20):  # one byte every 0.3 s: 6 s for 20 bytes, far slower than the limit
                try:
                    s.sendall(b" ")
                except OSError:
                    break
                s.settimeout(0.3)
                try:
                    reply += s.recv(4096)
                    if reply:
                        break
                except TimeoutError:
                    continue
            return reply

    reply = await loop.run_in_executor(None, slowloris)
    assert reply.startswith(b"HTTP/1.1 408")


async def test_signed_invalid_utf8_gets_400(local_stack, aws, room):
    body = b'{"event": "room_started", "id": "\xff\xfe", "room": {"sid": "' + room.sid.encode() + b'"}}'
    response = post(local_stack.webhook_url, body, signed_request(body)[1])
    assert response.status_code == 400 and "UTF-8" in response.json()["error"]
    await assert_nothing_dispatched(local_stack, aws, room)


@pytest.mark.parametrize("metadata, fragment", [
    ('{"agents": [{"name": "a", "metadata": ' + '{"x": ' * 8000 + "1" + "}" * 8000 + "}]}", "nested too deeply"),
    (json.dumps({"agents": [{"name": "driver", "metadata": {"blob": "x" * 200_000}}]}), "over the 65536-byte limit"),
    (json.dumps({"agents": [{"name": f"a{i}"} for i in range(2500)]}), "at most 64 items"),
])
async def test_deep_huge_or_endless_metadata_is_recorded_and_dispatches_nothing(local_stack, aws, room, metadata,
                                                                               fragment):
    response = post(local_stack.webhook_url, *signed_request(drill(room, metadata)))
    assert response.status_code == 200
    assert fragment in response.json()["decision"]["error"]
    await assert_nothing_dispatched(local_stack, aws, room)


async def test_unknown_agent_names_are_rejected_with_the_reason(local_stack, aws, room):
    metadata = {"agents": [{"name": "driver"}, {"name": "crypto-miner"}, {"name": "exfiltrator"}]}
    assert post(local_stack.webhook_url, *signed_request(drill(room, metadata))).status_code == 200
    records = {r["agent_name"]: r for r in log_json(aws, "--room", room.name)}
    assert records["driver"]["status"] == "DISPATCHED"
    for name in ("crypto-miner", "exfiltrator"):
        assert records[name]["status"] == "REJECTED"
        assert records[name]["reason"] == f"agent '{name}' is not in this deployment's allowlist"
    async with lk_api(local_stack.livekit_url) as lk:
        assert [d.agent_name for d in await named_dispatches(lk, room.name)] == ["driver"]


async def test_identities_with_control_characters_are_kept_exactly_and_dispatched_once(local_stack, aws, room):
    identity = "evil\x00\x1b[31m\nid\u202e#P#x"
    metadata = {"on_participant_joined": [{"name": "translator"}]}
    joined = signed_request(event("participant_joined", room.name, room.sid, metadata,
                                  participant=participant(identity)))
    for _ in range(3):
        assert post(local_stack.webhook_url, *joined).status_code == 200
    [record] = log_json(aws, "--room", room.name)
    assert record["participant_identity"] == identity and record["status"] == "DISPATCHED"
    async with lk_api(local_stack.livekit_url) as lk:
        [dispatch] = await named_dispatches(lk, room.name)
    assert json.loads(dispatch.metadata)["participant_identity"] == identity
