"""espeak-ng behind livekit-agents' TTS interface: the offline voice of local mode.

Robotic, but it is real speech (Silero hears it as such), it needs no network
and no key, and it is one Debian package.
"""

from __future__ import annotations

import asyncio
import shutil
import struct
from dataclasses import dataclass
from typing import Never

from livekit.agents import APIConnectionError, APIConnectOptions, APITimeoutError, tts, utils
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS

ESPEAK_SAMPLE_RATE = 22050

# The personas name OpenAI voices; locally each maps to a distinct espeak-ng
# voice so a listener can still tell the two agents apart.
ESPEAK_VOICES: dict[str, str] = {
    "alloy": "en-us+m3",
    "echo": "en-gb+m1",
    "shimmer": "en-us+f2",
    "nova": "en-us+f3",
    "fable": "en-gb-x-rp+m4",
    "onyx": "en-us+m7",
}
DEFAULT_ESPEAK_VOICE = "en-us"


def espeak_voice(voice: str) -> str:
    return ESPEAK_VOICES.get(voice, DEFAULT_ESPEAK_VOICE)


@dataclass(frozen=True)
class Wav:
    sample_rate: int
    num_channels: int
    pcm: bytes  # 16-bit little-endian


class WavError(ValueError):
    pass


def decode_wav(data: bytes) -> Wav:
    """The 16-bit PCM in a RIFF/WAVE file, including espeak-ng's streamed ones.

    espeak-ng writes to a pipe before it knows the length, so its RIFF and data
    sizes are placeholders (0x7ffff000-ish): the data chunk runs to the end of
    the input, whatever its header says.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise WavError("not a RIFF/WAVE file")
    offset = 12
    fmt: tuple[int, int, int, int] | None = None
    while offset + 8 <= len(data):
        chunk_id = data[offset:offset + 4]
        (size,) = struct.unpack_from("<I", data, offset + 4)
        body = offset + 8
        if chunk_id == b"fmt ":
            if size < 16 or body + 16 > len(data):
                raise WavError("truncated fmt chunk")
            audio_format, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, body)
            fmt = (audio_format, channels, rate, bits)
        elif chunk_id == b"data":
            if fmt is None:
                raise WavError("data chunk before fmt chunk")
            audio_format, channels, rate, bits = fmt
            if audio_format != 1 or bits != 16 or channels < 1:
                raise WavError(f"unsupported WAV: format {audio_format}, {bits} bits, {channels} channels")
            pcm = data[body:body + size] if body + size <= len(data) else data[body:]
            frame_bytes = 2 * channels
            return Wav(rate, channels, pcm[:len(pcm) - len(pcm) % frame_bytes])
        offset = body + size + (size & 1)
    raise WavError("no data chunk")


class EspeakTTS(tts.TTS[Never]):  # no events beyond the base's
    def __init__(self, *, voice: str = DEFAULT_ESPEAK_VOICE, words_per_minute: int = 165,
                 binary: str = "espeak-ng") -> None:
        super().__init__(capabilities=tts.TTSCapabilities(streaming=False),
                         sample_rate=ESPEAK_SAMPLE_RATE, num_channels=1)
        self.voice = voice
        self.words_per_minute = words_per_minute
        self.binary = binary

    @property
    def model(self) -> str:
        return "espeak-ng"

    @property
    def provider(self) -> str:
        return "local"

    def available(self) -> bool:
        return shutil.which(self.binary) is not None

    def synthesize(self, text: str, *,
                   conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS) -> tts.ChunkedStream:
        return _EspeakStream(tts=self, input_text=text, conn_options=conn_options)


class _EspeakStream(tts.ChunkedStream):
    def __init__(self, *, tts: EspeakTTS, input_text: str, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._espeak = tts

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        argv = [self._espeak.binary, "--stdout", "--stdin", "-v", self._espeak.voice,
                "-s", str(self._espeak.words_per_minute)]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
        except OSError as exc:
            # Not retryable: a missing binary stays missing.
            raise APIConnectionError(f"cannot run {self._espeak.binary}: {exc}", retryable=False) from exc
        try:
            # Text goes in on stdin, never argv: a line starting with "-" stays text.
            stdout, stderr = await asyncio.wait_for(proc.communicate(self.input_text.encode()),
                                                    self._conn_options.timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise APITimeoutError(f"espeak-ng took over {self._conn_options.timeout:g} s") from None
        if proc.returncode != 0:
            raise APIConnectionError(
                f"espeak-ng exited with {proc.returncode}: {stderr.decode(errors='replace')[:200]}",
                retryable=False)
        try:
            wav = decode_wav(stdout)
        except WavError as exc:
            raise APIConnectionError(f"espeak-ng wrote no usable WAV: {exc}", retryable=False) from exc
        output_emitter.initialize(request_id=utils.shortuuid("espeak-"), sample_rate=wav.sample_rate,
                                  num_channels=wav.num_channels, mime_type="audio/pcm")
        output_emitter.push(wav.pcm)
        output_emitter.flush()
