"""Audio as the API sends it: the response formats, whole files, and the pieces of a streamed WAV or PCM response."""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np
import soundfile as sf


@dataclass(frozen=True)
class AudioFormat:
    """Attributes:
        name: the ``response_format`` value. media_type: the response's Content-Type.
        container, subtype: soundfile's names (``None`` container: raw little-endian 16-bit samples).
        streams: the response can be sent sentence by sentence (``stream: true``).
    """

    name: str
    media_type: str
    container: Optional[str]
    subtype: Optional[str]
    streams: bool = False


# The OpenAI API's formats but aac (libsndfile has no AAC encoder). mp3 and opus need libsndfile 1.1 or later, which
# the soundfile wheels bundle; they are offered only where the installed one writes them.
_ALL = [AudioFormat("wav", "audio/wav", "WAV", "PCM_16", streams=True),
        AudioFormat("pcm", "audio/pcm", None, None, streams=True),
        AudioFormat("flac", "audio/flac", "FLAC", "PCM_16"),
        AudioFormat("mp3", "audio/mpeg", "MP3", "MPEG_LAYER_III"),
        AudioFormat("opus", "audio/ogg", "OGG", "OPUS")]
FORMATS: Dict[str, AudioFormat] = {f.name: f for f in _ALL
                                   if f.container is None or sf.check_format(f.container, f.subtype)}


def pcm16(wav: np.ndarray) -> bytes:
    """``[L]`` float samples as little-endian 16-bit PCM (clipped to [-1, 1])."""
    return (np.clip(wav, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


def encode(wav: np.ndarray, sample_rate: int, fmt: AudioFormat) -> bytes:
    """A whole response body: ``[L]`` float samples in ``fmt``."""
    if fmt.container is None:
        return pcm16(wav)
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(wav, -1.0, 1.0), sample_rate, format=fmt.container, subtype=fmt.subtype)
    return buffer.getvalue()


UNKNOWN_SIZE = 0xFFFFFFFF  # what streaming WAV writers put in the size fields; players read to the end of the data


def wav_stream_header(sample_rate: int) -> bytes:
    """The 44-byte header of a mono 16-bit WAV whose length is not known yet (its size fields say ``UNKNOWN_SIZE``);
    the samples follow as ``pcm16`` pieces."""
    return (b"RIFF" + struct.pack("<I", UNKNOWN_SIZE) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, 2 * sample_rate, 2, 16)
            + b"data" + struct.pack("<I", UNKNOWN_SIZE))
