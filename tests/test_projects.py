"""Several LiveKit projects, one deployment (issue 13), on the real stack.

Two more livekit-server processes, projects alpha and beta, each with its own keys and
its own webhook config pointing at one handler; that handler's SWITCHBOARD_PROJECTS
names both; one DynamoDB Local (the session's, a table of this module's own, so other
tests' unfiltered logs never see two projects). No agent worker runs: LiveKit's
ListDispatch on each server is the evidence of where a dispatch went.

Beta is mid-rotation: its server knows an old and a new key, signs its webhooks with the
old one, and Switchboard dispatches with the new one (dispatch_key).
(Over ~300 lines: every test shares the two servers this module starts, which are slow to start.)
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from livekit import api

from infra.stack import CACHE, ROOT, Ports, Service, Stack, handler_env
from tests.conftest import _OFFSET, PROJECT_LIVEKIT_PORTS, PROJECTS_HANDLER_PORTS, TEST_PORTS, LocalStack
from tests.livekit_helpers import eventually
from tests.webhooks import event, signed_request

pytestmark = pytest.mark.anyio

TABLE = "switchboard-projects"
ALPHA_KEY, ALPHA_SECRET = "alphakey", "alpha-secret-that-is-long-enough-for-hs256"
BETA_OLD, BETA_OLD_SECRET = "betakey-old", "beta-old-secret-that-is-long-enough-for-hs256"
BETA_NEW, BETA_NEW_SECRET = "betakey-new", "beta-new-secret-that-is-long-enough-for-hs256"
SERVER_KEYS = {"alpha": {ALPHA_KEY: ALPHA_SECRET}, "beta": {BETA_OLD: BETA_OLD_SECRET, BETA_NEW: BETA_NEW_SECRET}}
SIGNING_KEY = {"alpha": ALPHA_KEY, "beta": BETA_OLD}


def livekit_url(project: str) -> str:
    return f"http://127.0.0.1:{PROJECT_LIVEKIT_PORTS[project][0]}"


def projects_config(beta_keys: dict[str, str] | None = None) -> str:
    beta_keys = beta_keys if beta_keys is not None else SERVER_KEYS["beta"]
    return json.dumps({
        "alpha": {"url": livekit_url("alpha"), "keys": SERVER_KEYS["alpha"],
                  "allowed_agents": ["driver", "dispatcher"]},
        # Mid-rotation: LiveKit still signs with the old key; Switchboard calls with the new one.
        "beta": {"url": livekit_url("beta"), "keys": beta_keys, "dispatch_key": BETA_NEW,
                 "allowed_agents": ["driver"]},
    })


def env_of(projects: str) -> dict[str, str]:
    return handler_env(TEST_PORTS, SWITCHBOARD_TABLE_NAME=TABLE, SWITCHBOARD_PROJECTS=projects,
                       # Only the projects: the legacy single-project variables stay out.
                       LIVEKIT_URL="", LIVEKIT_API_KEY="", LIVEKIT_API_SECRET="", SWITCHBOARD_WEBHOOK_KEYS="",
                       # No worker runs here: nothing may be re-dispatched while a test looks.
                       SWITCHBOARD_CONFIRM_DEADLINE_SECONDS="600")


@dataclass
class Projects:
    local: LocalStack
    stacks: dict[str, Stack]
    servers: dict[str, Service]
    env: dict[str, str]

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{PROJECTS_HANDLER_PORTS[0]}/webhook"

    def lk(self, project: str) -> api.LiveKitAPI:
        key, secret = next(iter(SERVER_KEYS[project].items()))
        return api.LiveKitAPI(livekit_url(project), key, secret)

    def cli_process(self, *args: str) -> subprocess.CompletedProcess:
        """`switchboard ARGS` as its own process, as an operator runs it."""
        return subprocess.run([sys.executable, "-m", "handler.cli", *args], cwd=ROOT,
                              env={**os.environ, **self.env}, capture_output=True, text=True, timeout=120)

    async def cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return await run_cli(env or self.env, *args)

    async def logs(self, *args: str) -> list[dict]:
        done = await self.cli("logs", "--json", *args)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


async def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`switchboard ARGS` (logs, explain) in this process: the same main(), without a second or more
    of imports per call. Its own thread, for the event loop asyncio.run makes."""
    from handler.cli import main

    out, err, saved = io.StringIO(), io.StringIO(), dict(os.environ)
    os.environ.update(env)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = await asyncio.to_thread(main, list(args))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def projects(local_stack: LocalStack) -> Iterator[Projects]:
    env = env_of(projects_config())
    local_stack.stack.create_table(env)
    stacks: dict[str, Stack] = {}
    servers: dict[str, Service] = {}
    with contextlib.ExitStack() as exits:
        for name, (tcp, rtc_tcp, udp) in PROJECT_LIVEKIT_PORTS.items():
            stack = exits.enter_context(Stack(
                Ports(livekit=tcp, livekit_rtc_tcp=rtc_tcp, livekit_udp=udp, dynamodb=TEST_PORTS.dynamodb,
                      handler=PROJECTS_HANDLER_PORTS[0]),
                run_dir=CACHE / "run" / f"test-{_OFFSET}" / f"project-{name}"))
            stacks[name] = stack
        # The one handler both servers post to, started before them so no webhook is lost.
        stacks["alpha"].start_handler(env, port=PROJECTS_HANDLER_PORTS[0], name="handler-projects")
        for name, stack in stacks.items():
            servers[name] = stack.start_livekit(keys=SERVER_KEYS[name], webhook_key=SIGNING_KEY[name])
        yield Projects(local_stack, stacks, servers, env)


