"""First-dispatch throughput at concurrency 8, 32 and 128, with one and with two handler processes.

    uv run python -m bench.scale [--requests 600] [--concurrency 8 32 128]

One DynamoDB Local, one livekit-server, two handlers (`switchboard serve`, as deployed,
log level INFO). Every request is a signed room_started of a new room session (a sid
never seen), so each is a full first dispatch: replay check, claim (TransactWriteItems),
CreateDispatch, mark DISPATCHED, record. With two processes the load generator's clients
alternate between them, as a balancer would. Cases round-robin, after a warm-up. A
benchmark: nothing here asserts a time. Everything, the load generator included, shares
the machine's cores: what bounds each number is in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid

from livekit import api

from bench.common import bytecode_env, header, loadavg, pick_port, write_result
from bench.webhook import combine, drive, signed_request
from infra.stack import CACHE, DEV_API_KEY, DEV_API_SECRET, ROOT, Ports, Stack, handler_env, http_ok, wait_until
from tests.webhooks import event


async def run(n: int, levels: list[int], rounds: int) -> dict:
    taken: set[int] = set()
    ports = Ports(livekit=pick_port(35880, taken), livekit_rtc_tcp=pick_port(35881, taken),
                  livekit_udp=pick_port(35882, taken), dynamodb=pick_port(35800, taken), handler=pick_port(35080, taken))
    second = pick_port(35081, taken)
    raw: dict[str, list[dict]] = {}
    with Stack(ports, run_dir=CACHE / "run" / "bench-scale") as stack:
        env = handler_env(ports, SWITCHBOARD_ALLOWED_AGENTS="driver") | bytecode_env()
        stack.start_dynamodb()
        stack.create_table(env)
        stack.start_livekit(webhook_urls=["http://127.0.0.1:9/unused"])
        stack.start_handler(env)
        other = stack.start_handler(env, port=second, name="handler-2")
        wait_until(lambda: http_ok(f"http://127.0.0.1:{second}/healthz"), other)
        urls = {1: [f"{ports.handler_url}/webhook"],
                2: [f"{ports.handler_url}/webhook", f"http://127.0.0.1:{second}/webhook"]}
        name = f"scale-{uuid.uuid4().hex[:6]}"
        async with api.LiveKitAPI(ports.livekit_url, DEV_API_KEY, DEV_API_SECRET) as lk:
            await lk.room.create_room(api.CreateRoomRequest(name=name, empty_timeout=3600))
        meta = {"agents": [{"name": "driver"}]}

        def firsts(count: int) -> list[tuple[bytes, dict]]:
            return [signed_request(event("room_started", name, f"RM_scale_{uuid.uuid4().hex[:10]}", meta))
                    for _ in range(count)]

        for processes in (1, 2):
            await drive(urls[processes], firsts(300), 8)  # warm-up: connection pools, DynamoDB Local's JIT
        for _ in range(rounds):
            for processes in (1, 2):
                for c in levels:
                    raw.setdefault(f"{processes}x{c}", []).append(await drive(urls[processes], firsts(n), c))
    return {case: combine(rounds_) for case, rounds_ in raw.items()}


def report(out: dict) -> str:
    lines = ["| handler processes | concurrency | first dispatches/s | p50 ms | p99 ms | statuses |",
             "|---|---|---|---|---|---|"]
    for case, r in out.items():
        processes, c = case.split("x")
        lines.append(f"| {processes} | {c} | {r['rps']} | {r['p50_ms']} | {r['p99_ms']} | {r['statuses']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=600, help="first dispatches per case per round")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    info = header() | {"requests": args.requests, "rounds": args.rounds}
    info["scale"] = asyncio.run(run(args.requests, args.concurrency, args.rounds))
    info["loadavg_at_end"] = loadavg()
    path = write_result("scale", info)
    print(report(info["scale"]))
    print(f"\n{json.dumps(info['machine'])}\nresults: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
