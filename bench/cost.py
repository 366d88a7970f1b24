"""DynamoDB cost per room: the read and write units of one realistic room, and its price per 10,000 rooms.

    uv run python -m bench.cost [--sweeps 10]

One livekit-server and DynamoDB Local; the real handler app (handler.app.create_app) served by
uvicorn in this process, so its DynamoDB client can be metered: every call goes out with
ReturnConsumedCapacity=INDEXES and its units are added up by the DynamoStore method that made
it. livekit-server's own webhooks drive it (with infra/livekit.yaml's event filter). The room:

  CreateRoom with {"agents": [dispatcher, driver]}   room_started: two claims, two CreateDispatch
  both agents join (rtc participants of kind agent,   two agent participant_joined: JOINED
    carrying lk.agent_name and switchboard.dispatch_id, as Switchboard's workers do)
  two callers join and publish a microphone track      two participant_joined (room agents planned
                                                       again: replay check, read, duplicates);
                                                       track_published filtered at the source
  the sweeper passes while the room lives              one Sweeper.sweep(), metered apart, times --sweeps
  the callers unpublish and leave                      two participant_left (recorded)
  the room is deleted                                  the agents' participant_left (ROOM_DELETED: ENDED),
                                                       room_finished

DynamoDB Local reports the units of each successful call. A conditional write that fails
reports none there; DynamoDB bills it as a write of the item's size, at least 1 WCU, and
that is what is counted for it (marked "estimated"). Prices: on-demand, us-east-1, as
listed since 2024-11-01: $0.625 per million write request units, $0.125 per million read
request units. A benchmark: it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import os
import time
import uuid
from collections import defaultdict
from typing import Any

import uvicorn
from livekit import api, rtc

from bench.common import header, loadavg, pick_port, write_result
from handler.app import create_app
from handler.dynamo import DynamoStore, dynamodb_client
from handler.pipeline import open_pipeline
from handler.records import EventRecord
from handler.settings import Settings
from handler.sweeper import Sweeper
from infra.stack import CACHE, DEV_API_KEY, DEV_API_SECRET, ROOT, Ports, Stack, handler_env

WRITE_PRICE, READ_PRICE = 0.625e-6, 0.125e-6
READS = {"get_item", "query", "scan", "batch_get_item"}
METERED = READS | {"put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item"}


class Meter:
    """Units by (phase, store method, operation)."""

    def __init__(self) -> None:
        self.phase = "setup"
        self.units: dict[tuple[str, str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))

    def add(self, operation: str, consumed: Any, estimated: float = 0.0) -> None:
        caller = next((f.function for f in inspect.stack()[2:12]
                       if f.filename.endswith(os.path.join("handler", "dynamo.py")) and not f.function.startswith("_")),
                      "?")
        row = self.units[(self.phase, caller, operation)]
        row["calls"] += 1
        kind = "rcu" if operation in READS else "wcu"
        for entry in consumed if isinstance(consumed, list) else [consumed] if consumed else []:
            row[kind] += entry.get("CapacityUnits", 0.0)
            row[f"{kind}_table"] += entry.get("Table", {}).get("CapacityUnits", entry.get("CapacityUnits", 0.0))
            for index, used in entry.get("GlobalSecondaryIndexes", {}).items():
                row[f"{kind}_indexes"] += used.get("CapacityUnits", 0.0)
                row[f"{kind}_index_{index}"] += used.get("CapacityUnits", 0.0)
        if estimated:
            row[kind] += estimated
            row[f"{kind}_estimated"] += estimated


class Metered:
    """The aioboto3 client, every call asking for its consumed capacity."""

    def __init__(self, client: Any, meter: Meter) -> None:
        self._client, self._meter = client, meter

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._client, name)
        if name not in METERED:
            return target

        async def call(**request: Any) -> Any:
            try:
                response = await target(ReturnConsumedCapacity="INDEXES", **request)
            except Exception as exc:
                code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
                if code in ("ConditionalCheckFailedException", "TransactionCanceledException"):
                    items = len(request.get("TransactItems", [])) or 1
                    # A failed write bills as a write (a transaction: 2 units per item).
                    self._meter.add(name, exc.response.get("ConsumedCapacity"),  # type: ignore[attr-defined]
                                    estimated=2.0 * items if name == "transact_write_items" else 1.0)
                raise
            self._meter.add(name, response.get("ConsumedCapacity"))
            return response
        return call


def token(name: str, identity: str, kind: str = "standard", attributes: dict[str, str] | None = None) -> str:
    grant = api.VideoGrants(room_join=True, room=name, agent=kind == "agent")
    return (api.AccessToken(DEV_API_KEY, DEV_API_SECRET).with_identity(identity).with_kind(kind)  # type: ignore[arg-type]
            .with_attributes(attributes or {}).with_grants(grant).to_jwt())


async def until(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := await check():
            return result
        await asyncio.sleep(0.1)
    raise TimeoutError(f"not reached in {timeout} s: {check.__name__}")


async def one_room(ports: Ports, settings: Settings, meter: Meter, metered: Any, lk: api.LiveKitAPI) -> None:
    name = f"cost-{uuid.uuid4().hex[:8]}"
    url = ports.livekit_url.replace("http", "ws")
    async with DynamoStore.open(settings) as plain:  # unmetered: the benchmark's own looks
        meter.phase = "room"
        room = await lk.room.create_room(api.CreateRoomRequest(name=name, empty_timeout=60, metadata=json.dumps(
            {"agents": [{"name": "dispatcher"}, {"name": "driver"}]})))

        async def dispatched() -> dict[str, Any] | None:
            slots = {key: s.stored for key, s in (await plain.load_slots(room.sid)).items()}
            return slots if len(slots) == 2 and all(s.get("dispatch_id") for s in slots.values()) else None

        slots = await until(dispatched)
        people: list[rtc.Room] = []
        for slot in slots.values():
            agent = rtc.Room()
            await agent.connect(url, token(name, f"agent-{slot['agent_name']}", "agent", {
                "lk.agent_name": slot["agent_name"], "switchboard.dispatch_id": slot["dispatch_id"]}))
            people.append(agent)

        async def joined() -> bool:
            return all(s.status == "JOINED" for s in (await plain.load_slots(room.sid)).values())

        await until(joined)
        callers = []
        for who in ("alice", "bob"):
            caller = rtc.Room()
            await caller.connect(url, token(name, who))
            source = rtc.AudioSource(48000, 1)
            track = rtc.LocalAudioTrack.create_audio_track("mic", source)
            publication = await caller.local_participant.publish_track(track, rtc.TrackPublishOptions(
                source=rtc.TrackSource.SOURCE_MICROPHONE))
            callers.append((caller, publication))
        await asyncio.sleep(2.0)  # the callers' joins handled (nothing to wait on in the log: duplicates)

        meter.phase = "sweep"
        async with open_pipeline(settings, store=DynamoStore(metered, settings)) as pipeline:
            await Sweeper(pipeline).sweep()
        meter.phase = "room"

        for caller, publication in callers:
            await caller.local_participant.unpublish_track(publication.sid)
            await caller.disconnect()
        await asyncio.sleep(1.0)
        await lk.room.delete_room(api.DeleteRoomRequest(room=name))
        for agent in people:
            with contextlib.suppress(Exception):
                await agent.disconnect()

        async def finished() -> bool:
            events = [r for r in await plain.room_timeline(name, time.time() - 600) if isinstance(r, EventRecord)]
            done = {r.event_type for r in events}
            ended = all(s.status == "ENDED" for s in (await plain.load_slots(room.sid)).values())
            return ended and "room_finished" in done
        await until(finished)
        await asyncio.sleep(1.0)  # the agents' own leaves, which may come after room_finished
        meter.phase = "done"


async def run(sweeps: int) -> dict[str, Any]:
    taken: set[int] = set()
    ports = Ports(livekit=pick_port(36880, taken), livekit_rtc_tcp=pick_port(36881, taken),
                  livekit_udp=pick_port(36882, taken), dynamodb=pick_port(36800, taken),
                  handler=pick_port(36080, taken))
    meter = Meter()
    with Stack(ports, run_dir=CACHE / "run" / "bench-cost") as stack:
        env = handler_env(ports, SWITCHBOARD_ALLOWED_AGENTS="dispatcher,driver")
        stack.start_dynamodb()
        stack.create_table(env)
        os.environ.update(env)
        settings = Settings()
        async with dynamodb_client(settings) as client:
            metered = Metered(client, meter)
            app = create_app(settings, store=DynamoStore(metered, settings))
            server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=ports.handler, log_level="warning",
                                                   access_log=False, lifespan="on"))
            serving = asyncio.create_task(server.serve())
            while not server.started:
                await asyncio.sleep(0.05)
            try:
                stack.start_livekit()
                async with api.LiveKitAPI(ports.livekit_url, DEV_API_KEY, DEV_API_SECRET) as lk:
                    await one_room(ports, settings, meter, metered, lk)
            finally:
                server.should_exit = True
                await serving
    rows = [{"phase": phase, "method": method, "operation": op, **{k: round(v, 2) for k, v in values.items()}}
            for (phase, method, op), values in sorted(meter.units.items()) if phase in ("room", "sweep")]

    def total(phase: str, kind: str) -> float:
        return sum(r.get(kind, 0.0) for r in rows if r["phase"] == phase)

    room_wcu, room_rcu = total("room", "wcu"), total("room", "rcu")
    sweep_wcu, sweep_rcu = total("sweep", "wcu"), total("sweep", "rcu")
    wcu, rcu = room_wcu + sweeps * sweep_wcu, room_rcu + sweeps * sweep_rcu
    by_index = {k.removeprefix("wcu_index_"): round(sum(r.get(k, 0.0) for r in rows if r["phase"] == "room"), 2)
                for k in sorted({k for r in rows for k in r if k.startswith("wcu_index_")})}
    return {"room_wcu_by_index": by_index,"rows": rows, "sweeps_per_room": sweeps, "room": {"wcu": room_wcu, "rcu": room_rcu},
            "one_sweep": {"wcu": sweep_wcu, "rcu": sweep_rcu}, "per_room": {"wcu": wcu, "rcu": rcu},
            "usd_per_10000_rooms": round(10_000 * (wcu * WRITE_PRICE + rcu * READ_PRICE), 4)}


def report(out: dict[str, Any]) -> str:
    lines = ["| phase | store method | operation | calls | WCU (table + indexes) | RCU | of which estimated |",
             "|---|---|---|---|---|---|---|"]
    for r in out["rows"]:
        lines.append(f"| {r['phase']} | {r['method']} | {r['operation']} | {int(r['calls'])} | "
                     f"{r.get('wcu', 0):g} ({r.get('wcu_table', 0):g} + {r.get('wcu_indexes', 0):g}) | "
                     f"{r.get('rcu', 0):g} | {r.get('wcu_estimated', 0):g} |")
    lines.append(f"\nthe room's webhooks: {out['room']['wcu']:g} WCU, {out['room']['rcu']:g} RCU; one sweeper pass "
                 f"over it: {out['one_sweep']['wcu']:g} WCU, {out['one_sweep']['rcu']:g} RCU; per room with "
                 f"{out['sweeps_per_room']} passes: {out['per_room']['wcu']:g} WCU, {out['per_room']['rcu']:g} RCU = "
                 f"${out['usd_per_10000_rooms']} per 10,000 rooms (on-demand, us-east-1)")
    lines.append(f"the room's index writes (WCU): {json.dumps(out['room_wcu_by_index'])}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweeps", type=int, default=10,
                        help="sweeper passes while a room lives (the deployed sweeper runs every minute)")
    args = parser.parse_args()
    info = header()
    info["cost"] = asyncio.run(run(args.sweeps))
    info["loadavg_at_end"] = loadavg()
    path = write_result("cost", info)
    print(report(info["cost"]))
    print(f"\nresults: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