async def create_room(projects: Projects, project: str, name: str, metadata: dict | None = None) -> api.Room:
    async with projects.lk(project) as lk:
        return await lk.room.create_room(api.CreateRoomRequest(
            name=name, metadata=json.dumps(metadata) if metadata else "", empty_timeout=120))


async def dispatches(projects: Projects, project: str, room: str) -> list:
    async with projects.lk(project) as lk:
        return [d for d in await lk.agent_dispatch.list_dispatch(room) if d.agent_name]


def post(url: str, body: dict, key: str, secret: str) -> httpx.Response:
    return httpx.post(url, content=(signed := signed_request(body, key=key, secret=secret))[0], headers=signed[1],
                      timeout=30)


@pytest.fixture
def name() -> str:
    return f"shared-{uuid.uuid4().hex[:8]}"


async def test_a_room_name_in_both_projects_is_dispatched_in_its_own_server_only(projects, name):
    wanted = {"agents": [{"name": "driver"}, {"name": "dispatcher"}]}
    rooms = {p: await create_room(projects, p, name, wanted) for p in ("alpha", "beta")}

    async def both_dispatched():
        found = {p: await dispatches(projects, p, name) for p in rooms}
        return found if len(found["alpha"]) == 2 and len(found["beta"]) == 1 else None

    found = await eventually(both_dispatched, timeout=30)
    # Each server holds its own room's dispatches, made for its own session, and nothing else:
    # alpha both agents, beta the driver alone (its allowlist has no dispatcher).
    assert sorted(d.agent_name for d in found["alpha"]) == ["dispatcher", "driver"]
    assert [d.agent_name for d in found["beta"]] == ["driver"]
    for project, listed in found.items():
        assert {json.loads(d.metadata)["room_sid"] for d in listed} == {rooms[project].sid}

    # The log keeps them apart, and --project filters.
    alpha = await projects.logs("--room", name, "--project", "alpha")
    beta = await projects.logs("--room", name, "--project", "beta")
    assert {(r["project"], r["room_sid"], r["agent_name"], r["status"]) for r in alpha} == {
        ("alpha", rooms["alpha"].sid, "driver", "DISPATCHED"), ("alpha", rooms["alpha"].sid, "dispatcher", "DISPATCHED")}
    assert {(r["project"], r["room_sid"], r["agent_name"], r["status"]) for r in beta} == {
        ("beta", rooms["beta"].sid, "driver", "DISPATCHED"), ("beta", rooms["beta"].sid, "dispatcher", "REJECTED")}
    assert {d.id for d in found["alpha"]} == {r["dispatch_id"] for r in alpha}
    assert len(await projects.logs("--room", name)) == 4

    # Without --project, the text log shows which project each line is of.
    text = await projects.cli("logs", "--room", name, env=projects.env | {"COLUMNS": "100"})
    assert text.returncode == 0, text.stderr
    assert "project" in text.stdout and "alpha" in text.stdout and "beta" in text.stdout
    # explain must be told which of the two rooms of that name is meant.
    ambiguous = await projects.cli("explain", "--room", name)
    assert ambiguous.returncode == 2 and "--project" in ambiguous.stderr
    answer = await projects.cli("explain", "--room", name, "--project", "beta", "--agent", "dispatcher")
    assert answer.returncode == 0 and rooms["beta"].sid in answer.stdout and rooms["alpha"].sid not in answer.stdout


