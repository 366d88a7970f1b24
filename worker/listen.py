"""A plain room participant that hears the agents: what a frontend would hear.

Used by the demo (who spoke when) and the end-to-end test (both agents are
audible). It measures loudness on the decoded audio, so it proves the sound
made it through the SFU, not just that a track exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import numpy as np
from livekit import api, rtc

from .drill import TRANSCRIPTION_TOPIC

LISTEN_SAMPLE_RATE = 16000
# int16 RMS; digital silence is 0, espeak speech measures in the thousands.
AUDIBLE_RMS = 300.0
# A gap shorter than this inside one line does not end the utterance.
UTTERANCE_GAP_SECONDS = 0.6


@dataclass
class Utterance:
    identity: str
    start: float  # seconds since the listener joined
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class Caption:
    at: float
    identity: str
    text: str


@dataclass
class _Track:
    loudest: float = 0.0
    speaking_since: float | None = None
    last_loud: float = 0.0


@dataclass
class Listener:
    identity: str = "listener"
    room: rtc.Room = field(default_factory=rtc.Room)
    utterances: list[Utterance] = field(default_factory=list)
    captions: list[Caption] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._tracks: dict[str, _Track] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._t0 = time.monotonic()

    def token(self, room_name: str, api_key: str, api_secret: str) -> str:
        return (api.AccessToken(api_key, api_secret).with_identity(self.identity).with_name("Listener")
                .with_grants(api.VideoGrants(room_join=True, room=room_name, can_publish=False,
                                             can_publish_data=False, can_subscribe=True))
                .to_jwt())

    async def join(self, url: str, room_name: str, api_key: str, api_secret: str) -> None:
        self.room.on("track_subscribed", self._on_track)
        self.room.register_text_stream_handler(TRANSCRIPTION_TOPIC, self._on_caption)
        await self.room.connect(url, self.token(room_name, api_key, api_secret))
        self._t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self._t0

    def loudest(self, identity: str) -> float:
        """The highest frame RMS heard from `identity` (0 if nothing was heard)."""
        track = self._tracks.get(identity)
        return track.loudest if track else 0.0

    def audible(self, identity: str) -> bool:
        return self.loudest(identity) >= AUDIBLE_RMS

    def _on_track(self, track: rtc.Track, _pub: rtc.RemoteTrackPublication,
                  participant: rtc.RemoteParticipant) -> None:
        if track.kind != rtc.TrackKind.KIND_AUDIO:
            return
        task = asyncio.create_task(self._hear(track, participant.identity))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _hear(self, track: rtc.Track, identity: str) -> None:
        state = self._tracks.setdefault(identity, _Track())
        stream = rtc.AudioStream(track, sample_rate=LISTEN_SAMPLE_RATE, num_channels=1)
        try:
            async for event in stream:
                samples = np.frombuffer(event.frame.data, dtype=np.int16)
                if samples.size == 0:
                    continue
                rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
                self._observe(identity, state, rms, self.now())
        finally:
            self._close_utterance(identity, state)
            await stream.aclose()

    def _observe(self, identity: str, state: _Track, rms: float, now: float) -> None:
        state.loudest = max(state.loudest, rms)
        if rms >= AUDIBLE_RMS:
            if state.speaking_since is None:
                state.speaking_since = now
            state.last_loud = now
        elif state.speaking_since is not None and now - state.last_loud > UTTERANCE_GAP_SECONDS:
            self._close_utterance(identity, state)

    def _close_utterance(self, identity: str, state: _Track) -> None:
        if state.speaking_since is not None:
            self.utterances.append(Utterance(identity, state.speaking_since, state.last_loud))
            state.speaking_since = None

    def _on_caption(self, reader: rtc.TextStreamReader, identity: str) -> None:
        async def read() -> None:
            self.captions.append(Caption(self.now(), identity, await reader.read_all()))

        task = asyncio.create_task(read())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        await self.room.disconnect()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
