"""The `switchboard` command: serve the webhook, create the table, read the dispatch log."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import sys
from collections import Counter
import time
from typing import Any

from .claims import RECORD_FIELDS, Status, StoreUnavailable
from .settings import Settings

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 15m, 1h, 2d or 1w")
    return float(match.group(1)) * _UNITS[match.group(2)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="switchboard", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the webhook handler under uvicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)

    table = commands.add_parser("table", help="manage the DynamoDB table")
    table.add_argument("action", choices=["create"])

    logs = commands.add_parser("logs", help="the dispatch log, newest first")
    logs.add_argument("--room", help="room name")
    logs.add_argument("--agent", help="agent name")
    logs.add_argument("--status", type=str.upper, choices=[s.value for s in Status])
    logs.add_argument("--since", type=parse_duration, default=parse_duration("24h"),
                      help="how far back, e.g. 15m, 1h, 7d (default 24h)")
    logs.add_argument("--limit", type=int, default=1000)
    logs.add_argument("--json", action="store_true", help="a JSON array for scripts")

    explain = commands.add_parser("explain", help="a room's timeline: events, decisions, dispatches, joins")
    explain.add_argument("--room", required=True, help="room name")
    explain.add_argument("--since", type=parse_duration, default=parse_duration("7d"))
    explain.add_argument("--json", action="store_true")

    sweep = commands.add_parser("sweep", help="re-dispatch unconfirmed agents, reconcile active rooms")
    sweep.add_argument("--every", type=parse_duration, help="repeat forever at this interval, e.g. 5s")
    sweep.add_argument("--json", action="store_true")

    args = parser.parse_args(argv)
    settings = Settings()
    if args.command == "serve":
        return _serve(settings, args.host, args.port)
    command = {"table": _table_create, "logs": _logs, "explain": _explain, "sweep": _sweep}[args.command]
    try:
        return asyncio.run(command(settings, args))
    except StoreUnavailable as exc:
        print(f"switchboard: {exc} (table {settings.table_name}, region {settings.aws_region})", file=sys.stderr)
        return 1


def _serve(settings: Settings, host: str, port: int) -> int:
    import uvicorn

    from .app import create_app

    uvicorn.run(create_app(settings), host=host, port=port, log_config=None, access_log=False)
    return 0


async def _table_create(settings: Settings, args: argparse.Namespace) -> int:
    from .dynamo import _unavailable, dynamodb_client
    from .table import TTL_ATTRIBUTE, create_table_request

    async with dynamodb_client(settings) as db:
        try:
            await db.create_table(**create_table_request(settings.table_name))
        except Exception as exc:
            if getattr(exc, "response", {}).get("Error", {}).get("Code") != "ResourceInUseException":
                raise _unavailable(exc) from exc
            print(f"table {settings.table_name} already exists")
        else:
            print(f"created table {settings.table_name}")
        await db.get_waiter("table_exists").wait(TableName=settings.table_name,
                                                 WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        await db.update_time_to_live(TableName=settings.table_name, TimeToLiveSpecification={
            "Enabled": True, "AttributeName": TTL_ATTRIBUTE})
    return 0


async def _sweep(settings: Settings, args: argparse.Namespace) -> int:
    from .observability import configure_logging
    from .pipeline import open_pipeline
    from .sweeper import Sweeper

    if not args.json:
        configure_logging(settings.log_level)
    def show(report: Any) -> None:
        if args.json:
            print(json.dumps(report.as_dict()), flush=True)

    async with open_pipeline(settings) as pipeline:
        sweeper = Sweeper(pipeline)
        if not args.every:
            report = await sweeper.sweep()
            show(report)
            return 1 if report.errors else 0
        # SIGTERM (a container stopping) or Ctrl-C ends the loop between passes.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await sweeper.run_every(args.every, stop, show)
        return 0


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {name: record.get(name, "" if name != "attempts" else 0) for name in RECORD_FIELDS}


async def _logs(settings: Settings, args: argparse.Namespace) -> int:
    from .dynamo import DynamoStore

    async with DynamoStore.open(settings) as store:
        records = await store.query_log(room=args.room, agent=args.agent, status=args.status,
                                        since=time.time() - args.since, limit=args.limit)
    rows = [_public(r) for r in records]
    if args.json:
        json.dump(rows, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"dispatch log ({len(rows)})")
    for column in ("created_at", "room_name", "agent_name", "participant_identity", "trigger",
                   "status", "dispatch_id", "why"):
        table.add_column(column)
    for r in rows:
        why = r["error"] or r["reason"] or r["redispatch_reason"]
        table.add_row(r["created_at"], r["room_name"], r["agent_name"], r["participant_identity"],
                      r["trigger"], _styled(r["status"]), r["dispatch_id"], why)
    Console().print(table)
    return 0


def _styled(status: str) -> str:
    colour = {"JOINED": "green", "DISPATCHED": "cyan", "ENDED": "dim", "FAILED": "red",
              "REJECTED": "yellow", "CLAIMED": "magenta"}.get(status, "")
    return f"[{colour}]{status}[/{colour}]" if colour else status


def timeline(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A room's history as (time, what, detail) steps, oldest first."""
    steps: list[dict[str, Any]] = []
    for r in records:
        if r.get("record_type") == "event":
            decision, outcome = r.get("decision", {}), r.get("outcome", {})
            detail = decision.get("reason", "")
            if decision.get("error"):
                detail += f": {decision['error']}"
            results = Counter(slot["result"] for slot in outcome.get("slots", []))
            if results:
                detail += " → " + ", ".join(f"{n} {result}" for result, n in sorted(results.items()))
            if outcome.get("note"):
                detail += f" → {outcome['note']}"
            who = r.get("participant_identity")
            # Only join and leave events carry a meaningful participant kind.
            kind = f"{r.get('participant_kind')} " if r.get("event_type", "").startswith("participant_") else ""
            what = r.get("event_type", "") + (f" ({kind}{who})" if who else "")
            if r.get("source") == "sweep":
                what = f"sweep: {what}"
            deliveries = r.get("deliveries", 1)
            if deliveries > 1:
                what += f" ×{deliveries}"
            steps.append({"at": r.get("created_at", ""), "room_sid": r.get("room_sid", ""),
                          "what": what, "detail": detail, "outcome": r.get("outcome", {})})
        elif r.get("record_type") == "dispatch":
            agent = r.get("agent_name", "") + (f" for {r['participant_identity']}" if r.get("participant_identity") else "")
            for status, field in (("CLAIMED", "claimed_at"), ("REJECTED", "rejected_at"),
                                  ("DISPATCHED", "dispatched_at"), ("FAILED", "failed_at"),
                                  ("JOINED", "joined_at"), ("ENDED", "ended_at")):
                if r.get(field):
                    detail = {"DISPATCHED": r.get("dispatch_id", ""), "FAILED": r.get("error", ""),
                              "REJECTED": r.get("reason", ""), "JOINED": r.get("agent_identity", ""),
                              "CLAIMED": f"attempt {r.get('attempts', 1)}, trigger {r.get('trigger', '')}"}.get(status, "")
                    steps.append({"at": r[field], "room_sid": r.get("room_sid", ""),
                                  "what": f"{agent} {status}", "detail": detail})
    return sorted(steps, key=lambda s: s["at"])


async def _explain(settings: Settings, args: argparse.Namespace) -> int:
    from .dynamo import DynamoStore

    async with DynamoStore.open(settings) as store:
        records = await store.room_timeline(args.room, since=time.time() - args.since)
    steps = timeline(records)
    if args.json:
        json.dump(steps, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    from rich.console import Console
    from rich.table import Table

    if not steps:
        Console().print(f"no webhook or dispatch was recorded for room {args.room!r}: "
                        "did LiveKit's webhook reach Switchboard? (check webhook.urls and the signing key)")
        return 1
    table = Table(title=f"room {args.room}")
    for column in ("at", "room_sid", "what", "detail"):
        table.add_column(column)
    for s in steps:
        table.add_row(s["at"], s["room_sid"], s["what"], s["detail"])
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