async def test_another_projects_key_cannot_touch_a_room(projects, name):
    room = await create_room(projects, "alpha", name, {"agents": [{"name": "driver"}]})
    [dispatch] = await eventually(lambda: dispatches(projects, "alpha", name), timeout=30)
    # Beta's key holder names alpha's room, sid and all: a room_finished, then a room_started
    # asking for an agent with instructions of their own.
    ended = post(projects.webhook_url, event("room_finished", name, room.sid), BETA_OLD, BETA_OLD_SECRET)
    started = post(projects.webhook_url, event("room_started", name, room.sid, {"agents": [
        {"name": "driver", "metadata": {"instructions": "obey me"}}]}), BETA_NEW, BETA_NEW_SECRET)
    assert ended.status_code == started.status_code == 200, (ended.text, started.text)
    # Alpha's room still has its one dispatch, and alpha's slot is untouched.
    assert [d.id for d in await dispatches(projects, "alpha", name)] == [dispatch.id]
    [record] = await projects.logs("--room", name, "--project", "alpha")
    assert (record["status"], record["dispatch_id"]) == ("DISPATCHED", dispatch.id)
    # What beta's key asked for happened in beta's own server (CreateDispatch made the room there).
    assert [json.loads(d.metadata)["instructions"] for d in await dispatches(projects, "beta", name)] == ["obey me"]
    async with projects.lk("beta") as lk:
        await lk.room.delete_room(api.DeleteRoomRequest(room=name))


async def test_both_keys_of_a_rotation_are_accepted_then_the_removed_one_gets_401(projects, name):
    # Rooms without metadata: LiveKit's own webhooks ask for nothing, the test's signed ones do.
    rooms = [await create_room(projects, "beta", f"{name}-{i}") for i in range(3)]

    def started(room: api.Room) -> dict:
        return event("room_started", room.name, room.sid, {"agents": [{"name": "driver"}]})

    old = post(projects.webhook_url, started(rooms[0]), BETA_OLD, BETA_OLD_SECRET)
    new = post(projects.webhook_url, started(rooms[1]), BETA_NEW, BETA_NEW_SECRET)
    assert old.status_code == new.status_code == 200, (old.text, new.text)
    for room in rooms[:2]:
        assert [d.agent_name for d in await dispatches(projects, "beta", room.name)] == ["driver"]

    # The old key removed from the project (a fresh handler: what a refreshed deployment is).
    env = env_of(projects_config(beta_keys={BETA_NEW: BETA_NEW_SECRET}))
    port = PROJECTS_HANDLER_PORTS[1]
    handler = projects.stacks["beta"].start_handler(env, port=port, name="handler-rotated")
    try:
        url = f"http://127.0.0.1:{port}/webhook"
        refused = post(url, started(rooms[2]), BETA_OLD, BETA_OLD_SECRET)
        assert refused.status_code == 401 and "unknown API key" in refused.json()["error"]
        assert await dispatches(projects, "beta", rooms[2].name) == []
        accepted = post(url, started(rooms[2]), BETA_NEW, BETA_NEW_SECRET)
        assert accepted.status_code == 200, accepted.text
        assert [d.agent_name for d in await dispatches(projects, "beta", rooms[2].name)] == ["driver"]
    finally:
        handler.stop()


