"""The dispatch-log page's HTML and SVG, built as strings from the log's records.

Pure functions, no template engine and no JavaScript build: the page is HTML the
server writes, a timeline drawn as inline SVG, one small script that swaps in
the new content when the records change, and one stylesheet. Every string that
came from a record goes through html.escape.
"""

from __future__ import annotations

import hashlib
import json
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from ..claims import Status
from ..records import LogRecord, SlotRecord
from .timeline import clock, sessions, slot_label

COLOURS = {"JOINED": "#1a7f37", "DISPATCHED": "#0969da", "ENDED": "#6e7781", "FAILED": "#cf222e",
           "REJECTED": "#9a6700", "CLAIMED": "#8250df", "event": "#24292f", "sweep": "#57606a"}

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #24292f; }
header { background: #24292f; color: #fff; padding: 8px 16px; display: flex; gap: 16px; align-items: baseline; }
header a { color: #fff; font-weight: 600; text-decoration: none; }
header .meta { color: #d0d7de; font-size: 12px; }
main, form.filters { padding: 8px 16px; }
form.filters { display: flex; gap: 8px; flex-wrap: wrap; align-items: end; border-bottom: 1px solid #d0d7de; }
form.filters label { display: flex; flex-direction: column; font-size: 12px; }
table { border-collapse: collapse; margin: 8px 0 16px; }
th, td { text-align: left; padding: 3px 8px; border-bottom: 1px solid #eaeef2; vertical-align: top; }
th { font-size: 12px; color: #57606a; }
td.time, .mono { font-family: ui-monospace, monospace; white-space: nowrap; }
.code { font-family: ui-monospace, monospace; overflow-wrap: anywhere; }
table.steps { width: 100%; max-width: 1600px; }
table.steps td:nth-child(2) { width: 22%; } table.steps td:nth-child(3) { width: 34%; }
.status { font-weight: 600; padding: 0 4px; border-radius: 4px; color: #fff; white-space: nowrap; }
.status-JOINED { background: #1a7f37; } .status-DISPATCHED { background: #0969da; }
.status-ENDED { background: #6e7781; } .status-FAILED { background: #cf222e; }
.status-REJECTED { background: #9a6700; } .status-CLAIMED { background: #8250df; }
.agent { display: inline-block; margin: 0 6px 2px 0; }
.why { color: #57606a; }
.error { color: #cf222e; }
.empty { color: #57606a; font-style: italic; }
svg.timeline { border: 1px solid #d0d7de; background: #f6f8fa; }
svg.timeline text { font: 11px ui-monospace, monospace; }
tr:target { background: #fff8c5; }
"""

SCRIPT = """
// Look for new records every few seconds; swap the content in only when it changed.
(function () {
  const every = Number(document.body.dataset.refreshMs || 2000);
  async function refresh() {
    try {
      const response = await fetch(location.href, {headers: {"Accept": "text/html"}, cache: "no-store"});
      const doc = new DOMParser().parseFromString(await response.text(), "text/html");
      const next = doc.getElementById("content"), current = document.getElementById("content");
      if (next && current && next.dataset.version !== current.dataset.version) {
        current.replaceWith(document.importNode(next, true));
      }
      document.getElementById("checked").textContent = "checked " + new Date().toISOString().slice(11, 23) + " UTC";
    } catch (error) {
      document.getElementById("checked").textContent = "cannot reach the server: " + error;
    } finally {
      setTimeout(refresh, every);
    }
  }
  setTimeout(refresh, every);
})();
"""


def version(records: list[LogRecord]) -> str:
    """A fingerprint of what the page shows: it changes exactly when a record does (any attribute of it)."""
    stored = [dict(r.stored) for r in records]
    return hashlib.sha256(json.dumps(stored, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _status(status: str) -> str:
    return f'<span class="status status-{escape(status)}">{escape(status)}</span>'


def document(title: str, body: str, *, table: str, refresh_ms: int, filters: str = "") -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<link rel="stylesheet" href="/page.css"></head><body data-refresh-ms="{refresh_ms}">'
            f'<header><a href="/">Switchboard dispatch log</a><span class="meta">read-only · table '
            f'{escape(table)} · <span id="checked">loaded</span></span></header>{filters}{body}'
            f'<script src="/page.js"></script></body></html>')


def filters_form(values: dict[str, str], statuses: list[str]) -> str:
    def field(name: str, label: str, placeholder: str) -> str:
        return (f'<label>{label}<input name="{name}" value="{escape(values.get(name, ""))}" '
                f'placeholder="{placeholder}"></label>')
    options = "".join(f'<option{" selected" if values.get("status") == s else ""}>{s}</option>'
                      for s in ["", *statuses])
    return (f'<form class="filters" method="get" action="/">{field("room", "room", "any room")}'
            f'{field("agent", "agent", "any agent")}<label>status<select name="status">{options}</select></label>'
            f'{field("since", "since", "24h")}<button type="submit">show</button></form>')


def rooms_list(records: list[LogRecord], values: dict[str, str]) -> str:
    """Recent room sessions, newest first, each with its agents and their status."""
    rooms: dict[str, dict[str, Any]] = {}
    for r in records:
        room = rooms.setdefault(r.room_sid, {"name": r.room_name, "sid": r.room_sid, "first": r.created_at,
                                             "last": "", "slots": [], "notes": []})
        room["first"] = min(room["first"], r.created_at)
        changed = r.updated_at if isinstance(r, SlotRecord) else r.last_received_at
        room["last"] = max(room["last"], changed or r.created_at)
        if isinstance(r, SlotRecord):
            room["slots"].append(r)
        elif r.decision.get("error"):
            room["notes"].append(f"{r.decision.get('reason', '')}: {r.decision['error']}")
    rows = []
    for room in sorted(rooms.values(), key=lambda x: x["last"], reverse=True):
        agents = "".join(
            f'<span class="agent" data-agent="{escape(slot_label(s))}" data-status="{escape(s.status)}">'
            f'{escape(slot_label(s))} {_status(s.status)}</span>'
            for s in sorted(room["slots"], key=lambda s: s.created_at))
        if not agents:
            note = room["notes"][0] if room["notes"] else "no agents dispatched"
            agents = f'<span class="empty">{escape(note)}</span>'
        link = f'/rooms/{quote(room["name"], safe="")}' + (f'?{urlencode({"since": values["since"]})}'
                                                          if values.get("since") else "")
        rows.append(f'<tr data-room="{escape(room["name"])}"><td><a href="{escape(link)}">{escape(room["name"])}</a>'
                    f'</td><td class="mono">{escape(room["sid"])}</td><td class="time">{escape(room["first"])}</td>'
                    f'<td class="time">{escape(clock(room["last"]))}</td><td>{agents}</td></tr>')
    if not rows:
        return f'<main id="content" data-version="{version(records)}"><p class="empty">no records match</p></main>'
    return (f'<main id="content" data-version="{version(records)}"><table class="rooms"><thead><tr><th>room</th>'
            f'<th>session</th><th>first record (UTC)</th><th>last change</th><th>agents</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></main>')


def _slot_id(sid: str, slot: str) -> str:
    return "slot-" + hashlib.sha1(f"{sid}/{slot}".encode()).hexdigest()[:10]


def _step_id(sid: str, index: int) -> str:
    return f"step-{hashlib.sha1(sid.encode()).hexdigest()[:6]}-{index}"


def timeline_svg(session: dict[str, Any]) -> str:
    """The session drawn: one lane for webhooks, one per slot; steps left to right in the order they happened.

    Steps are spaced evenly rather than by time: they are milliseconds apart, then
    minutes, and the order is what a reader follows. Each step's time is under it.
    """
    steps, sid = session["steps"], session["room_sid"]
    lanes = ["webhooks"] + [slot_label(s) for s in session["slots"]]
    lane_of_slot = {s.sk: i + 1 for i, s in enumerate(session["slots"])}
    left, dx, top, dy = 150, 56, 30, 46
    width = left + dx * max(len(steps), 1) + 40
    height = top + dy * len(lanes) + 96
    pos: dict[int, tuple[float, float]] = {}
    parts = [f'<svg class="timeline" role="img" aria-label="timeline of session {escape(sid)}" '
             f'xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}">']
    for i, lane_name in enumerate(lanes):
        y = top + i * dy
        parts.append(f'<text x="8" y="{y + 4}">{escape(lane_name[:20])}</text>'
                     f'<line x1="{left - 10}" y1="{y}" x2="{width - 20}" y2="{y}" stroke="#d0d7de"/>')
    last_in_lane: dict[int, tuple[float, float]] = {}
    for index, step in enumerate(steps):
        lane = lane_of_slot.get(step.get("slot", ""), 0) if step["kind"] == "dispatch" else 0
        x, y = left + index * dx, top + lane * dy
        pos[index] = (x, y)
        if lane in last_in_lane and lane:
            px, py = last_in_lane[lane]
            parts.append(f'<line x1="{px}" y1="{py}" x2="{x}" y2="{y}" stroke="#8c959f" stroke-width="2"/>')
        last_in_lane[lane] = (x, y)
        colour = COLOURS.get(step.get("status", ""), COLOURS["sweep" if step.get("source") == "sweep" else "event"])
        # Events that decide nothing (track_published, ...) are drawn small, grey and unlabelled.
        quiet = step["kind"] == "event" and (step.get("decision") or {}).get("action") == "ignore" \
            and not (step.get("decision") or {}).get("error") and not step.get("event_type", "").startswith("room_")
        label = "" if quiet else step.get("status") or _short_event(step)
        tip = f'{clock(step["at"])} {step["what"]}: {step["detail"]}'
        if step["kind"] == "dispatch":
            shape = f'<circle cx="{x}" cy="{y}" r="7" fill="{colour}"/>'
        elif quiet:
            shape = f'<rect x="{x - 3}" y="{y - 3}" width="6" height="6" fill="#afb8c1"/>'
        else:
            shape = f'<rect x="{x - 6}" y="{y - 6}" width="12" height="12" fill="{colour}"/>'
        # Labels alternate above and below their lane so neighbours don't overlap.
        label_y = y + 20 if index % 2 else y - 11
        parts.append(f'<a href="#{_step_id(sid, index)}"><g class="step" data-index="{index}" '
                     f'data-what="{escape(step["what"])}" data-at="{escape(step["at"])}"><title>{escape(tip)}</title>'
                     f'{shape}<text x="{x}" y="{label_y}" text-anchor="middle" fill="{colour}">'
                     f'{escape(label)}</text></g></a>')
        time_y = top + len(lanes) * dy
        parts.append(f'<text x="{x}" y="{time_y}" transform="rotate(55 {x} {time_y})" fill="#57606a">'
                     f'{escape(clock(step["at"]))}</text>')
    # Re-dispatches: a dashed arrow from the event that sent the slot again to the slot's lane.
    for link in session["redispatches"]:
        slot_lane = lane_of_slot.get(link["slot"])
        if slot_lane is None or link["step"] not in pos:
            continue
        sx, sy = pos[link["step"]]
        later = [i for i, s in enumerate(steps) if i > link["step"] and s.get("slot") == link["slot"]]
        tx, ty = pos[later[0]] if later else (sx + dx / 2, top + slot_lane * dy)
        parts.append(f'<path class="redispatch" d="M{sx},{sy} C{sx + dx / 2},{sy} {tx - dx / 2},{ty} {tx},{ty}" '
                     f'fill="none" stroke="#cf222e" stroke-dasharray="4 3" stroke-width="1.5"/>')
    parts.append("</svg>")
    return "".join(parts)


def _short_event(step: dict[str, Any]) -> str:
    event: str = step.get("event_type", "")
    short = {"room_started": "started", "room_finished": "finished", "participant_joined": "joined",
             "participant_left": "left", "participant_connection_aborted": "aborted"}.get(event, event[:10])
    return ("sweep " if step.get("source") == "sweep" else "") + short


def _answers(step: dict[str, Any]) -> str:
    """What came of an event, slot by slot: LiveKit's dispatch id or its error, a duplicate, a claim held."""
    items = []
    for slot in (step.get("outcome") or {}).get("slots", []):
        items.append(f'{escape(slot.get("slot", "").removeprefix("DISPATCH#"))}: {escape(slot.get("result", ""))}'
                     + (f' <span class="code">{escape(slot["detail"])}</span>' if slot.get("detail") else ""))
    if (step.get("outcome") or {}).get("note"):
        items.append(escape(step["outcome"]["note"]))
    return "<br>".join(items)


def room_page(room: str, records: list[LogRecord]) -> str:
    found = sessions(records)
    if not found:
        return (f'<main id="content" data-version="{version(records)}"><h1>room {escape(room)}</h1><p class="empty">'
                "no webhook or dispatch was recorded for this room in the window: did LiveKit's webhook reach "
                "Switchboard? (check webhook.urls and the signing key)</p></main>")
    out = [f'<main id="content" data-version="{version(records)}"><h1>room {escape(room)}</h1>']
    for session in reversed(found):  # the newest session first
        sid = session["room_sid"]
        out.append(f'<section class="session" data-sid="{escape(sid)}"><h2>session <span class="mono">'
                   f'{escape(sid)}</span>, {escape(session["started"][:10])} UTC</h2>')
        out.append(_slots_table(session))
        out.append(timeline_svg(session))
        out.append(_steps_table(session))
        out.append("</section>")
    out.append("</main>")
    return "".join(out)


def _slots_table(session: dict[str, Any]) -> str:
    sid = session["room_sid"]
    if not session["slots"]:
        return '<p class="empty">no agent was dispatched in this session; the decisions below say why</p>'
    rows = []
    for s in session["slots"]:
        why = s.error or s.reason
        redispatched = [r for r in session["redispatches"] if r["slot"] == s.sk]
        links = " ".join(f'<a href="#{_step_id(sid, r["step"])}">re-dispatched at '
                         f'{escape(clock(session["steps"][r["step"]]["at"]))}</a>' for r in redispatched)
        again = f'<div class="why">re-dispatched: {escape(s.redispatch_reason)}</div>' if s.redispatch_reason else ""
        rows.append(
            f'<tr class="slot" id="{_slot_id(sid, s.sk)}" data-agent="{escape(slot_label(s))}" '
            f'data-status="{escape(s.status)}"><td>{escape(slot_label(s))}</td>'
            f'<td>{_status(s.status)}</td><td>{escape(str(s.attempts or ""))}</td>'
            f'<td class="mono">{escape(s.dispatch_id)}</td><td class="mono">'
            f'{escape(s.agent_identity)}</td><td>{escape(s.trigger)}</td>'
            f'<td class="{"error" if s.status == Status.FAILED else "why"}">'
            f'{escape(why)}{again}{links}</td></tr>')
    return ('<table class="slots"><thead><tr><th>agent</th><th>status</th><th>attempts</th><th>dispatch</th>'
            '<th>agent identity</th><th>trigger</th><th>why</th></tr></thead><tbody>'
            + "".join(rows) + "</tbody></table>")


def _steps_table(session: dict[str, Any]) -> str:
    sid = session["room_sid"]
    slot_ids = {s.sk: _slot_id(sid, s.sk) for s in session["slots"]}
    rows = []
    for index, step in enumerate(session["steps"]):
        what = escape(step["what"])
        if step.get("slot") in slot_ids:
            what = f'<a href="#{slot_ids[step["slot"]]}">{what}</a>'
        decision = step.get("decision") or {}
        if step["kind"] == "event":
            detail = escape(decision.get("reason", ""))
            if decision.get("error"):
                detail += f'<div class="error">{escape(decision["error"])}</div>'
            for rejected in decision.get("rejected", []):
                detail += (f'<div class="why">rejected {escape(rejected["slot"].removeprefix("DISPATCH#"))}: '
                           f'{escape(rejected["reason"])}</div>')
        else:
            detail = (f'<span class="{"error" if step.get("status") == Status.FAILED else "why"}">'
                      f'{escape(step["detail"])}</span>')
        rows.append(f'<tr class="step" id="{_step_id(sid, index)}" data-what="{escape(step["what"])}">'
                    f'<td class="time" title="{escape(step["at"])}">{escape(clock(step["at"]))}</td><td>{what}</td>'
                    f'<td>{detail}</td><td>{_answers(step)}</td></tr>')
    return ('<table class="steps"><thead><tr><th>at (UTC)</th><th>what</th><th>decision, reason</th>'
            "<th>what came of it (LiveKit's answers)</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
