"""/webhook throughput and latency, beside a bare Starlette endpoint, in one run.

    make bench            # or: uv run python -m bench.webhook --requests 2000 --concurrency 8

Starts its own DynamoDB Local, livekit-server, handler and bare app on bench
ports, drives each case with a fixed number of concurrent clients, and prints
a Markdown table (and writes bench/results/webhook-<time>.json). A benchmark,
not a test: nothing here asserts a time.

Cases:
  bare       the bare Starlette endpoint: the floor for this machine
  ignored    signed track_published events: verify, decide "ignore", record the event
  duplicate  one room_started re-delivered: verify, load the room's slots, see DISPATCHED, record
  first      a new room session each time: claim, CreateDispatch on livekit-server, mark DISPATCHED
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import platform
import statistics
import subprocess
import sys
import time
import uuid
from importlib import metadata
from pathlib import Path

import aiohttp
from livekit import api

from infra.stack import CACHE, ROOT, Ports, Stack, handler_env, http_ok, wait_until
from tests.webhooks import event, signed_request

PORTS = Ports(livekit=37880, livekit_rtc_tcp=37881, livekit_udp_start=53000, livekit_udp_end=53100,
              dynamodb=38000, handler=38080)
BARE_PORT = 38090


async def drive(url: str, requests: list[tuple[bytes, dict]], concurrency: int) -> dict:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue = list(reversed(requests))

    async def client(session: aiohttp.ClientSession) -> None:
        while queue:
            body, headers = queue.pop()
            started = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
            latencies.append(time.perf_counter() - started)
            statuses[response.status] = statuses.get(response.status, 0) + 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies), "statuses": statuses, "seconds": round(elapsed, 3),
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
    }


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in ("starlette", "uvicorn", "livekit-api", "aioboto3"):
        out[package] = metadata.version(package)
    lk = subprocess.run([str(CACHE / "bin" / "livekit-server"), "--version"], capture_output=True, text=True)
    out["livekit-server"] = lk.stdout.strip().rsplit(" ", 1)[-1]
    out["dynamodb-local"] = (CACHE / "dynamodb").resolve().name.removeprefix("dynamodb-")
    return out


async def run(n: int, concurrency: int) -> dict:
    results: dict[str, dict] = {}
    with Stack(PORTS, run_dir=CACHE / "run" / "bench") as stack:
        env = handler_env(PORTS, SWITCHBOARD_LOG_LEVEL="WARNING")
        stack.start_dynamodb()
        stack.create_table(env)
        # livekit-server's own webhooks go nowhere: the bench sends its own.
        stack.start_livekit(webhook_urls=["http://127.0.0.1:9/unused"])
        stack.start_handler(env)
        bare = stack.start_process("bare", [sys.executable, "-m", "uvicorn", "bench.bare_app:app", "--port",
                                            str(BARE_PORT), "--no-access-log", "--log-level", "warning"], {})
        wait_until(lambda: http_ok(f"http://127.0.0.1:{BARE_PORT}/healthz"), bare)

        room_name = f"bench-{uuid.uuid4().hex[:8]}"
        async with api.LiveKitAPI(PORTS.livekit_url, "devkey", "secret") as lk:
            room = await lk.room.create_room(api.CreateRoomRequest(name=room_name, empty_timeout=600))
        meta = {"agents": [{"name": "driver"}]}
        webhook = f"{PORTS.handler_url}/webhook"

        ignored = [signed_request(event("track_published", room_name, room.sid)) for _ in range(n)]
        duplicate_one = signed_request(event("room_started", room_name, room.sid, meta))
        firsts = [signed_request(event("room_started", room_name, f"RM_bench_{i}_{uuid.uuid4().hex[:6]}", meta))
                  for i in range(n)]

        await drive(f"http://127.0.0.1:{BARE_PORT}/webhook", ignored[:200], concurrency)  # warm-up
        results["bare"] = await drive(f"http://127.0.0.1:{BARE_PORT}/webhook", ignored, concurrency)
        await drive(webhook, ignored[:200], concurrency)
        results["ignored"] = await drive(webhook, ignored, concurrency)
        await drive(webhook, [duplicate_one], 1)  # the one real dispatch
        results["duplicate"] = await drive(webhook, [duplicate_one] * n, concurrency)
        results["first"] = await drive(webhook, firsts, concurrency)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    results = asyncio.run(run(args.requests, args.concurrency))
    info = {"when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {subprocess.getoutput('nproc')} cores, "
                       f"{platform.processor() or platform.uname().release}",
            "versions": versions(), "requests": args.requests, "concurrency": args.concurrency,
            "results": results}
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"webhook-{int(time.time())}.json").write_text(json.dumps(info, indent=2))
    print(f"| case | requests/s | p50 ms | p99 ms | statuses |\n|---|---|---|---|---|")
    for case, r in results.items():
        print(f"| {case} | {r['rps']} | {r['p50_ms']} | {r['p99_ms']} | {r['statuses']} |")
    print(f"\n{info['machine']}; {json.dumps(info['versions'])}; "
          f"{args.requests} requests per case at concurrency {args.concurrency}")


if __name__ == "__main__":
    main()
