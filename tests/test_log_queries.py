"""The saved CloudWatch Logs Insights queries in template.yaml, held to the log lines they read.

No offline parser of the Logs Insights language exists, so this checks what can be
checked here: each query is commands Logs Insights has, with balanced brackets and
quotes, and every field it reads is one the real handler writes (its JSON log lines
from the local stack, flattened the way Logs Insights flattens JSON: a.b, a.0.b).
cfn-lint (tests/test_template.py) checks the resources themselves.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

import httpx
import pytest

from infra.stack import ROOT
from tests.livekit_helpers import eventually
from tests.test_template import load_template
from tests.webhooks import event, participant, signed_request

pytestmark = pytest.mark.anyio

COMMANDS = {"fields", "filter", "stats", "sort", "limit", "display", "parse", "dedup"}
KEYWORDS = {"and", "or", "not", "like", "in", "as", "by", "asc", "desc"}
QUERIES = ("RoomTimelineQuery", "FailedDispatchesQuery", "TimeToAgentQuery")


def queries() -> dict[str, str]:
    resources = load_template()["Resources"]
    return {name: resources[name]["Properties"]["QueryString"] for name in QUERIES}


def commands(query: str) -> list[str]:
    text = "\n".join(line for line in query.splitlines() if not line.lstrip().startswith("#"))
    # Split on the pipes between commands, not those inside a string or a regex.
    parts, current, quote = [], "", ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'/":
            quote = ch
        elif ch == "|":
            parts.append(current)
            current = ""
            continue
        current += ch
    return [p.strip() for p in parts + [current] if p.strip()]


def fields_read(command: str) -> set[str]:
    """The log fields a command reads: not functions, keywords, aliases or literals."""
    body = command.split(None, 1)[1] if " " in command else ""
    body = re.sub(r'"[^"]*"|\'[^\']*\'|/[^/]*/', " ", body)
    aliases = set(re.findall(r"\bas\s+([A-Za-z_]\w*)", body))
    out = set()
    for match in re.finditer(r"@?[A-Za-z_][\w.]*", body):
        token = match.group()
        if token in KEYWORDS or token in aliases or token.startswith("@") or body[match.end():].lstrip().startswith("("):
            continue
        out.add(token)
    return out


def flatten(value: Any, prefix: str = "") -> set[str]:
    if isinstance(value, dict):
        return set().union(*(flatten(v, f"{prefix}{k}.") for k, v in value.items())) | {prefix.rstrip(".")} - {""}
    if isinstance(value, list):
        return set().union(*(flatten(v, f"{prefix}{i}.") for i, v in enumerate(value))) | {prefix.rstrip(".")}
    return {prefix.rstrip(".")}


def logged_fields_of(message: str) -> set[str]:
    """The `extra` keys of every log call in handler/ that writes `message` (read from the source)."""
    keys: set[str] = set()
    for path in (ROOT / "handler").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
                    and node.args[0].value == message):
                for kw in node.keywords:
                    if kw.arg == "extra" and isinstance(kw.value, ast.Dict):
                        keys |= {k.value for k in kw.value.keys if isinstance(k, ast.Constant)}
    return keys


def test_each_query_is_logs_insights_commands_with_balanced_brackets():
    for name, query in queries().items():
        parts = commands(query)
        assert parts, name
        for part in parts:
            assert part.split()[0] in COMMANDS, (name, part)
            stripped = re.sub(r'"[^"]*"|/[^/]*/', "", part)
            assert stripped.count("(") == stripped.count(")"), (name, part)
            assert '"' not in stripped and "/" not in stripped, (name, part)
        assert "limit" in [p.split()[0] for p in parts], name  # a saved query should not scan without bound


async def test_every_field_the_queries_read_is_one_the_handler_logs(local_stack, aws, room):
    # Real log lines: a room_started that dispatches, broken metadata, an agent's join, the room's end.
    metadata = {"agents": [{"name": "driver"}, {"name": "translator"}]}
    agent = participant("agent-x", "agent", attributes={"lk.agent_name": "driver"})
    bodies = [event("room_started", room.name, room.sid, metadata),
              event("room_started", room.name, room.sid, '{"agents": ['),
              event("participant_joined", room.name, room.sid, metadata, participant=agent),
              event("room_finished", room.name, room.sid, metadata)]
    async with httpx.AsyncClient(timeout=30) as client:
        for body in bodies:
            raw, headers = signed_request(body)
            assert (await client.post(local_stack.webhook_url, content=raw, headers=headers)).status_code in (200, 503)
    [handler] = [s for s in local_stack.stack.services if s.name == "handler"]

    def lines() -> list[dict[str, Any]]:
        out = []
        for line in handler.log_path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("room_name") == room.name:
                out.append(record)
        return out if len(out) >= 4 else []

    logged = await eventually(lines)
    available = set().union(*(flatten(r) for r in logged)) | logged_fields_of("dispatch failed") | {"correlation_id"}
    assert {r["event_type"] for r in logged} >= {"room_started", "participant_joined"}
    assert any(r["decision"]["action"] == "confirm_join" for r in logged)
    assert any(re.search("event handled", r["message"]) for r in logged)
    assert {"slot", "error", "retryable"} <= logged_fields_of("dispatch failed")
    for name, query in queries().items():
        for part in commands(query):
            if part.split()[0] in ("fields", "filter", "stats", "display"):
                unknown = fields_read(part) - available
                # Names a stats command makes are fields for the commands after it.
                unknown -= {a for p in commands(query) for a in re.findall(r"\bas\s+(\w+)", p)}
                assert not unknown, (name, part, unknown)
