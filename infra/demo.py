"""The drill, end to end, against the running local stack.

    make dev        # terminal 1: livekit-server, DynamoDB Local, the handler and both workers
    make demo       # terminal 2: python -m infra.demo; creates a room, listens, prints what happened

Without `make dev`'s workers (a stack started some other way), pass --start-workers.

It creates a room whose metadata asks Switchboard for both agents, joins it as
a listener, and prints the agents joining, who spoke when (measured on the
audio it receives), the captions, and Switchboard's own record of the room.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any

from livekit import api, rtc

from worker.listen import Listener
from worker.presence import STATE_ATTRIBUTE, DrillState

from .room import create_room
from .stack import CACHE, DEV_API_KEY, DEV_API_SECRET, ROOT, Ports, Stack, aws_env, http_ok, port_open
from .workers import start_workers

SCRIPT = {
    "dispatcher": ["Driver, this is dispatch. Do you copy? Over.",
                   "Pick up at the north depot, then gate four. Over."],
    "driver": ["Copy, dispatch. Chris here, loud and clear. Over.",
               "North depot, then gate four. On my way. Over."],
}
METADATA = {"agents": [{"name": "dispatcher", "metadata": {"persona": "Tim", "script": SCRIPT}},
                       {"name": "driver", "metadata": {"persona": "Chris", "script": SCRIPT}}]}
# After both agents say they are done, the last line may still be on the wire.
QUIET_SECONDS = 2.0


def say(text: str = "") -> None:
    print(text, flush=True)


async def watch(listener: Listener, timeout: float) -> bool:
    """Print agents as they join; True once both finished the drill and the room went quiet."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        agents = {p.identity: p for p in listener.room.remote_participants.values()
                  if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT}
        for identity in sorted(agents.keys() - seen):
            p = agents[identity]
            say(f"  {listener.now():6.1f}s  joined: {identity} as {p.name!r} (role={p.attributes.get('role', '?')})")
            seen.add(identity)
        done = [p for p in agents.values() if p.attributes.get(STATE_ATTRIBUTE) == DrillState.DONE]
        last_sound = max((u.end for u in listener.utterances), default=0.0)
        if len(agents) >= 2 and len(done) == len(agents) and listener.now() - last_sound > QUIET_SECONDS:
            return True
        await asyncio.sleep(0.2)
    return False


def handler_healthy(ports: Ports) -> bool:
    try:
        return http_ok(f"{ports.handler_url}/healthz")
    except OSError:
        return False


def switchboard(*args: str) -> str:
    # COLUMNS: rich would otherwise squeeze `explain` into 80 columns when piped.
    done = subprocess.run([sys.executable, "-m", "handler.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **aws_env(Ports()), "COLUMNS": "160"}, timeout=60)
    return done.stdout if done.returncode == 0 else done.stdout + done.stderr


async def wait_joined(room: str, timeout: float = 15) -> list[dict[str, Any]]:
    """The dispatch log once it shows both agents JOINED (the confirmation webhook can lag)."""
    deadline = time.monotonic() + timeout
    while True:
        records: list[dict[str, Any]] = json.loads(switchboard("logs", "--room", room, "--json") or "[]")
        if sum(r["status"] == "JOINED" for r in records) >= 2 or time.monotonic() > deadline:
            return records
        await asyncio.sleep(0.5)


async def run(room: str, timeout: float) -> int:
    ports = Ports()
    say(f"room {room}: asking Switchboard for a dispatcher and a driver")
    await create_room(room, json.dumps(METADATA), url=ports.livekit_url)
    listener = Listener()
    await listener.join(ports.livekit_url.replace("http", "ws"), room, DEV_API_KEY, DEV_API_SECRET)
    async with api.LiveKitAPI(ports.livekit_url, DEV_API_KEY, DEV_API_SECRET) as lk:
        try:
            finished = await watch(listener, timeout)
            records = await wait_joined(room)
        finally:
            await listener.aclose()
            with contextlib.suppress(api.TwirpError):
                await lk.room.delete_room(api.DeleteRoomRequest(room=room))

    say("\nwho spoke when (heard by the listener):")
    for u in sorted(listener.utterances, key=lambda u: u.start):
        say(f"  {u.start:6.1f}s – {u.end:6.1f}s  {u.identity:<12} {u.duration:4.1f}s")
    say("\ncaptions (lk.transcription):")
    for c in listener.captions:
        say(f"  {c.at:6.1f}s  {c.identity:<12} {c.text}")
    say("\nthe dispatch log while the room was live (switchboard logs --json):")
    for r in records:
        say(f"  {r['agent_name']:<12} {r['status']:<10} identity={r['agent_identity'] or '-':<12} "
            f"trigger={r['trigger']} dispatch={r['dispatch_id']}")
    say("\nthe room's timeline, now that it is deleted (switchboard explain):")
    say(switchboard("explain", "--room", room))
    if not finished:
        say(f"the drill did not finish within {timeout:g} s: are both workers running? "
            "(python -m worker dispatcher dev; python -m worker driver dev, or --start-workers)")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--room", default=f"drill-{uuid.uuid4().hex[:6]}")
    parser.add_argument("--timeout", type=float, default=90)
    parser.add_argument("--start-workers", action="store_true",
                        help="start both workers for the demo's duration (logs in infra/.cache/run/demo/)")
    args = parser.parse_args(argv)

    ports = Ports()
    if not (port_open(ports.livekit) and port_open(ports.handler) and handler_healthy(ports)):
        print("the local stack is not running: start it with `make dev`", file=sys.stderr)
        return 1
    with Stack(ports, run_dir=CACHE / "run" / "demo") as stack:
        if args.start_workers:
            say("starting the dispatcher and driver workers…")
            start_workers(stack)
        return asyncio.run(run(args.room, args.timeout))


if __name__ == "__main__":
    sys.exit(main())
