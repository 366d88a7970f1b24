"""/webhook throughput, latency and the handler's memory, beside a bare Starlette endpoint, in one run.

    uv run python -m bench.webhook [--requests 2000] [--concurrency 8] [--rounds 3]

Starts its own DynamoDB Local, livekit-server, handler, bare app and
DynamoDB-less handler on bench ports, then drives each case with a fixed number
of concurrent clients (aiohttp, keep-alive, in this process). The cases run
round-robin, `--rounds` times, so load from anything else on the machine falls
on all of them alike; a case's requests/s is its requests over its time summed
across rounds, its percentiles are over every request. A benchmark, not a
test: nothing here asserts a time.

Cases:
  bare       bench/bare_app.py: read the body, answer JSON. The floor for this machine
  ignored    signed track_published events: verify, parse, "cannot matter" (handler/events.py), count it in
             an EMF line, answer. No DynamoDB call
  join       a person joins a room whose agent is already dispatched, the everyday repeat (room agents are
             planned again on every human join): the event's replay check fails fast (a conditional
             UpdateItem), read the room's slots, see DISPATCHED, record (UpdateItem + Query + UpdateItem)
  duplicate  one room_started re-delivered after its first answer: replayed from its record
             (one conditional UpdateItem that succeeds)
  one call   bench/one_call_app.py: bare, plus that very call (DynamoStore.replay_event on the duplicate's
             record), nothing else. The ceiling of any path with one DynamoDB call: duplicate / one call is
             what verification and the decision cost beside it, one call / bare what the call costs
  first      a new room session each time: replay check (fails fast), claim (TransactWriteItems),
             CreateDispatch on livekit-server, mark DISPATCHED, record (4 DynamoDB calls + 1 LiveKit call)

The handler runs as deployed (`switchboard serve`, log level INFO) with a warm
bytecode cache; its RSS is sampled at rest and during each case.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import statistics
import sys
import time
import uuid

import aiohttp
from livekit import api

from bench.common import (RssSampler, bytecode_env, cpu_seconds, header, loadavg, mib, pick_port, rss_kib,
                          summary, write_result)
from infra.stack import CACHE, DEV_API_KEY, DEV_API_SECRET, ROOT, Ports, Stack, handler_env, http_ok, wait_until
from handler.table import event_sk, room_pk
from tests.webhooks import event, participant
from tests.webhooks import signed_request as _signed

# Signed once, sent later and again: a token that outlives the run (a loaded machine makes it long).
TOKEN_TTL = datetime.timedelta(hours=3)


def signed_request(body: dict) -> tuple[bytes, dict[str, str]]:
    return _signed(body, ttl=TOKEN_TTL)

CASES = ("bare", "ignored", "join", "duplicate", "one call", "first")


def bench_ports() -> tuple[Ports, int, int]:
    taken: set[int] = set()
    ports = Ports(livekit=pick_port(37880, taken), livekit_rtc_tcp=pick_port(37881, taken), livekit_udp=pick_port(37882, taken),
                  dynamodb=pick_port(38000, taken), handler=pick_port(38080, taken))
    return ports, pick_port(38090, taken), pick_port(38091, taken)


async def drive(url: str | list[str], requests: list[tuple[bytes, dict]], concurrency: int) -> dict:
    """`requests` over `concurrency` keep-alive clients; several urls: client i posts to urls[i % n] (a balancer)."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue = list(reversed(requests))
    urls = [url] if isinstance(url, str) else url

    async def client(session: aiohttp.ClientSession, url: str) -> None:
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
        await asyncio.gather(*(client(session, urls[i % len(urls)]) for i in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"latencies": latencies, "statuses": statuses, "seconds": elapsed}


def combine(rounds: list[dict]) -> dict:
    latencies = [x * 1000 for r in rounds for x in r["latencies"]]
    statuses: dict[str, int] = {}
    for r in rounds:
        for code, count in r["statuses"].items():
            statuses[str(code)] = statuses.get(str(code), 0) + count
    seconds = sum(r["seconds"] for r in rounds)
    stats = summary(latencies, 2)
    return {"requests": len(latencies), "statuses": statuses, "seconds": round(seconds, 3),
            "rps": round(len(latencies) / seconds, 1), "rps_by_round": [round(len(r["latencies"]) / r["seconds"], 1)
                                                                       for r in rounds],
            "p50_ms": stats["p50"], "p99_ms": stats["p99"]}


async def run(n: int, concurrency: int, rounds: int) -> dict:
    ports, bare_port, one_call_port = bench_ports()
    raw: dict[str, list[dict]] = {case: [] for case in CASES}
    rss: dict[str, float] = {}
    # CPU seconds each process spent on each case: where the time per request goes.
    cpu: dict[str, dict[str, float]] = {case: {} for case in CASES}
    with Stack(ports, run_dir=CACHE / "run" / "bench") as stack:
        env = handler_env(ports) | bytecode_env()
        dynamodb = stack.start_dynamodb()
        stack.create_table(env)
        # livekit-server's own webhooks go nowhere: the bench sends its own.
        livekit = stack.start_livekit(webhook_urls=["http://127.0.0.1:9/unused"])
        handler = stack.start_handler(env)
        bare = stack.start_process("bare", [sys.executable, "-m", "uvicorn", "bench.bare_app:app", "--port",
                                            str(bare_port), "--no-access-log", "--log-level", "warning"],
                                   bytecode_env())
        wait_until(lambda: http_ok(f"http://127.0.0.1:{bare_port}/healthz"), bare)
        pid = handler.process.pid
        room_name = f"bench-{uuid.uuid4().hex[:8]}"
        async with api.LiveKitAPI(ports.livekit_url, DEV_API_KEY, DEV_API_SECRET) as lk:
            room = await lk.room.create_room(api.CreateRoomRequest(name=room_name, empty_timeout=600))
        meta = {"agents": [{"name": "driver"}]}
        duplicate_body = event("room_started", room_name, room.sid, meta)
        duplicate_one = signed_request(duplicate_body)
        one_call = stack.start_process("one-call", [
            sys.executable, "-m", "uvicorn", "bench.one_call_app:app", "--port", str(one_call_port),
            "--no-access-log", "--log-level", "warning"], env | {
            "BENCH_EVENT_PK": room_pk(room.sid), "BENCH_EVENT_SK": event_sk(duplicate_body["id"])})
        wait_until(lambda: http_ok(f"http://127.0.0.1:{one_call_port}/healthz"), one_call)
        rss["handler_started"] = mib(rss_kib(pid)[0])
        rss["bare_started"] = mib(rss_kib(bare.process.pid)[0])

        urls = {"bare": f"http://127.0.0.1:{bare_port}/webhook",
                "one call": f"http://127.0.0.1:{one_call_port}/webhook",
                **{case: f"{ports.handler_url}/webhook" for case in ("ignored", "join", "duplicate", "first")}}
        ignored = [signed_request(event("track_published", room_name, room.sid)) for _ in range(n)]

        def joins(count: int = n) -> list[tuple[bytes, dict]]:
            # Fresh event ids each time: a delivery of one already answered would be a replay.
            return [signed_request(event("participant_joined", room_name, room.sid, meta,
                                         participant=participant(f"person-{i}"))) for i in range(count)]

        def firsts(count: int = n) -> list[tuple[bytes, dict]]:
            return [signed_request(event("room_started", room_name, f"RM_bench_{uuid.uuid4().hex[:10]}", meta))
                    for _ in range(count)]

        # Warm-up, not measured: every server's first requests (connection pools, lazy clients), and
        # DynamoDB Local's JIT, which takes a few thousand requests to halve its CPU per write.
        await drive(urls["bare"], ignored[:200], concurrency)
        await drive(urls["duplicate"], [duplicate_one], 1)  # the one real dispatch the repeats find
        await drive(urls["one call"], ignored[:200], concurrency)
        for _ in range(2):
            await drive(urls["ignored"], ignored, concurrency)
            await drive(urls["join"], joins(500), concurrency)
            await drive(urls["first"], firsts(300), concurrency)
        rss["handler_at_rest"] = mib(rss_kib(pid)[0])
        rss["bare_at_rest"] = mib(rss_kib(bare.process.pid)[0])

        pids = {"server": 0, "dynamodb": dynamodb.process.pid, "livekit": livekit.process.pid, "client": os.getpid()}
        for _ in range(rounds):
            for case in CASES:
                requests = {"bare": ignored, "ignored": ignored, "join": joins() if case == "join" else [],
                            "duplicate": [duplicate_one] * n, "one call": [duplicate_one] * n,
                            "first": firsts() if case == "first" else []}[case]
                pids["server"] = {"bare": bare, "one call": one_call}.get(case, handler).process.pid
                before = {name: cpu_seconds(p) for name, p in pids.items()}
                with RssSampler(pid) as sampler:
                    raw[case].append(await drive(urls[case], requests, concurrency))
                for name, p in pids.items():
                    cpu[case][name] = cpu[case].get(name, 0.0) + cpu_seconds(p) - before[name]
                if case in ("ignored", "join", "duplicate", "first"):
                    rss[f"handler_peak_{case}"] = max(rss.get(f"handler_peak_{case}", 0), mib(sampler.peak_kib))
        rss["handler_after"] = mib(rss_kib(pid)[0])
        rss["handler_hwm"] = mib(rss_kib(pid)[1])
    results = {case: combine(raw[case]) for case in CASES}
    for case, r in results.items():
        r["cpu_ms_per_request"] = {name: round(seconds * 1000 / r["requests"], 3) for name, seconds in cpu[case].items()}
    return {"results": results, "rss_mib": rss}


def report(out: dict) -> str:
    results = out["results"]
    bare_rps = results["bare"]["rps"]
    lines = ["| case | requests/s | of bare | p50 ms | p99 ms | CPU ms/request: server, DynamoDB Local, "
             "livekit-server, load generator | statuses |", "|---|---|---|---|---|---|---|"]
    for case, r in results.items():
        c = r["cpu_ms_per_request"]
        lines.append(f"| {case} | {r['rps']} | {r['rps'] / bare_rps:.1%} | {r['p50_ms']} | {r['p99_ms']} | "
                     f"{c['server']:.2f}, {c['dynamodb']:.2f}, {c['livekit']:.2f}, {c['client']:.2f} | "
                     f"{r['statuses']} |")
    for case in ("ignored", "duplicate", "one call"):
        ratios = [i / b for i, b in zip(results[case]["rps_by_round"], results["bare"]["rps_by_round"])]
        lines.append(f"\n{case}/bare by round: {', '.join(f'{x:.1%}' for x in ratios)} (median "
                     f"{statistics.median(ratios):.1%})")
    dup = [d / o for d, o in zip(results["duplicate"]["rps_by_round"], results["one call"]["rps_by_round"])]
    lines.append(f"duplicate/one call by round: {', '.join(f'{x:.1%}' for x in dup)} (median "
                 f"{statistics.median(dup):.1%})")
    lines.append(f"RSS MiB: {json.dumps(out['rss_mib'])}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per case per round")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    info = header() | {"requests": args.requests, "concurrency": args.concurrency, "rounds": args.rounds}
    info["webhook"] = asyncio.run(run(args.requests, args.concurrency, args.rounds))
    info["loadavg_at_end"] = loadavg()
    path = write_result("webhook", info)
    print(report(info["webhook"]))
    print(f"\n{json.dumps(info['machine'])}\n{json.dumps(info['versions'])}\n"
          f"{args.requests} requests per case per round, {args.rounds} rounds, concurrency {args.concurrency}; "
          f"results: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
