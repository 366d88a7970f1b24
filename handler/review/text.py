"""The CLI's tables, laid out to read at 80 columns.

Every cell is a rich Text, never a markup string: identities, room names and
LiveKit's error texts are other people's strings, and "[/x]" in one of them must
print as itself rather than crash the table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .timeline import clock, label

STATUS_STYLE = {"JOINED": "green", "DISPATCHED": "cyan", "ENDED": "dim", "FAILED": "red",
                "REJECTED": "yellow", "CLAIMED": "magenta"}


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def why(record: dict[str, Any]) -> str:
    return record.get("error") or record.get("reason") or record.get("redispatch_reason") or ""


def _when(at: str, same_day: bool) -> str:
    # One day's rows need only the time; the title says which day.
    return clock(at)[:8] if same_day else f"{at[5:10]} {clock(at)[:5]}"


def logs_table(rows: list[dict[str, Any]], *, wide: bool = False, project: bool = False) -> Table:
    """The log at 80 columns (or every column, `wide`); `project` adds the project's column first."""
    days = {r.get("created_at", "")[:10] for r in rows}
    same_day = len(days) <= 1
    title = f"dispatch log: {len(rows)} record(s)" + (f", {next(iter(days))} UTC" if same_day and rows else "")
    table = Table(title=Text(title), box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
    if project:
        table.add_column("project", overflow="fold", max_width=12)

    def first(r: Mapping[str, Any]) -> list[Text]:
        """The project column's cell, where there is one."""
        return [Text(str(r.get("project", "")))] if project else []

    if wide:
        for column in ("created_at", "room_name", "room_sid", "agent_name", "participant_identity", "trigger",
                       "status", "attempts", "dispatch_id", "agent_identity", "why"):
            table.add_column(column, overflow="fold")
        for r in rows:
            table.add_row(*first(r), *(Text(str(r.get(c, ""))) for c in (
                "created_at", "room_name", "room_sid", "agent_name", "participant_identity", "trigger")),
                status_text(r["status"]), Text(str(r.get("attempts", ""))), Text(r.get("dispatch_id", "")),
                Text(r.get("agent_identity", "")), Text(why(r)))
        return table
    # Four narrow columns and the reason, which takes the rest and wraps.
    table.add_column("time" if same_day else "when", no_wrap=True)
    table.add_column("room", overflow="fold", max_width=22)
    table.add_column("agent", overflow="fold", max_width=20)
    table.add_column("status", no_wrap=True)
    table.add_column("why", overflow="fold", ratio=1, min_width=16)
    for r in rows:
        table.add_row(*first(r), Text(_when(r.get("created_at", ""), same_day)), Text(r.get("room_name", "")),
                      Text(label(r.get("agent_name", ""), r.get("participant_identity", ""))),
                      status_text(r["status"]), Text(why(r)))
    return table


def explain_tables(room: str, steps: list[dict[str, Any]], width: int = 80) -> list[Table]:
    """One table per room session: the time to the millisecond, what happened and why."""
    out: list[Table] = []
    for sid in dict.fromkeys(s["room_sid"] for s in steps):
        session = [s for s in steps if s["room_sid"] == sid]
        day = session[0]["at"][:10]
        table = Table(title=Text(f"room {room}, session {sid or '?'}, {day} UTC"), box=box.SIMPLE_HEAD,
                      pad_edge=False, title_justify="left")
        table.add_column("at", no_wrap=True)
        table.add_column("what", overflow="fold", max_width=max(20, min(40, width // 3)))
        table.add_column("detail", overflow="fold", ratio=1, min_width=20)
        for s in session:
            at = clock(s["at"]) if s["at"][:10] == day else s["at"]
            what = Text(s["what"])
            if s.get("status"):
                what.stylize(STATUS_STYLE.get(s["status"], ""), len(s["what"]) - len(s["status"]))
            table.add_row(Text(at), what, Text(s["detail"]))
        out.append(table)
    return out


def console() -> Console:
    # Highlighting would colour digits inside ids and identities: the tables style what matters.
    return Console(highlight=False)
