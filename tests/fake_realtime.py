"""A local websocket server that speaks just enough of OpenAI's realtime protocol (GA events).

It accepts sessions at /v1/realtime, keeps every client event it receives per connection, and
answers each `response.create` with one spoken response: a second of a 440 Hz tone as
`response.output_audio.delta` events, framed by the events livekit-plugins-openai needs to
turn them into an assistant message. It never models speech, turn detection or tools.

Tests drive its failures: `drop(voice)` closes that persona's open connections mid-session
(a dropped model connection), `refuse(api_key)` answers the next handshakes made with that
key with HTTP 503 (the model unreachable). A session is told apart by the voice of its
session.update; a handshake, which comes before any, by its key.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

SAMPLE_RATE = 24000  # the realtime API's PCM16 rate, as the plugin expects it
TONE_HZ = 440
TONE_SECONDS = 1.0
CHUNK_SECONDS = 0.1


def tone_chunks() -> list[str]:
    """TONE_SECONDS of a sine at half scale, as base64 PCM16 chunks of CHUNK_SECONDS."""
    per_chunk = int(SAMPLE_RATE * CHUNK_SECONDS)
    chunks = []
    for start in range(0, int(SAMPLE_RATE * TONE_SECONDS), per_chunk):
        samples = (int(16000 * math.sin(2 * math.pi * TONE_HZ * (start + i) / SAMPLE_RATE)) for i in range(per_chunk))
        chunks.append(base64.b64encode(struct.pack(f"<{per_chunk}h", *samples)).decode())
    return chunks


@dataclass
class Connection:
    number: int
    path: str
    query: dict[str, str]
    api_key: str
    events: list[dict[str, Any]] = field(default_factory=list)
    ws: web.WebSocketResponse | None = None
    closed: bool = False

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == kind]

    @property
    def session(self) -> dict[str, Any]:
        """The session as the latest session.update left it (later updates merge over earlier ones)."""
        merged: dict[str, Any] = {}
        for event in self.of_type("session.update"):
            _merge(merged, event.get("session") or {})
        return merged

    @property
    def voice(self) -> str | None:
        return ((self.session.get("audio") or {}).get("output") or {}).get("voice")


def _merge(into: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


class FakeRealtime:
    def __init__(self) -> None:
        self.connections: list[Connection] = []
        self.refused: dict[str, int] = {}  # api key -> refused handshakes
        self._refuse: set[str] = set()
        self._numbers = itertools.count(1)
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._tone = tone_chunks()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> FakeRealtime:
        app = web.Application()
        app.add_routes([web.get("/v1/realtime", self._accept)])
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def of_voice(self, voice: str) -> list[Connection]:
        return [c for c in self.connections if c.voice == voice]

    async def drop(self, voice: str) -> int:
        """Close every open connection of that persona, as a lost network path would; how many were open."""
        dropped = 0
        for connection in self.of_voice(voice):
            if connection.ws is not None and not connection.closed:
                await connection.ws.close(code=1011, message=b"fake upstream lost")
                dropped += 1
        return dropped

    def refuse(self, api_key: str) -> None:
        self._refuse.add(api_key)

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids)}"

    async def _accept(self, request: web.Request) -> web.StreamResponse:
        key = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if key in self._refuse:
            self.refused[key] = self.refused.get(key, 0) + 1
            return web.Response(status=503, text="fake upstream unavailable")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        connection = Connection(next(self._numbers), request.path, dict(request.query), key, ws=ws)
        self.connections.append(connection)
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    event = json.loads(message.data)
                    connection.events.append(event)
                    await self._answer(ws, event)
        finally:
            connection.closed = True
        return ws

    async def _answer(self, ws: web.WebSocketResponse, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "session.update":
            await ws.send_json({"type": "session.updated", "event_id": self._next_id("event"),
                                "session": event.get("session") or {}})
        elif kind == "conversation.item.create":
            item = dict(event.get("item") or {})
            item.setdefault("id", self._next_id("item"))
            await ws.send_json({"type": "conversation.item.added", "event_id": self._next_id("event"),
                                "previous_item_id": event.get("previous_item_id"), "item": item})
        elif kind == "response.create":
            await self._speak(ws, (event.get("response") or {}).get("metadata"))

    async def _speak(self, ws: web.WebSocketResponse, metadata: Any) -> None:
        response_id, item_id = self._next_id("resp"), self._next_id("item")
        item = {"id": item_id, "object": "realtime.item", "type": "message", "role": "assistant",
                "status": "in_progress", "content": []}
        common = {"response_id": response_id, "item_id": item_id, "output_index": 0, "content_index": 0}
        await ws.send_json({"type": "response.created", "event_id": self._next_id("event"),
                            "response": {"id": response_id, "object": "realtime.response", "status": "in_progress",
                                         "metadata": metadata, "output": []}})
        await ws.send_json({"type": "response.output_item.added", "event_id": self._next_id("event"),
                            "response_id": response_id, "output_index": 0, "item": item})
        await ws.send_json({"type": "conversation.item.added", "event_id": self._next_id("event"),
                            "previous_item_id": None, "item": item})
        await ws.send_json({"type": "response.content_part.added", "event_id": self._next_id("event"), **common,
                            "part": {"type": "audio", "transcript": ""}})
        for chunk in self._tone:
            await ws.send_json({"type": "response.output_audio.delta", "event_id": self._next_id("event"),
                                **common, "delta": chunk})
            await asyncio.sleep(CHUNK_SECONDS / 2)  # faster than real time, as the real service sends
        await ws.send_json({"type": "response.output_audio_transcript.done", "event_id": self._next_id("event"),
                            **common, "transcript": "a tone"})
        await ws.send_json({"type": "response.output_audio.done", "event_id": self._next_id("event"), **common})
        done_item = {**item, "status": "completed", "content": [{"type": "output_audio", "transcript": "a tone"}]}
        await ws.send_json({"type": "response.output_item.done", "event_id": self._next_id("event"),
                            "response_id": response_id, "output_index": 0, "item": done_item})
        await ws.send_json({"type": "response.done", "event_id": self._next_id("event"),
                            "response": {"id": response_id, "object": "realtime.response", "status": "completed",
                                         "metadata": metadata, "output": [done_item],
                                         "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}}})
