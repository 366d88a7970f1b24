"""The `switchboard` command: serve the webhook, create the table, read the dispatch log.

Over ~300 lines: one argparse tree and a short function per subcommand, each
of which is a few lines of output formatting over a store or pipeline call;
the review itself (why a room has no agent) is in review/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from .claims import RECORD_FIELDS, Status, StoreUnavailable
from .durations import parse_duration
from .records import LogRecord
from .settings import DEFAULT_PROJECT, Settings
from .store_hint import store_hint as _store_hint


class MissingConfiguration(Exception):
    """A command needs variables the environment does not set; the message names them."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchboard", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the webhook handler under uvicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)

    table = commands.add_parser("table", help="manage the DynamoDB table")
    table.add_argument("action", choices=["create"])

    def filters(p: argparse.ArgumentParser, since: str) -> None:
        p.add_argument("--room", help="room name")
        p.add_argument("--agent", help="agent name")
        p.add_argument("--status", type=str.upper, choices=[s.value for s in Status])
        p.add_argument("--since", type=parse_duration, default=parse_duration(since),
                       help=f"how far back, e.g. 15m, 1h, 7d (default {since})")
        p.add_argument("--limit", type=int, default=1000)
        project_option(p)

    def project_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--project", help="only this LiveKit project's records (default: every project)")

    logs = commands.add_parser("logs", help="the dispatch log, newest first")
    filters(logs, "24h")
    logs.add_argument("--wide", action="store_true",
                      help="every column (ids, trigger, attempts); needs a wide terminal")
    logs.add_argument("--json", action="store_true", help="a JSON array for scripts")

    explain = commands.add_parser("explain", help="a room's timeline: events, decisions, dispatches, joins")
    explain.add_argument("--room", required=True, help="room name")
    explain.add_argument("--agent", help="answer in one paragraph why this agent is or is not in the room")
    explain.add_argument("--since", type=parse_duration, default=parse_duration("7d"))
    explain.add_argument("--json", action="store_true")
    project_option(explain)

    sweep = commands.add_parser("sweep", help="re-dispatch unconfirmed agents, reconcile active rooms")
    sweep.add_argument("--every", type=parse_duration, help="repeat forever at this interval, e.g. 5s")
    sweep.add_argument("--json", action="store_true",
                       help="the report as JSON on stdout (one document per pass); logs and metrics go to stderr")
    sweep.add_argument("--project", action="append", help="sweep only this project (repeatable; default: every one)")

    check = commands.add_parser("check", help="dry run: what would this room metadata dispatch, and why?")
    check.add_argument("metadata", nargs="?", help="the room metadata (JSON); '-' or nothing reads stdin")
    check.add_argument("--file", type=Path, help="read the metadata from this file")
    check.add_argument("--participant", metavar="IDENTITY", help="also decide this participant's join")
    check.add_argument("--kind", default="standard",
                       choices=["standard", "sip", "ingress", "egress", "connector", "bridge", "agent"],
                       help="the participant's kind (default standard)")
    check.add_argument("--room", default="dry-run", help="the room name the job metadata shows")
    check.add_argument("--routing", type=Path, help="the routing file (default SWITCHBOARD_ROUTING_FILE)")
    check.add_argument("--allow", help="the allowlist, comma-separated (default SWITCHBOARD_ALLOWED_AGENTS)")
    check.add_argument("--strict", action="store_true", help="also exit 1 if the policy rejects an agent")
    check.add_argument("--project", help="decide with this project's allowlist and routing file, where it has its own")
    check.add_argument("--json", action="store_true")

    commands.add_parser("schema", help="the room-metadata contract as JSON Schema")

    ui = commands.add_parser("ui", help="a read-only dispatch-log page in the browser")
    ui.add_argument("--host", default="127.0.0.1",
                    help="the address to bind (default loopback; the page has no login, see the README)")
    ui.add_argument("--port", type=int, default=8090)
    ui.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                    help="another Host header to answer (the name a reverse proxy or tunnel uses); "
                         "loopback names are always allowed")
    ui.add_argument("--refresh", type=parse_duration, default=parse_duration("2s"),
                    help="how often an open page looks for new records (default 2s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # `switchboard schema | head`: the reader has what it wanted.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "schema":
        from .review.check import metadata_schema

        print(json.dumps(metadata_schema(), indent=2))
        return 0
    try:
        settings = Settings()
    except ValueError as exc:
        print(f"switchboard: the configuration is invalid:\n{exc}", file=sys.stderr)
        return 2
    _quiet_dev_key(settings)
    try:
        if args.command == "serve":
            return _serve(settings, args.host, args.port)
        if args.command == "ui":
            return _ui(settings, args)
        if args.command == "check":
            return _check(settings, args)
        command = {"table": _table_create, "logs": _logs, "explain": _explain, "sweep": _sweep}[args.command]
        return asyncio.run(command(settings, args))
    except MissingConfiguration as exc:
        print(f"switchboard {args.command}: {exc}", file=sys.stderr)
        return 2
    except StoreUnavailable as exc:
        print(f"switchboard {args.command}: {exc} (table {settings.table_name}, region {settings.aws_region})"
              f"{_store_hint(str(exc), settings)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _quiet_dev_key(settings: Settings) -> None:
    """livekit-server --dev's well-known pair, devkey/secret, is 6 bytes: PyJWT warns on every token.

    Only for that pair: a short secret anywhere else is worth the warning.
    """
    if settings.livekit_api_key == "devkey" and settings.livekit_api_secret.get_secret_value() == "secret":
        warnings.filterwarnings("ignore", message=r"The HMAC key is \d+ bytes long")


def _require_livekit(settings: Settings, command: str) -> None:
    if settings.configured_projects is not None:
        return  # every project has a dispatch key, checked when the settings were read
    missing = [name for name, value in (("LIVEKIT_API_KEY", settings.livekit_api_key),
                                        ("LIVEKIT_API_SECRET", settings.livekit_api_secret.get_secret_value()))
               if not value]
    if missing:
        raise MissingConfiguration(
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set; `{command}` calls LiveKit at "
            f"{settings.livekit_url} (LIVEKIT_URL). Set them, or SWITCHBOARD_LIVEKIT_SECRET_ARN to a Secrets "
            "Manager secret holding them; for the local stack, `make dev` prints the line to export")


def _check_projects(settings: Settings, names: list[str] | None) -> None:
    unknown = [n for n in names or [] if n not in settings.projects]
    if unknown:
        raise MissingConfiguration(f"no project {', '.join(map(repr, unknown))}; the projects are "
                                   f"{', '.join(sorted(settings.projects))} (SWITCHBOARD_PROJECTS)")


def _serve(settings: Settings, host: str, port: int) -> int:
    import uvicorn

    from .app import create_app

    uvicorn.run(create_app(settings), host=host, port=port, log_config=None, access_log=False)
    return 0


def _ui(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from .review.ui import create_review_app

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"switchboard ui: binding {args.host}: the page has no login, and anyone who reaches it reads the "
              "dispatch log with this process's AWS credentials (see the README)", file=sys.stderr)
    print(f"switchboard ui: http://{args.host}:{args.port}/ (table {settings.table_name}; read-only)", flush=True)
    app = create_review_app(settings, refresh_seconds=args.refresh, allowed_hosts=args.allow_host + [args.host])
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _check(settings: Settings, args: argparse.Namespace) -> int:
    from .contract import Routing
    from .review.check import dry_run, render

    if args.file:
        metadata = args.file.read_text(encoding="utf-8")
    elif args.metadata is None or args.metadata == "-":
        metadata = sys.stdin.read()
    else:
        metadata = args.metadata
    if args.project:
        _check_projects(settings, [args.project])
        project = settings.project(args.project)
        if project.allowed_agents is not None:
            settings = settings.model_copy(update={"allowed_agents": project.allowed_agents})
        if project.routing_file is not None:
            settings = settings.model_copy(update={"routing_file": project.routing_file})
    if args.allow is not None:
        settings = settings.model_copy(update={"allowed_agents": frozenset(
            a.strip() for a in args.allow.split(",") if a.strip())})
    if args.routing is not None:
        settings = settings.model_copy(update={"routing_file": args.routing})
    try:
        routing = Routing.load(settings.routing_file)
    except (OSError, ValueError) as exc:
        raise MissingConfiguration(f"the routing file {settings.routing_file} cannot be read: {exc}") from None
    result = dry_run(metadata, settings, routing, room_name=args.room, participant=args.participant,
                     kind=args.kind)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2, ensure_ascii=False))
    else:
        print(render(result, settings))
    return 1 if result.contract_error or (args.strict and result.rejected) else 0


