"""A burst: N rooms created at the same instant, one worker per agent name, production defaults.

    uv run python -m bench.burst [--rooms 2 10 50]

One livekit-server, one DynamoDB Local, one handler, and one `python -m worker driver
start` (as the container runs it: job processes, one idle process, capacity
SWITCHBOARD_WORKER_MAX_JOBS at its default, local audio). For each N, N rooms asking
for {"agents": [{"name": "driver"}]} are created in one asyncio.gather, as a backend
under load would. For FIRST_WAIT seconds no sweeper runs: what joins then joined on its
first dispatch. Then `switchboard sweep --every 5s` (in-process, production settings:
15 s confirm deadline, 3 attempts) runs until every slot is JOINED or FAILED. The clock
is livekit-server's: the agent's `joined_at_ms` minus the room's `creation_time_ms`,
from the agent's participant_joined webhook, received here as a second webhook URL.
Between bursts every room is deleted and the worker is idle again. A benchmark, not a
test: nothing asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import urllib.request
import uuid
from collections import Counter

from livekit import api

from bench.common import bytecode_env, header, loadavg, pick_port, summary, write_result
from bench.dispatch import Listener
from infra.stack import CACHE, DEV_API_KEY, DEV_API_SECRET, ROOT, Ports, Stack, handler_env

AGENT = "driver"
FIRST_WAIT = 20.0      # past LiveKit's 3 s wait for a worker's answer, and a job process's start
SWEEP_EVERY = 5.0      # as `make dev` runs it
SETTLE_TIMEOUT = 240.0  # the sweeper's whole budget: 15 s, 30 s, 60 s of waiting, and joins


def bench_ports() -> tuple[Ports, int, int]:
    taken: set[int] = set()
    ports = Ports(livekit=pick_port(39680, taken), livekit_rtc_tcp=pick_port(39681, taken),
                  livekit_udp=pick_port(39682, taken), dynamodb=pick_port(39600, taken),
                  handler=pick_port(39610, taken))
    return ports, pick_port(39620, taken), pick_port(39630, taken)


def worker_state(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/worker", timeout=5) as response:
        return json.loads(response.read())


async def burst(lk: api.LiveKitAPI, listener: Listener, pipeline, n: int, health_port: int) -> dict:
    from handler.sweeper import Sweeper

    run_id = uuid.uuid4().hex[:6]
    names = [f"burst-{n}-{run_id}-{i:03d}" for i in range(n)]
    joined = {name: listener.expect(name, "agent_joined") for name in names}
    since = time.time() - 5
    metadata = json.dumps({"agents": [{"name": AGENT}]})
    rooms = await asyncio.gather(*(lk.room.create_room(api.CreateRoomRequest(
        name=name, metadata=metadata, empty_timeout=600)) for name in names))
    created = {room.name: room.creation_time_ms for room in rooms}

    await asyncio.sleep(FIRST_WAIT)
    first = {name for name, f in joined.items() if f.done()}
    stop = asyncio.Event()
    sweeping = asyncio.create_task(Sweeper(pipeline).run_every(SWEEP_EVERY, stop))
    deadline = time.monotonic() + SETTLE_TIMEOUT
    records: list[dict] = []
    try:
        while time.monotonic() < deadline:
            try:
                records = [r.stored for r in await pipeline.store.query_log(since=since, limit=10_000)
                           if r.room_name in created]
            except Exception:  # a read DynamoDB Local times out on a busy machine: read again
                await asyncio.sleep(1)
                continue
            if len(records) == n and all(r["status"] in ("JOINED", "FAILED") for r in records):
                break
            await asyncio.sleep(2)
    finally:
        stop.set()
        await sweeping
    join_ms = {name: f.result()[0].participant.joined_at_ms - created[name] for name, f in joined.items() if f.done()}
    state = worker_state(health_port)
    for name in names:
        try:
            await lk.room.delete_room(api.DeleteRoomRequest(room=name))
        except api.TwirpError:
            pass
    for f in joined.values():
        f.cancel()
    statuses = Counter(r["status"] for r in records)
    return {
        "rooms": n,
        "first_time": len(first),
        "after_sweeper": len(join_ms) - len(first),
        "never": n - len(join_ms),
        "statuses": dict(statuses),
        "attempts": dict(Counter(int(r["attempts"]) for r in records)),
        "errors": dict(Counter(r.get("error", "")[:160] for r in records if r["status"] == "FAILED")),
        "worker_at_end": {k: state.get(k) for k in ("active_jobs", "worker_load")},
        "join_ms_first_time": summary([join_ms[name] for name in first], 0),
        "join_ms_all": summary(list(join_ms.values()), 0),
    }


async def wait_idle(health_port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while worker_state(health_port).get("active_jobs", 0) and time.monotonic() < deadline:
        await asyncio.sleep(1)
    await asyncio.sleep(5)  # the worker's next status update tells LiveKit it has room again


async def run(sizes: list[int]) -> dict:
    from handler.pipeline import open_pipeline
    from handler.settings import Settings

    ports, listener_port, health_port = bench_ports()
    listener = Listener(listener_port)
    out: dict = {"sizes": sizes, "first_wait_s": FIRST_WAIT, "sweep_every_s": SWEEP_EVERY, "bursts": []}
    with Stack(ports, run_dir=CACHE / "run" / "bench-burst") as stack:
        env = handler_env(ports, SWITCHBOARD_ALLOWED_AGENTS=AGENT) | bytecode_env()
        os.environ.update({k: v for k, v in env.items() if not k.startswith("PYTHON")})
        stack.start_dynamodb()
        stack.create_table(env)
        stack.start_handler(env)
        runner = await listener.start()
        try:
            stack.start_livekit(webhook_urls=[f"{ports.handler_url}/webhook", f"http://127.0.0.1:{listener_port}/webhook"])
            from infra.workers import wait_registered, worker_commands

            (command,) = worker_commands(ports.livekit_url, roles=[AGENT], command="start",
                                         health_ports={AGENT: health_port})
            # Production defaults: nothing of infra/workers.py's light settings.
            worker_env = {k: v for k, v in command.env.items() if not k.startswith("SWITCHBOARD_WORKER_")
                          or k == "SWITCHBOARD_WORKER_HEALTH_PORT"} | {"SWITCHBOARD_WORKER_AUDIO_MODE": "local"}
            worker = stack.start_process("burst-worker", command.argv, worker_env | bytecode_env())
            wait_registered([worker], timeout=120)
            from worker.config import WorkerSettings

            defaults = WorkerSettings()
            out["worker"] = {"command": "python -m worker driver start", "job_executor": defaults.job_executor,
                             "num_idle_processes": defaults.num_idle_processes, "max_jobs": defaults.max_jobs,
                             "target_load": defaults.target_load}
            async with api.LiveKitAPI(ports.livekit_url, DEV_API_KEY, DEV_API_SECRET) as lk, \
                    open_pipeline(Settings()) as pipeline:
                for n in sizes:
                    print(f"  burst of {n} rooms…", file=sys.stderr, flush=True)
                    out["bursts"].append(await burst(lk, listener, pipeline, n, health_port))
                    await wait_idle(health_port)
        finally:
            await runner.cleanup()
    out["loadavg_at_end"] = loadavg()
    return out


def report(out: dict) -> str:
    w = out["worker"]
    lines = [f"one worker: {w['command']}, {w['job_executor']} executor, {w['num_idle_processes']} idle process, "
             f"max_jobs {w['max_jobs']}",
             "| rooms at once | agent first time | after the sweeper | never | join p50 ms (first time) | "
             "join p95 ms (first time) | join p50 ms (all) | join p95 ms (all) |", "|---|---|---|---|---|---|---|---|"]
    for b in out["bursts"]:
        f, a = b["join_ms_first_time"], b["join_ms_all"]
        lines.append(f"| {b['rooms']} | {b['first_time']} | {b['after_sweeper']} | {b['never']} | {f.get('p50', '-')} | "
                     f"{f.get('p95', '-')} | {a.get('p50', '-')} | {a.get('p95', '-')} |")
    for b in out["bursts"]:
        if b["errors"]:
            lines.append(f"N={b['rooms']} FAILED: {b['errors']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", type=int, nargs="+", default=[2, 10, 50], help="burst sizes (default 2 10 50)")
    args = parser.parse_args()
    info = header()
    info["burst"] = asyncio.run(run(args.rooms))
    path = write_result("burst", info)
    print(report(info["burst"]))
    print(f"\n{json.dumps(info['machine'])}\nresults: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
