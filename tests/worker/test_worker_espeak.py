"""espeak-ng behind the livekit-agents TTS interface, and the WAV it writes to a pipe."""

from __future__ import annotations

import shutil
import struct

import numpy as np
import pytest
from livekit.agents import APIConnectionError

from worker.espeak import (
    DEFAULT_ESPEAK_VOICE,
    ESPEAK_SAMPLE_RATE,
    EspeakTTS,
    WavError,
    decode_wav,
    espeak_voice,
)

pytestmark = pytest.mark.anyio


def wav(pcm: bytes, *, rate: int = 22050, channels: int = 1, bits: int = 16, fmt: int = 1,
        data_size: int | None = None, extra_chunk: bytes = b"") -> bytes:
    fmt_chunk = b"fmt " + struct.pack("<IHHIIHH", 16, fmt, channels, rate, rate * channels * bits // 8,
                                      channels * bits // 8, bits)
    data = b"data" + struct.pack("<I", len(pcm) if data_size is None else data_size) + pcm
    body = b"WAVE" + fmt_chunk + extra_chunk + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_a_plain_wav_decodes_to_its_pcm():
    pcm = np.arange(100, dtype=np.int16).tobytes()
    decoded = decode_wav(wav(pcm, rate=16000))
    assert (decoded.sample_rate, decoded.num_channels, decoded.pcm) == (16000, 1, pcm)


def test_a_streamed_wav_runs_to_the_end_whatever_its_placeholder_size_says():
    pcm = np.ones(1000, dtype=np.int16).tobytes()
    decoded = decode_wav(wav(pcm, data_size=0x7FFFF000))
    assert decoded.pcm == pcm


def test_unknown_chunks_before_the_data_are_skipped_and_odd_sizes_padded():
    pcm = np.ones(10, dtype=np.int16).tobytes()
    decoded = decode_wav(wav(pcm, extra_chunk=b"LIST" + struct.pack("<I", 3) + b"abc\x00"))
    assert decoded.pcm == pcm


def test_a_trailing_half_sample_is_dropped():
    pcm = np.ones(10, dtype=np.int16).tobytes()
    assert decode_wav(wav(pcm + b"\x01", data_size=0x7FFFF000)).pcm == pcm


@pytest.mark.parametrize("data, message", [
    (b"", "not a RIFF"),
    (b"RIFF\x00\x00\x00\x00AVI ", "not a RIFF"),
    (wav(b"\x00\x00", bits=8), "unsupported"),
    (wav(b"\x00\x00", fmt=3), "unsupported"),
    (b"RIFF\x04\x00\x00\x00WAVE", "no data chunk"),
])
def test_what_is_not_16_bit_pcm_wav_is_refused(data, message):
    with pytest.raises(WavError, match=message):
        decode_wav(data)


def test_openai_voices_map_to_distinct_espeak_voices():
    assert espeak_voice("alloy") != espeak_voice("echo")
    assert espeak_voice("no-such-voice") == DEFAULT_ESPEAK_VOICE


async def test_espeak_speaks_a_line_as_audible_frames():
    assert shutil.which("espeak-ng"), "espeak-ng is missing: `make tools` (apt-get install espeak-ng) installs it"
    tts = EspeakTTS(voice=espeak_voice("alloy"))
    frames = [event.frame async for event in tts.synthesize("Driver, this is dispatch. Over.")]
    assert frames and all(f.sample_rate == ESPEAK_SAMPLE_RATE and f.num_channels == 1 for f in frames)
    samples = np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in frames]).astype(np.float64)
    assert 1.0 < len(samples) / ESPEAK_SAMPLE_RATE < 10.0  # a short sentence
    assert np.sqrt(np.mean(samples ** 2)) > 500  # speech, not silence


async def test_a_line_starting_with_a_dash_is_spoken_not_parsed_as_an_option():
    tts = EspeakTTS()
    frames = [event.frame async for event in tts.synthesize("-v nonsense --help")]
    assert sum(f.samples_per_channel for f in frames) > ESPEAK_SAMPLE_RATE // 2


async def test_a_missing_binary_is_a_connection_error_not_a_hang():
    tts = EspeakTTS(binary="/nonexistent/espeak-ng")
    with pytest.raises(APIConnectionError, match="cannot run"):
        await tts.synthesize("hello").collect()