async def _table_create(settings: Settings, args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from .dynamo import dynamodb_client, error_code, unavailable
    from .table import TTL_ATTRIBUTE, create_table_request

    async with dynamodb_client(settings) as db:
        try:
            await db.create_table(**create_table_request(settings.table_name))
        except ClientError as exc:
            if error_code(exc) != "ResourceInUseException":
                raise unavailable(exc) from exc
            print(f"table {settings.table_name} already exists")
        except BotoCoreError as exc:
            raise unavailable(exc) from exc
        else:
            print(f"created table {settings.table_name}")
        await db.get_waiter("table_exists").wait(TableName=settings.table_name,
                                                 WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        await db.update_time_to_live(TableName=settings.table_name, TimeToLiveSpecification={
            "Enabled": True, "AttributeName": TTL_ATTRIBUTE})
    return 0


async def _sweep(settings: Settings, args: argparse.Namespace) -> int:
    from .dynamo import DynamoStore
    from .observability import configure_logging, send_metrics_to
    from .sweeps import sweep_every, sweep_projects

    _require_livekit(settings, "sweep")
    _check_projects(settings, args.project)
    if args.json:
        # stdout is the report: the log lines and the EMF metric lines go to stderr.
        configure_logging(settings.log_level, stream=sys.stderr)
        send_metrics_to(sys.stderr)
    else:
        configure_logging(settings.log_level)

    def show(report: Any) -> None:
        if args.json:
            print(json.dumps(report.as_dict()), flush=True)

    async with DynamoStore.open(settings) as store:
        if not args.every:
            report = await sweep_projects(settings, store=store, only=args.project)
            show(report)
            return 1 if report.errors else 0
        # SIGTERM (a container stopping) or Ctrl-C ends the loop between passes. Each pass reads
        # the settings and the secret again, so a rotated key reaches a long-running sweeper.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await sweep_every(args.every, stop, store=store, only=args.project, on_report=show)
        return 0


def _public(record: LogRecord) -> dict[str, Any]:
    """A dispatch record as `switchboard logs --json` prints it: every RECORD_FIELDS field, "" for
    one the record lacks (None on a SlotRecord: records.py)."""
    out = {name: "" if (value := getattr(record, name, "")) is None else value for name in RECORD_FIELDS}
    # A record of the default project has no project attribute (table.py): it is "default"'s.
    return {"project": record.project or DEFAULT_PROJECT} | out


def _reader(settings: Settings, project: str | None):  # type: ignore[no-untyped-def]
    """A read-only store of one project, or of every project (None)."""
    from .dynamo import DynamoStore

    _check_projects(settings, [project] if project else None)
    return DynamoStore.open(settings, project=project)


async def _logs(settings: Settings, args: argparse.Namespace) -> int:
    async with _reader(settings, args.project) as store:
        records = await store.query_log(room=args.room, agent=args.agent, status=args.status,
                                        since=time.time() - args.since, limit=args.limit)
    rows = [_public(r) for r in records]
    if args.json:
        json.dump(rows, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    from .review.text import console, logs_table

    # The project column, once there is more than one project to tell apart.
    several = len(settings.projects) > 1 or any(r["project"] != DEFAULT_PROJECT for r in rows)
    console().print(logs_table(rows, wide=args.wide, project=several))
    return 0


async def _explain(settings: Settings, args: argparse.Namespace) -> int:
    async with _reader(settings, args.project) as store:
        records = await store.room_timeline(args.room, since=time.time() - args.since)
    projects = sorted({r.project or DEFAULT_PROJECT for r in records})
    if len(projects) > 1:
        # Two projects' rooms may share a name: which one is meant must be said.
        print(f"switchboard explain: room {args.room!r} is in several projects ({', '.join(projects)}); "
              "pick one with --project", file=sys.stderr)
        return 2
    if args.agent:
        from .review.answer import explain_agent

        answer = explain_agent(args.room, args.agent, records,
                               max_attempts=settings.max_dispatch_attempts)
        if args.json:
            print(json.dumps({"room": args.room, "agent": args.agent, "answer": answer}, ensure_ascii=False))
        else:
            print(answer)
        return 0 if records else 1
    # The review package is the CLI's and the page's, never the Lambda bundle's (infra/bundle.sh
    # ships handler/*.py alone, and the function starts through this module): imported here.
    from .review.timeline import timeline

    steps = timeline(records)
    if args.json:
        json.dump(steps, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    from rich.text import Text

    from .review.text import console, explain_tables

    out = console()
    if not steps:
        out.print(Text(f"no webhook or dispatch was recorded for room {args.room!r}: "
                       "did LiveKit's webhook reach Switchboard? (check webhook.urls and the signing key)"))
        return 1
    for table in explain_tables(args.room, steps, out.width):
        out.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
