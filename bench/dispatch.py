"""Room creation → agent joined: Switchboard's webhook-driven dispatch vs LiveKit's own.

    uv run python -m bench.dispatch [--rooms 100]

One livekit-server, one DynamoDB Local, one handler and one test worker
(tests/agents/silent_agent.py, registered as "bench-agent") serve both ways:

  switchboard  CreateRoom with metadata {"agents":[{"name":"bench-agent"}]}; livekit-server's
               room_started webhook → handler → claim → CreateDispatch → the worker joins
  livekit      CreateRoom with agents=[RoomAgentDispatch(agent_name="bench-agent")]: livekit-server
               dispatches the agent itself as it creates the room

Rooms run one at a time, the two ways interleaved (ABBA) so drifting machine load
hits both alike. The clock is livekit-server's own: the agent participant's
`joined_at_ms` minus the room's `creation_time_ms`, both from the agent's
participant_joined webhook, which a listener in this process receives as a
second webhook URL. The dispatch's own `created_at` splits each time into
"until the dispatch existed" and "dispatch → worker → join". A benchmark, not a
test: nothing here asserts a time.

The floor, in the same run: after each pair of rooms, this process times the two
operations the design cannot avoid, bare, against the same servers: one conditional
TransactWriteItems shaped as the claim (the slot's Put with attribute_not_exists,
the session's cap Update) on DynamoDB Local, and one CreateDispatch (for an agent
name no worker serves, in a room kept for it). Switchboard's added latency is
reported as a multiple of their sum.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from google.protobuf.json_format import Parse
from livekit import api
from livekit.protocol.models import ParticipantInfo
from livekit.protocol.webhook import WebhookEvent

from bench.common import (RssSampler, bytecode_env, header, loadavg, mib, pick_port, rss_kib, summary,
                          write_result)
from handler.claims import Status
from handler.codec import to_item
from handler.dynamo import DynamoStore, dynamodb_client
from handler.policy import PlannedDispatch, Rule
from handler.settings import Settings
from infra.stack import CACHE, DEV_API_KEY, DEV_API_SECRET, ROOT, Ports, Stack, handler_env, wait_until


def bench_ports() -> tuple[Ports, int]:
    """The stack's ports (39000-39999, UDP 55000-55199) and the listener's."""
    taken: set[int] = set()
    ports = Ports(livekit=pick_port(39880, taken), livekit_rtc_tcp=pick_port(39881, taken), livekit_udp=pick_port(39882, taken),
                  dynamodb=pick_port(39800, taken), handler=pick_port(39080, taken))
    return ports, pick_port(39090, taken)

AGENT = "bench-agent"
WORKER = ["-m", "tests.agents.silent_agent"]  # run from ROOT
MODES = ("switchboard", "livekit")


class Listener:
    """livekit-server's webhooks for every room, beside the handler's copy: when each thing happened."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._waiters: dict[tuple[str, str], asyncio.Future] = {}

    def expect(self, room: str, what: str) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self._waiters[(room, what)] = future
        return future

    async def handle(self, request: web.Request) -> web.Response:
        seen = time.time()
        event = Parse(await request.read(), WebhookEvent(), ignore_unknown_fields=True)
        what = event.event
        if what == "participant_joined" and event.participant.kind == ParticipantInfo.Kind.AGENT:
            what = "agent_joined"
        future = self._waiters.pop((event.room.name, what), None)
        if future is not None and not future.done():
            future.set_result((event, seen))
        return web.Response(text="ok")

    async def start(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/webhook", self.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        return runner


@dataclass
class Sample:
    mode: str
    room: str
    room_sid: str
    join_ms: int            # joined_at_ms - creation_time_ms, livekit-server's clock
    to_dispatch_ms: float   # dispatch created_at - creation_time_ms
    dispatch_to_join_ms: float
    client_ms: float        # CreateRoom called → the listener got the agent's participant_joined


async def one_room(lk: api.LiveKitAPI, listener: Listener, mode: str, name: str) -> Sample:
    joined = listener.expect(name, "agent_joined")
    finished = listener.expect(name, "room_finished")
    if mode == "switchboard":
        request = api.CreateRoomRequest(name=name, empty_timeout=60, metadata=json.dumps({"agents": [{"name": AGENT}]}))
    else:
        request = api.CreateRoomRequest(name=name, empty_timeout=60, agents=[api.RoomAgentDispatch(agent_name=AGENT)])
    called = time.time()
    room = await lk.room.create_room(request)
    event, seen = await asyncio.wait_for(joined, 30)
    [dispatch] = [d for d in await lk.agent_dispatch.list_dispatch(name) if d.agent_name == AGENT]
    await lk.room.delete_room(api.DeleteRoomRequest(room=name))
    await asyncio.wait_for(finished, 30)
    created_ms = room.creation_time_ms
    joined_ms = event.participant.joined_at_ms
    dispatched_ms = dispatch.state.created_at / 1e6
    return Sample(mode, name, room.sid, joined_ms - created_ms, round(dispatched_ms - created_ms, 1),
                  round(joined_ms - dispatched_ms, 1), round((seen - called) * 1000, 1))


_SENT = re.compile(r"sent webhook\t(\{.*\})")


def _duration_ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(ns|µs|us|ms|s)", text).groups()
    return float(number) * {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1000.0}[unit]


def webhook_times(log: Path, url: str, rooms: set[str], event: str) -> dict[str, list[float]]:
    """livekit-server's own account of each webhook it sent: time queued, and time until the answer."""
    queued, sent = [], []
    for line in log.read_text(errors="replace").splitlines():
        match = _SENT.search(line)
        if not match:
            continue
        fields = json.loads(match.group(1))
        if fields.get("url") == url and fields.get("event") == event and fields.get("room") in rooms:
            queued.append(_duration_ms(fields["queueDuration"]))
            sent.append(_duration_ms(fields["sendDuration"]))
    return {"queue_ms": queued, "send_ms": sent}


FLOOR_AGENT = "floor-nobody"


async def floor_sample(db: Any, settings: Settings, lk: api.LiveKitAPI, floor_room: str) -> tuple[float, float]:
    """(ms of one claim-shaped TransactWriteItems, ms of one CreateDispatch), timed from this process."""
    store = DynamoStore(db, settings)
    planned = PlannedDispatch(room_sid=f"RM_floor_{uuid.uuid4().hex[:10]}", room_name=floor_room,
                              agent_name=FLOOR_AGENT, rule=Rule.AGENTS, trigger="room_started")
    now = time.time()
    item = store._new_record(planned, "EV_floor", now, Status.CLAIMED) | {  # the claim's own item and size
        "owner": uuid.uuid4().hex, "attempts": 1, "generation": 1, "lease_expires_at": now + 30,
        "claimed_at": "x" * 24, "job_metadata": planned.job_metadata, "pending_day": "2026-12-01"}
    started = time.perf_counter()
    await db.transact_write_items(TransactItems=[
        {"Put": {"TableName": settings.table_name, "Item": to_item(item),
                 "ConditionExpression": "attribute_not_exists(pk)", "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}},
        store._occupy(planned, now)])
    claimed = time.perf_counter()
    dispatch = await lk.agent_dispatch.create_dispatch(api.CreateAgentDispatchRequest(
        room=floor_room, agent_name=FLOOR_AGENT, metadata=planned.job_metadata))
    done = time.perf_counter()
    await lk.agent_dispatch.delete_dispatch(dispatch.id, floor_room)
    return (claimed - started) * 1000, (done - claimed) * 1000


async def run(rooms: int, warmup: int, pause: float) -> dict:
    run_id = uuid.uuid4().hex[:6]
    ports, listener_port = bench_ports()
    listener = Listener(listener_port)
    out: dict = {"rooms_per_mode": rooms, "warmup_per_mode": warmup}
    with Stack(ports, run_dir=CACHE / "run" / "bench-dispatch") as stack:
        env = handler_env(ports, SWITCHBOARD_ALLOWED_AGENTS=AGENT) | bytecode_env()
        stack.start_dynamodb()
        stack.create_table(env)
        handler = stack.start_handler(env)
        runner = await listener.start()
        try:
            handler_url = f"{ports.handler_url}/webhook"
            stack.start_livekit(webhook_urls=[handler_url, f"http://127.0.0.1:{listener_port}/webhook"])
            worker = stack.start_process("bench-agent", [sys.executable, *WORKER], bytecode_env() | {
                "LIVEKIT_URL": ports.livekit_url.replace("http", "ws"), "LIVEKIT_API_KEY": DEV_API_KEY,
                "LIVEKIT_API_SECRET": DEV_API_SECRET, "TEST_AGENT_NAME": AGENT})
            # A dispatch made before the worker registers is lost: wait for it.
            wait_until(lambda: "registered worker" in worker.log_tail(200), worker, timeout=120)
            samples: list[Sample] = []
            floor: list[tuple[float, float]] = []
            rest_kib = rss_kib(handler.process.pid)[0]
            # The floor's DynamoDB client: the handler's own construction (timeouts, retries), this process.
            os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
            settings = Settings(table_name=env["SWITCHBOARD_TABLE_NAME"], aws_region=env["AWS_REGION"])
            async with api.LiveKitAPI(ports.livekit_url, DEV_API_KEY, DEV_API_SECRET) as lk, \
                    dynamodb_client(settings) as db:
                floor_room = f"floor-{run_id}"
                await lk.room.create_room(api.CreateRoomRequest(name=floor_room, empty_timeout=3600))
                for i in range(warmup):
                    for mode in MODES:
                        await one_room(lk, listener, mode, f"warm-{mode}-{run_id}-{i}")
                        await asyncio.sleep(pause)
                    await floor_sample(db, settings, lk, floor_room)
                with RssSampler(handler.process.pid) as rss:
                    for i in range(rooms):
                        # ABBA: neither way always goes first after the other's teardown.
                        for mode in (MODES if i % 2 == 0 else MODES[::-1]):
                            samples.append(await one_room(lk, listener, mode, f"lat-{mode}-{run_id}-{i:03d}"))
                            await asyncio.sleep(pause)
                            if len(samples) % 20 == 0:
                                print(f"  {len(samples)}/{2 * rooms} rooms", file=sys.stderr, flush=True)
                        floor.append(await floor_sample(db, settings, lk, floor_room))
                await lk.room.delete_room(api.DeleteRoomRequest(room=floor_room))
            out["handler_rss_mib"] = {"before": mib(rest_kib), "peak": mib(rss.peak_kib),
                                      "after": mib(rss_kib(handler.process.pid)[0])}
        finally:
            await runner.cleanup()
        lk_log = stack.run_dir / "livekit.log"
        sb_rooms = {s.room for s in samples if s.mode == "switchboard"}
        hook = webhook_times(lk_log, handler_url, sb_rooms, "room_started")
        out["handler_room_started_webhook"] = {k: summary(v) for k, v in hook.items()}
    out["loadavg_at_end"] = loadavg()
    by_mode = {m: [s for s in samples if s.mode == m] for m in MODES}
    for mode, group in by_mode.items():
        out[mode] = {field: summary([getattr(s, field) for s in group])
                     for field in ("join_ms", "to_dispatch_ms", "dispatch_to_join_ms", "client_ms")}
    a, b = out["switchboard"]["join_ms"], out["livekit"]["join_ms"]
    out["ratio_p50"] = round(a["p50"] / b["p50"], 3)
    out["ratio_p95"] = round(a["p95"] / b["p95"], 3)
    out["added_p50_ms"] = round(a["p50"] - b["p50"], 1)
    out["added_p95_ms"] = round(a["p95"] - b["p95"], 1)
    # Each ABBA pair ran back to back under the same machine load: the median of their differences.
    pairs = [x.join_ms - y.join_ms for x, y in zip(by_mode["switchboard"], by_mode["livekit"])]
    out["added_paired_ms"] = summary(pairs)
    out["floor"] = {"transact_write_ms": summary([t for t, _ in floor], 2),
                    "create_dispatch_ms": summary([c for _, c in floor], 2),
                    "sum_ms": summary([t + c for t, c in floor], 2)}
    out["added_over_floor_p50"] = round(out["added_paired_ms"]["p50"] / out["floor"]["sum_ms"]["p50"], 2)
    out["samples"] = [asdict(s) for s in samples]
    out["floor_samples"] = [[round(t, 3), round(c, 3)] for t, c in floor]
    return out


def report(out: dict) -> str:
    lines = ["| dispatch | rooms | join p50 ms | join p95 ms | → dispatch exists p50 | dispatch → join p50 | "
             "client-seen p50 |", "|---|---|---|---|---|---|---|"]
    for mode in MODES:
        r = out[mode]
        lines.append(f"| {mode} | {r['join_ms']['n']} | {r['join_ms']['p50']} | {r['join_ms']['p95']} | "
                     f"{r['to_dispatch_ms']['p50']} | {r['dispatch_to_join_ms']['p50']} | {r['client_ms']['p50']} |")
    hook = out["handler_room_started_webhook"]
    lines.append(f"\nratio switchboard/livekit: p50 {out['ratio_p50']}, p95 {out['ratio_p95']}; added p50 "
                 f"{out['added_p50_ms']} ms, p95 {out['added_p95_ms']} ms; room by room (same pair): median "
                 f"{out['added_paired_ms']['p50']} ms")
    lines.append(f"room_started → handler, per livekit-server's log: queued p50 {hook['queue_ms'].get('p50')} ms, "
                 f"answered p50 {hook['send_ms'].get('p50')} ms / p95 {hook['send_ms'].get('p95')} ms")
    f = out["floor"]
    lines.append(f"the floor, from this process: claim-shaped TransactWriteItems p50 {f['transact_write_ms']['p50']} ms"
                 f" + CreateDispatch p50 {f['create_dispatch_ms']['p50']} ms = {f['sum_ms']['p50']} ms p50 "
                 f"(p95 {f['sum_ms']['p95']}); Switchboard's added latency (paired p50) = "
                 f"{out['added_over_floor_p50']}× the floor")
    lines.append(f"handler RSS MiB: {out['handler_rss_mib']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", type=int, default=100, help="rooms per way (default 100)")
    parser.add_argument("--warmup", type=int, default=5, help="uncounted rooms per way first")
    parser.add_argument("--pause", type=float, default=0.3, help="seconds between rooms, so teardown webhooks settle")
    args = parser.parse_args()
    info = header()
    info["dispatch"] = asyncio.run(run(args.rooms, args.warmup, args.pause))
    path = write_result("dispatch", info)
    print(report(info["dispatch"]))
    print(f"\n{json.dumps(info['machine'])}\nresults: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
