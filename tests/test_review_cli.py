"""Reading the log as people do, through the CLI, on the real stack: `logs` at 80 columns,
`explain` to the millisecond and `--agent`, `check`, `schema`, `sweep --json`, clear errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import httpx
import jsonschema
import pytest

from infra.stack import INFRA, ROOT
from tests.livekit_helpers import eventually, log_json, switchboard
from tests.webhooks import event, participant, signed_request

pytestmark = pytest.mark.anyio

# Strings a room creator or LiveKit controls, that rich would read as markup.
HOSTILE = "[/x] [bold]eve[/bold] [link=x]"


def cli(*args: str, env: dict[str, str] | None = None, stdin: str | None = None, columns: int = 80):
    return subprocess.run([sys.executable, "-m", "handler.cli", *args], cwd=ROOT, input=stdin,
                          env={**os.environ, **(env or {}), "COLUMNS": str(columns)},
                          capture_output=True, text=True, timeout=60)


async def post(local_stack, body) -> None:
    raw, headers = signed_request(body)
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(local_stack.webhook_url, content=raw, headers=headers)
    assert response.status_code == 200, response.text


@pytest.fixture
async def reviewed_room(local_stack, aws, room):
    """A room with a rejected agent, a dispatched one and a person whose identity is rich markup."""
    metadata = {"agents": [{"name": "driver"}, {"name": "observer"}],
                "on_participant_joined": [{"name": "translator"}]}
    await post(local_stack, event("room_started", room.name, room.sid, metadata))
    await post(local_stack, event("participant_joined", room.name, room.sid, metadata,
                                  participant=participant(HOSTILE)))
    await eventually(lambda: len(log_json(aws, "--room", room.name)) == 3)
    return room


async def test_logs_read_at_80_columns_and_print_markup_as_itself(local_stack, aws, reviewed_room):
    done = cli("logs", "--room", reviewed_room.name, env=aws)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80, done.stdout
    assert "[/x]" in done.stdout and "[bold]eve[/bold]" in done.stdout
    # Rooms and agents are whole, not cut to a few letters; the reason is there, wrapped.
    assert reviewed_room.name in done.stdout
    text = " ".join(done.stdout.split())
    assert "not in this deployment's allowlist" in text
    for status in ("REJECTED", "DISPATCHED"):
        assert status in done.stdout
    assert "room_sid" not in done.stdout and reviewed_room.sid not in done.stdout

    wide = cli("logs", "--room", reviewed_room.name, "--wide", env=aws, columns=220)
    assert wide.returncode == 0 and reviewed_room.sid in wide.stdout and "AD_" in wide.stdout


async def test_explain_prints_milliseconds_and_survives_markup(local_stack, aws, reviewed_room):
    done = cli("explain", "--room", reviewed_room.name, env=aws)
    assert done.returncode == 0, done.stderr
    assert max(len(line.rstrip()) for line in done.stdout.splitlines()) <= 80, done.stdout
    times = re.findall(r"^\s*(\d\d:\d\d:\d\d\.\d{3})\s", done.stdout, re.M)
    assert len(times) >= 5 and times == sorted(times), done.stdout
    assert "[/x]" in done.stdout
    steps = [s["what"] for s in json.loads(cli("explain", "--room", reviewed_room.name, "--json", env=aws).stdout)]
    # The event comes before what it caused, even within one millisecond.
    assert steps.index("room_started") < steps.index("driver CLAIMED") < steps.index("driver DISPATCHED")


async def test_explain_agent_answers_in_one_paragraph(local_stack, aws, reviewed_room):
    def answer(agent: str) -> str:
        done = cli("explain", "--room", reviewed_room.name, "--agent", agent, env=aws, columns=300)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    driver = answer("driver")
    assert "\n" not in driver
    assert "driver is not in the room yet: LiveKit accepted dispatch AD_" in driver
    assert re.search(r"\d\d:\d\d:\d\d\.\d{3} UTC", driver)
    observer = answer("observer")
    assert "observer is not in the room: the policy rejected it" in observer
    assert "not in this deployment's allowlist" in observer
    translator = answer("translator")
    assert f"translator for {HOSTILE} is not in the room" in translator
    nobody = answer("assistant")
    assert "assistant is not in the room: Switchboard never dispatched it" in nobody
    assert "driver" in nobody  # what the policy decided instead


async def test_broken_json_metadata_is_recorded_and_explained(local_stack, aws, room):
    body = event("room_started", room.name, room.sid, '{"agents":[{"name":"driver"}')
    await post(local_stack, body)
    steps = await eventually(lambda: [s for s in json.loads(cli("explain", "--room", room.name, "--json",
                                                                env=aws).stdout) if s.get("event_id") == body["id"]])
    assert steps[0]["decision"]["reason"] == "room metadata is not JSON: it asks for no agents"
    assert "Expecting ',' delimiter" in steps[0]["decision"]["error"]
    # LiveKit's own room_started for the room, made without metadata, says just that.
    absent = await eventually(lambda: [s for s in json.loads(cli("explain", "--room", room.name, "--json",
                                                                 env=aws).stdout)
                                       if s.get("event_type") == "room_started" and s["event_id"] != body["id"]])
    assert absent[0]["decision"]["reason"] == "room has no metadata: it asks for no agents"
    answer = cli("explain", "--room", room.name, "--agent", "driver", env=aws, columns=300).stdout
    assert "room metadata is not JSON" in answer and "Expecting ',' delimiter" in answer


def test_check_says_what_would_be_dispatched_and_why():
    env = {"SWITCHBOARD_ALLOWED_AGENTS": "dispatcher,driver,translator",
           "SWITCHBOARD_ROUTING_FILE": str(INFRA / "routing.yaml")}
    metadata = json.dumps({"profile": "drill", "agents": [{"name": "observer"}],
                           "on_participant_joined": [{"name": "translator", "metadata": {"lang": "fr"}}]})
    done = cli("check", metadata, "--participant", "alice", env=env)
    assert done.returncode == 0, done.stderr
    assert "dispatch dispatcher (agents)" in done.stdout and '"persona":"Tim"' in done.stdout
    assert "reject   observer: agent 'observer' is not in this deployment's allowlist" in done.stdout
    assert "dispatch translator for alice (on_participant_joined)" in done.stdout
    assert '"lang":"fr"' in done.stdout and '"participant_identity":"alice"' in done.stdout

    strict = cli("check", metadata, "--strict", env=env)
    assert strict.returncode == 1

    report = json.loads(cli("check", "--json", "-", env=env, stdin=metadata).stdout)
    assert report["ok"] is True
    [started] = report["events"]
    assert [d["agent_name"] for d in started["dispatch"]] == ["dispatcher", "driver"]
    assert started["dispatch"][0]["job_metadata"]["switchboard_slot"] == "DISPATCH#dispatcher"
    assert started["rejected"] == [{"agent_name": "observer", "slot": "DISPATCH#observer",
                                    "reason": "agent 'observer' is not in this deployment's allowlist"}]


@pytest.mark.parametrize("metadata, error", [
    ('{"agents":[{"name":"driver"}', "Expecting ',' delimiter"),
    ('{"agents":[{"name":"driver","metdata":{}}]}', "Extra inputs are not permitted"),
    ('{"profile":"nope"}', "profile 'nope' is not in the routing file"),
])
def test_check_exits_non_zero_on_a_contract_error(metadata, error, tmp_path):
    path = tmp_path / "metadata.json"
    path.write_text(metadata)
    done = cli("check", "--file", str(path), "--json", env={"SWITCHBOARD_ALLOWED_AGENTS": "driver"})
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is False and error in report["error"]


def test_schema_accepts_the_documented_metadata_and_refuses_broken_rules():
    done = cli("schema")
    assert done.returncode == 0, done.stderr
    schema = json.loads(done.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for ok in ({"agents": [{"name": "dispatcher", "metadata": {"persona": "Tim"}}, {"name": "driver"}],
                "on_participant_joined": [{"name": "translator", "kinds": ["standard", "sip"], "per": "participant",
                                           "metadata": {}}], "profile": "drill"},
               {"on_participant_joined": [{"name": "assistant", "per": "room"}]},
               {"tenant": "acme"}):
        validator.validate(ok)
    for broken in ({"agents": [{"name": "driver", "metdata": {}}]}, {"agents": [{"name": "x y"}]},
                   {"on_participant_joined": [{"name": "t", "per": "everyone"}]},
                   {"on_participant_joined": [{"name": "t", "kinds": ["agent"]}]}):
        assert list(validator.iter_errors(broken)), broken


def test_sweep_json_is_one_document_with_metrics_on_stderr(local_stack, aws):
    done = switchboard("sweep", "--json", env=local_stack.env | aws)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # the whole of stdout: one document
    assert set(report) == {"actions", "details", "errors"}
    assert '"CloudWatchMetrics"' in done.stderr and '"CloudWatchMetrics"' not in done.stdout
    # The dev key's 6-byte secret: PyJWT's warning is silenced for it.
    assert "HMAC key" not in done.stderr and "InsecureKeyLengthWarning" not in done.stderr


def test_a_missing_variable_is_named_not_a_traceback(local_stack, aws):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "SWITCHBOARD_LIVEKIT"))}
    done = subprocess.run([sys.executable, "-m", "handler.cli", "sweep"], cwd=ROOT, env=env | aws,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "LIVEKIT_API_KEY and LIVEKIT_API_SECRET are not set" in done.stderr
    assert "Traceback" not in done.stderr

    no_credentials = {k: v for k, v in env.items() if not k.startswith("AWS_")} | {
        "AWS_ENDPOINT_URL_DYNAMODB": aws["AWS_ENDPOINT_URL_DYNAMODB"], "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        "AWS_CONFIG_FILE": "/nonexistent", "AWS_EC2_METADATA_DISABLED": "true"}
    done = subprocess.run([sys.executable, "-m", "handler.cli", "logs"], cwd=ROOT, env=no_credentials,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in done.stderr and "Traceback" not in done.stderr


def test_the_webhook_function_imports_none_of_the_review_side():
    # handler.app is the Lambda's cold start: the page, the CLI and rich stay out of it.
    code = ("import sys, handler.app; "
            "bad = [m for m in sys.modules if m.startswith(('handler.review', 'handler.cli', 'rich', 'playwright'))]; "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
