"""Lambda SnapStart's hooks, on the real handler process (handler/snapstart.py).

No Lambda here: the test plays Lambda Web Adapter v1.1.0's part, which is two empty
POSTs on loopback (before the snapshot, after each restore), against `switchboard
serve` started the way handler/run.sh starts it, with the LiveKit keys in a
(loopback) Secrets Manager secret. Between the checkpoint and the restore the secret
is rotated, as it would be between a version's publish and a later restore.
"""

from __future__ import annotations

import json
import socket
import sys
import uuid

import httpx
import pytest
from livekit import api

from infra.stack import DEV_API_KEY, DEV_API_SECRET, http_ok
from tests.conftest import SECOND_KEY, SECOND_SECRET
from tests.livekit_helpers import eventually, lk_api, named_dispatches
from tests.test_template_fakes import fake_secrets_manager
from tests.webhooks import event, signed_request

BEFORE, AFTER = "/_lwa/before-checkpoint", "/_lwa/after-restore"
SECRET_VARIABLES = ("LIVEKIT_API_KEY", "LIVEKIT_API_SECRET", "SWITCHBOARD_LIVEKIT_API_KEY",
                    "SWITCHBOARD_LIVEKIT_API_SECRET", "SWITCHBOARD_WEBHOOK_KEYS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.anyio
async def test_a_restore_reopens_the_clients_and_reads_the_rotated_secret(local_stack, room_name, monkeypatch):
    arn = f"arn:aws:secretsmanager:eu-west-1:123456789012:secret:switchboard/snap-{uuid.uuid4().hex[:6]}"
    for name in SECRET_VARIABLES:  # only the secret may supply keys
        monkeypatch.delenv(name, raising=False)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with fake_secrets_manager({arn: {"LIVEKIT_API_KEY": DEV_API_KEY, "LIVEKIT_API_SECRET": DEV_API_SECRET}}) as sm:
        env = {k: v for k, v in local_stack.env.items() if k not in SECRET_VARIABLES} | {
            "SWITCHBOARD_LIVEKIT_SECRET_ARN": arn, "AWS_ENDPOINT_URL_SECRETS_MANAGER": sm.url,
            "AWS_LWA_SNAPSTART_BEFORE_CHECKPOINT_PATH": BEFORE, "AWS_LWA_SNAPSTART_AFTER_RESTORE_PATH": AFTER}
        service = local_stack.stack.start_process(
            f"snapstart-{port}", [sys.executable, "-m", "handler.cli", "serve", "--host", "127.0.0.1",
                                  "--port", str(port)], env)
        try:
            def ready() -> bool:
                assert service.alive(), service.log_tail()
                try:
                    return http_ok(base + "/healthz")
                except OSError:
                    return False

            await eventually(ready, timeout=60, interval=0.1)
            async with lk_api(local_stack.livekit_url) as lk, httpx.AsyncClient(base_url=base, timeout=30) as client:
                room = await lk.room.create_room(api.CreateRoomRequest(name=room_name, empty_timeout=60))
                try:
                    async def post(kind: str, agent: str, **sign: str) -> httpx.Response:
                        body, headers = signed_request(event(kind, room.name, room.sid, {"agents": [{"name": agent}]}),
                                                       **sign)
                        return await client.post("/webhook", content=body, headers=headers)

                    # Init: the first secret's key verifies; the key rotated in later does not yet.
                    assert (await post("room_started", "driver")).status_code == 200
                    assert (await post("room_started", "dispatcher", key=SECOND_KEY,
                                       secret=SECOND_SECRET)).status_code == 401

                    # The snapshot: clients closed. Then, while "frozen", the secret gains a key.
                    assert (await client.post(BEFORE)).status_code == 200
                    sm.secrets[arn] = json.dumps({"LIVEKIT_API_KEY": DEV_API_KEY, "LIVEKIT_API_SECRET": DEV_API_SECRET,
                                                  "SWITCHBOARD_WEBHOOK_KEYS": f"{SECOND_KEY}:{SECOND_SECRET}"})
                    assert (await client.post(AFTER)).status_code == 200

                    # Restored: the new key verifies, and the reopened DynamoDB client and LiveKit
                    # session claim and dispatch (the second agent of the room).
                    answer = await post("room_started", "dispatcher", key=SECOND_KEY, secret=SECOND_SECRET)
                    assert answer.status_code == 200, answer.text
                    assert [s["result"] for s in answer.json()["outcome"]["slots"]] == ["dispatched"]
                    assert sorted(d.agent_name for d in await named_dispatches(lk, room.name)) == ["dispatcher",
                                                                                                  "driver"]
                    # A second restore (another instance from the same snapshot) does it again.
                    assert (await client.post(AFTER)).status_code == 200
                    assert (await post("room_started", "driver")).json()["outcome"]["slots"][0]["result"] == "duplicate"
                finally:
                    await lk.room.delete_room(api.DeleteRoomRequest(room=room_name))
        finally:
            service.stop()
        assert len(sm.reads_of(arn)) == 3  # init, and once per restore
    log = service.log_path.read_text(errors="replace")
    assert log.count("switchboard restored") == 2 and "clients closed for the snapshot" in log
    assert SECOND_SECRET not in log


def test_without_the_adapters_variables_there_are_no_hook_routes():
    import logging

    from handler.app import create_app
    from handler.settings import Settings

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        app = create_app(Settings(livekit_secret_arn=None), store=object(), dispatcher=object())
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    assert {r.path for r in app.routes} == {"/webhook", "/healthz"}