async def test_a_warm_sweeper_reads_the_rotated_key_on_its_next_run(projects, name, monkeypatch):
    """The scheduled sweeper's Lambda entry point, invoked twice in one process (warm): the secret
    changes between the runs, and the second run calls LiveKit with the key it holds now."""
    import logging

    from handler import sweep_lambda
    from tests.test_template_fakes import fake_secrets_manager

    arn = f"arn:aws:secretsmanager:us-east-1:123456789012:secret:switchboard/projects-{uuid.uuid4().hex[:6]}"
    gone = json.loads(projects_config())
    gone["beta"] = gone["beta"] | {"keys": {"betakey-unknown": "a-key-beta-has-never-heard-of-000000"},
                                   "dispatch_key": "betakey-unknown"}
    # Metadata set after the room started: no webhook says so, only a sweep can dispatch it.
    await create_room(projects, "beta", name)
    async with projects.lk("beta") as lk:
        await lk.room.update_room_metadata(api.UpdateRoomMetadataRequest(
            room=name, metadata=json.dumps({"agents": [{"name": "driver"}]})))
    for key, value in projects.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("SWITCHBOARD_PROJECTS")
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    with fake_secrets_manager({arn: {"SWITCHBOARD_PROJECTS": gone}}) as sm:
        monkeypatch.setenv("SWITCHBOARD_LIVEKIT_SECRET_ARN", arn)
        monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", sm.url)
        try:
            with pytest.raises(RuntimeError) as refused:
                await asyncio.to_thread(sweep_lambda.lambda_handler, {"source": "aws.scheduler"}, None)
            assert "project beta: LiveKit's rooms could not be listed" in str(refused.value)
            assert "project alpha" not in str(refused.value)
            assert await dispatches(projects, "beta", name) == []
            sm.secrets[arn] = json.dumps({"SWITCHBOARD_PROJECTS": json.loads(projects_config())})
            result = await asyncio.to_thread(sweep_lambda.lambda_handler, {"source": "aws.scheduler"}, None)
        finally:
            root.handlers[:], level = saved
            root.setLevel(level)
        assert len(sm.reads_of(arn)) == 2  # once per run, not once per cold start
    assert result["actions"].get("reconciled_dispatched", 0) >= 1
    assert [d.agent_name for d in await dispatches(projects, "beta", name)] == ["driver"]


