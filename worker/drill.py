"""Local mode: a scripted radio drill between two agents, fully offline.

Each agent publishes a microphone track that espeak-ng speaks into, listens to
its counterpart's microphone through Silero VAD, and says its next line when
it hears the counterpart's speech end. The initiator opens once the
counterpart reports that it is listening. Progress is published as
participant attributes (see presence.py) and each line as a transcription.

No AgentSession here: without an LLM or STT, its turn machinery has nothing
to drive, and the drill needs exactly two things it does not expose simply:
hearing another agent, and one line per heard utterance.

Over ~300 lines: the microphone, the ears and the turn-taking are one
protocol between two agents, and their timings (VAD silences, frame sizes,
the radio-style keying) only make sense read together.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any, Final

from livekit import rtc
from livekit.agents import tts as agents_tts
from livekit.agents import vad as agents_vad
from livekit.agents.types import (
    ATTRIBUTE_AGENT_STATE,
    ATTRIBUTE_TRANSCRIPTION_FINAL,
    ATTRIBUTE_TRANSCRIPTION_SEGMENT_ID,
    ATTRIBUTE_TRANSCRIPTION_TRACK_ID,
)
from livekit.agents.utils.aio import cancel_and_wait
from livekit.agents.utils.audio import AudioByteStream

from .identity import ROLE_ATTRIBUTE
from .persona import Persona
from .presence import (
    COUNTERPART_ATTRIBUTE,
    HEARD_ATTRIBUTE,
    SAID_ATTRIBUTE,
    STATE_ATTRIBUTE,
    DrillState,
    wait_for_counterpart,
    wait_for_state,
)

log = logging.getLogger("switchboard.worker")

# espeak-ng pauses about half a second between sentences; a shorter silence
# would split one line into two turns and make the other side answer twice.
VAD_MIN_SILENCE_SECONDS = 0.8
VAD_SAMPLE_RATE: Final = 16000  # one of the two rates Silero takes
MIC_SAMPLE_RATE = 48000
MIC_FRAME_MS = 10  # an unqueued source takes exactly 10 ms a frame
# After each line: what the listener's VAD needs to call the speech ended, and a margin.
TRAILING_SILENCE_FRAMES = int((VAD_MIN_SILENCE_SECONDS + 0.7) * 1000) // MIC_FRAME_MS
# The counterpart's audio as it reaches the VAD, which takes any frame size: every frame is
# one FFI event, delivered (see Microphone) to every subscriber in the process.
LISTEN_FRAME_MS = 50
TRANSCRIPTION_TOPIC = "lk.transcription"


def load_vad() -> agents_vad.VAD:
    from livekit.plugins import silero

    return silero.VAD.load(min_silence_duration=VAD_MIN_SILENCE_SECONDS, sample_rate=VAD_SAMPLE_RATE)


class Turns:
    """Whose line is next: the initiator opens, then everyone answers each utterance heard."""

    def __init__(self, lines: Iterable[str], speaks_first: bool) -> None:
        self._lines = list(lines)
        self._next = 0
        self.speaks_first = speaks_first

    def opening(self) -> str | None:
        return self._take() if self.speaks_first else None

    def answer(self) -> str | None:
        return self._take()

    @property
    def said(self) -> int:
        return self._next

    @property
    def done(self) -> bool:
        return self._next >= len(self._lines)

    def _take(self) -> str | None:
        if self.done:
            return None
        line = self._lines[self._next]
        self._next += 1
        return line


class Microphone:
    """Our published audio track, keyed like a radio's: on for a line and the silence after
    it (long enough for the listener's VAD to hear the line end), off between lines.

    Off, not a carrier of silence: an unqueued source takes one 10 ms frame per FFI round
    trip, and rtc 1.1.21 fans every FFI event out to every subscriber in the process under
    one lock. A worker of job threads spent most of its CPU there, whether or not anyone
    spoke (one drill room: ~29% of a core per worker; five rooms filled both cores).
    """

    def __init__(self, tts: agents_tts.TTS[Any]) -> None:
        self._tts = tts
        # No queue: _feed paces the frames itself. A queued source has a capture thread
        # (AudioSourceCapture) that rtc 1.1.21 never stops when the server ends the room
        # while the track is published, which is how every job ends: one thread and its
        # buffers stayed behind per job in a worker of job threads. Unqueued, none exists.
        self._source = rtc.AudioSource(MIC_SAMPLE_RATE, 1, queue_size_ms=0)
        self._track = rtc.LocalAudioTrack.create_audio_track("microphone", self._source)
        self._lines: asyncio.Queue[tuple[list[rtc.AudioFrame], asyncio.Future[None]]] = asyncio.Queue()
        self._feeder: asyncio.Task[None] | None = None
        self.track_sid = ""

    async def publish(self, room: rtc.Room) -> None:
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        publication = await room.local_participant.publish_track(self._track, options)
        self.track_sid = publication.sid
        self._feeder = asyncio.create_task(self._feed(), name="microphone-feed")

    async def say(self, text: str) -> float:
        """Speak `text`; returns once it is on the wire, with its duration in seconds."""
        started = time.perf_counter()
        frames = await self._synthesize(text)
        duration = sum(f.duration for f in frames)
        log.info("line synthesized", extra={"chars": len(text), "audio_seconds": round(duration, 2),
                                            "tts_seconds": round(time.perf_counter() - started, 3)})
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._lines.put((frames, done))
        await done
        return duration

    async def _synthesize(self, text: str) -> list[rtc.AudioFrame]:
        resampler: rtc.AudioResampler | None = None
        # An unqueued source takes frames of exactly MIC_FRAME_MS.
        chunks = AudioByteStream(MIC_SAMPLE_RATE, 1, samples_per_channel=MIC_SAMPLE_RATE * MIC_FRAME_MS // 1000)
        frames: list[rtc.AudioFrame] = []
        async with self._tts.synthesize(text) as stream:
            async for audio in stream:
                if resampler is None:
                    resampler = rtc.AudioResampler(audio.frame.sample_rate, MIC_SAMPLE_RATE, num_channels=1)
                for resampled in resampler.push(audio.frame):
                    frames += chunks.write(resampled.data.tobytes())
        if resampler is not None:
            for resampled in resampler.flush():
                frames += chunks.write(resampled.data.tobytes())
        samples = MIC_SAMPLE_RATE * MIC_FRAME_MS // 1000
        for tail in chunks.flush():  # the last one short: padded with silence to a whole frame
            pcm = tail.data.tobytes()
            frames.append(rtc.AudioFrame(pcm + bytes(2 * samples - len(pcm)), MIC_SAMPLE_RATE, 1, samples))
        return frames

    async def _feed(self) -> None:
        samples = MIC_SAMPLE_RATE * MIC_FRAME_MS // 1000
        silence = rtc.AudioFrame(bytes(2 * samples), MIC_SAMPLE_RATE, 1, samples)
        loop = asyncio.get_running_loop()
        due = loop.time()

        async def send(frame: rtc.AudioFrame) -> None:
            # Real time, on a schedule rather than a sleep per frame, so lateness doesn't add up.
            nonlocal due
            await self._source.capture_frame(frame)
            due = max(due + frame.duration, loop.time() - 0.1)
            await asyncio.sleep(max(0.0, due - loop.time()))

        while True:
            frames, done = await self._lines.get()
            due = max(due, loop.time())  # the schedule starts again after a pause
            try:
                for frame in frames:
                    await send(frame)
            finally:
                if not done.done():
                    done.set_result(None)
            # Silence follows straight on, so the listener's VAD hears the line end; a next
            # line queued meanwhile goes on at once.
            for _ in range(TRAILING_SILENCE_FRAMES):
                if not self._lines.empty():
                    break
                await send(silence)

    async def aclose(self) -> None:
        try:
            if self._feeder is not None:
                await cancel_and_wait(self._feeder)
        finally:
            await self._source.aclose()


class Ears:
    """The counterpart's microphone, through Silero VAD."""

    def __init__(self, room: rtc.Room, speaker: rtc.RemoteParticipant, vad: agents_vad.VAD) -> None:
        self._room = room
        self._speaker = speaker
        self._audio = rtc.AudioStream.from_participant(
            participant=speaker, track_source=rtc.TrackSource.SOURCE_MICROPHONE,
            sample_rate=VAD_SAMPLE_RATE, num_channels=1, frame_size_ms=LISTEN_FRAME_MS)
        self._vad_stream = vad.stream()
        self._forward = asyncio.create_task(self._pump(), name="ears-pump")
        # Agents connect without auto-subscribe: subscribe to this one microphone only.
        room.on("track_published", self._subscribe)
        for publication in speaker.track_publications.values():
            self._subscribe(publication, speaker)

    def _subscribe(self, publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant) -> None:
        if (participant.identity == self._speaker.identity
                and publication.source == rtc.TrackSource.SOURCE_MICROPHONE):
            publication.set_subscribed(True)

    async def _pump(self) -> None:
        async for event in self._audio:
            self._vad_stream.push_frame(event.frame)
        self._vad_stream.end_input()

    async def ends_of_speech(self) -> AsyncIterator[agents_vad.VADEvent]:
        async for event in self._vad_stream:
            if event.type is agents_vad.VADEventType.END_OF_SPEECH:
                yield event

    async def aclose(self) -> None:
        self._room.off("track_published", self._subscribe)
        try:
            await cancel_and_wait(self._forward)
        finally:
            await self._audio.aclose()
            await self._vad_stream.aclose()


class Drill:
    def __init__(self, room: rtc.Room, persona: Persona, vad: agents_vad.VAD, tts: agents_tts.TTS[Any]) -> None:
        self._room = room
        self._persona = persona
        self._vad = vad
        self._mic = Microphone(tts)
        self._turns = Turns(persona.script, persona.speaks_first)
        self._heard = 0
        self._attributes = {ROLE_ATTRIBUTE: persona.role}

    async def run(self) -> None:
        """Play this agent's part with each counterpart in turn; runs until cancelled."""
        await self._mic.publish(self._room)
        while True:
            self._turns = Turns(self._persona.script, self._persona.speaks_first)
            self._heard = 0
            await self._show(DrillState.WAITING)
            counterpart = await wait_for_counterpart(self._room, self._persona.role, self._persona.counterpart)
            log.info("counterpart found", extra={"role": self._persona.role, "counterpart": counterpart.identity})
            await self._round(counterpart)
            log.info("counterpart left", extra={"role": self._persona.role, "counterpart": counterpart.identity})

    async def _round(self, counterpart: rtc.RemoteParticipant) -> None:
        """One drill with one counterpart; returns when it leaves the room."""
        left = asyncio.Event()

        def on_left(participant: rtc.RemoteParticipant) -> None:
            if participant.identity == counterpart.identity:
                left.set()

        self._room.on("participant_disconnected", on_left)
        ears = Ears(self._room, counterpart, self._vad)
        try:
            await self._show(DrillState.LISTENING, **{COUNTERPART_ATTRIBUTE: counterpart.identity})
            talk = asyncio.create_task(self._talk(counterpart, ears), name="drill-talk")
            gone = asyncio.create_task(left.wait(), name="drill-counterpart-left")
            try:
                done, _ = await asyncio.wait({talk, gone}, return_when=asyncio.FIRST_COMPLETED)
                if talk in done:
                    talk.result()  # a failure in the drill surfaces here
                await left.wait()  # the script can end before the counterpart leaves
            finally:
                # Never `suppress(CancelledError)` around these awaits: the job ending (a cancel
                # of this task) often arrives right here, as the room's deletion also makes the
                # counterpart leave, and swallowed it would leave the drill waiting for the next
                # counterpart forever, its job holding a place in the worker. cancel_and_wait
                # lets the caller's own cancel through.
                await cancel_and_wait(talk, gone)
        finally:
            self._room.off("participant_disconnected", on_left)
            await ears.aclose()

    async def _talk(self, counterpart: rtc.RemoteParticipant, ears: Ears) -> None:
        if (line := self._turns.opening()) is not None:
            await wait_for_state(self._room, counterpart.identity,
                                 {DrillState.LISTENING, DrillState.SPEAKING, DrillState.DONE})
            await self._say(line)
        async for event in ears.ends_of_speech():
            self._heard += 1
            log.info("heard the counterpart", extra={"role": self._persona.role, "heard": self._heard,
                                                     "speech_seconds": round(event.speech_duration, 2)})
            await self._show(self._idle_state())
            if (line := self._turns.answer()) is not None:
                await self._say(line)

    async def _say(self, line: str) -> None:
        await self._show(DrillState.SPEAKING)
        await self._caption(line)
        await self._mic.say(line)
        log.info("line said", extra={"role": self._persona.role, "said": self._turns.said})
        await self._show(self._idle_state())

    def _idle_state(self) -> DrillState:
        return DrillState.DONE if self._turns.done else DrillState.LISTENING

    async def _show(self, state: DrillState, **extra: str) -> None:
        # The whole set every time: nothing depends on how the server merges updates.
        self._attributes.update(extra)
        self._attributes.update({
            STATE_ATTRIBUTE: str(state), SAID_ATTRIBUTE: str(self._turns.said), HEARD_ATTRIBUTE: str(self._heard),
            ATTRIBUTE_AGENT_STATE: "speaking" if state is DrillState.SPEAKING else "listening"})
        await self._room.local_participant.set_attributes(dict(self._attributes))

    async def _caption(self, line: str) -> None:
        """The line as a final transcription, the way LiveKit frontends show captions."""
        try:
            await self._room.local_participant.send_text(line, topic=TRANSCRIPTION_TOPIC, attributes={
                ATTRIBUTE_TRANSCRIPTION_FINAL: "true",
                ATTRIBUTE_TRANSCRIPTION_SEGMENT_ID: f"{self._persona.role}-{self._turns.said}",
                ATTRIBUTE_TRANSCRIPTION_TRACK_ID: self._mic.track_sid})
        except Exception as exc:  # captions are a courtesy; the drill goes on without them
            log.warning("caption not sent", extra={"error": str(exc)})

    async def aclose(self) -> None:
        await self._mic.aclose()