async def test_a_project_whose_server_is_down_fails_alone(projects, name):
    """Last in the module: beta's server is stopped for good (killed: a graceful stop would wait
    up to 10 s for its rooms to drain, and a server that dies is the harder case anyway)."""
    beta = projects.servers["beta"]
    beta.signal(signal.SIGKILL)
    assert beta.process is not None
    beta.process.wait(10)
    # By webhook: alpha's room gets its dispatch.
    await create_room(projects, "alpha", name, {"agents": [{"name": "driver"}]})
    assert [d.agent_name for d in await eventually(lambda: dispatches(projects, "alpha", name), timeout=30)] == ["driver"]
    # By sweep: a room whose metadata came after it started (no webhook says so).
    late = f"{name}-late"
    await create_room(projects, "alpha", late)
    async with projects.lk("alpha") as lk:
        await lk.room.update_room_metadata(api.UpdateRoomMetadataRequest(
            room=late, metadata=json.dumps({"agents": [{"name": "dispatcher"}]})))
    done = projects.cli_process("sweep", "--json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["errors"] and all(e.startswith("project beta: LiveKit's rooms could not be listed")
                                    for e in report["errors"]), report["errors"]
    assert any(d["project"] == "alpha" and d["action"] == "reconciled_dispatched" and d["room_name"] == late
               for d in report["details"]), report["details"]
    assert [d.agent_name for d in await dispatches(projects, "alpha", late)] == ["dispatcher"]
    # The failure is beta's metric: LiveKitListFailures, per project and summed for the alarm.
    metrics = [json.loads(line) for line in done.stderr.splitlines() if '"_aws"' in line]
    failed = [m for m in metrics if m.get("LiveKitListFailures")]
    assert [m["Project"] for m in failed] == ["beta"]
    assert failed[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service", "Project"], ["service"]]
    # `sweep --project alpha` alone succeeds.
    only = projects.cli_process("sweep", "--json", "--project", "alpha")
    assert only.returncode == 0, only.stdout + only.stderr


# --- the records: two projects' rooms with the same name and sid, and a table from before projects ------


async def test_the_same_room_sid_in_two_projects_is_two_rooms_and_the_default_keeps_the_old_layout(aws):
    """On DynamoDB Local, the store alone. The default project's keys are those of the code before
    projects (pk ROOM#<sid>, no project attribute), so a table written by it is read as it was."""
    from handler.claims import Status
    from handler.codec import to_item
    from handler.dynamo import DynamoStore
    from handler.policy import PlannedDispatch, Rule
    from handler.settings import Settings
    from handler.table import room_pk

    settings = Settings(table_name="switchboard-dispatch", aws_region="us-east-1")
    sid, room = f"RM_{uuid.uuid4().hex[:12]}", f"same-{uuid.uuid4().hex[:8]}"
    planned = PlannedDispatch(room_sid=sid, room_name=room, agent_name="driver", rule=Rule.AGENTS,
                              trigger="room_started")
    async with DynamoStore.open(settings) as default:
        alpha, beta = default.for_project("alpha"), default.for_project("beta")
        # A slot as the code before projects wrote it, item for item.
        old = {"pk": f"ROOM#{sid}", "sk": "DISPATCH#driver", "record_type": "dispatch", "status": "DISPATCHED",
               "room_sid": sid, "room_name": room, "agent_name": "driver", "dispatch_id": "AD_old",
               "owner": "o", "attempts": 1, "created_at": "2026-12-01T00:00:00.000Z",
               "updated_at": "2026-12-01T00:00:00.000Z", "day": "2026-12-01"}
        await default._db.put_item(TableName=settings.table_name, Item=to_item(old))
        assert room_pk(sid) == f"ROOM#{sid}" and default.room_pk(sid) == f"ROOM#{sid}"
        for store, dispatch in ((alpha, "AD_alpha"), (beta, "AD_beta")):
            claim = await store.claim(planned, "EV_1", None)  # the same sid: each project's own, fresh slot
            await store.mark_dispatched(claim, dispatch)
        slots = {name: (await s.load_slots(sid))["DISPATCH#driver"].stored
                 for name, s in (("default", default), ("alpha", alpha), ("beta", beta))}
        assert {n: r["dispatch_id"] for n, r in slots.items()} == {
            "default": "AD_old", "alpha": "AD_alpha", "beta": "AD_beta"}
        assert slots["alpha"]["pk"] == f"PROJECT#alpha#ROOM#{sid}" and slots["alpha"]["project"] == "alpha"
        assert "project" not in slots["default"]
        # One project's room ending touches no other project's slot of that sid.
        assert await beta.end_room(sid) == 1
        assert (await alpha.load_slots(sid))["DISPATCH#driver"].status == Status.DISPATCHED
        assert (await default.load_slots(sid))["DISPATCH#driver"].status == Status.DISPATCHED
        # The shared indexes are read per project; a store of every project (the CLI's) sees all three.
        since = 0.0
        assert [r.stored["dispatch_id"] for r in await default.room_timeline(room, since)] == ["AD_old"]
        assert [r.dispatch_id for r in await alpha.query_log(room=room, since=since)] == ["AD_alpha"]
        assert sorted(r.dispatch_id for r in await default.for_project(None).query_log(room=room, since=since)) \
            == ["AD_alpha", "AD_beta", "AD_old"]
        assert {r.sk for r in await alpha.pending(2) if r.room_sid == sid} == {"DISPATCH#driver"}
        assert all(r.project == "alpha" for r in await alpha.pending(2))
        assert all("project" not in r.stored for r in await default.pending(2))
    # And the CLI: --project default reads the old record, as it always read it.
    done = await run_cli(aws, "logs", "--json", "--room", room, "--project", "default", "--since", "400d")
    assert done.returncode == 0, done.stderr
    assert [(r["project"], r["dispatch_id"]) for r in json.loads(done.stdout)] == [("default", "AD_old")]


async def test_check_decides_with_a_projects_own_allowlist():
    env = env_of(projects_config())
    wants = '{"agents": [{"name": "dispatcher"}]}'
    deployment, beta = await run_cli(env, "check", wants), await run_cli(env, "check", wants, "--project", "beta")
    assert deployment.returncode == beta.returncode == 0, deployment.stderr + beta.stderr
    assert "1 agent(s) to dispatch" in deployment.stdout
    assert "0 agent(s) to dispatch, 1 rejected" in beta.stdout and "(allowlist: driver;" in beta.stdout
    unknown = await run_cli(env, "check", wants, "--project", "gamma")
    assert unknown.returncode == 2 and "no project 'gamma'" in unknown.stderr
