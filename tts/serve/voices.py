"""Voices: the built-in example prompts and the uploaded ones, stored atomically so that they survive a restart.

An uploaded voice is two files in the voices folder: ``ID.wav`` (the prompt as it is used: 24 kHz mono, leading
silence cut, at most ``MAX_PROMPT_SECONDS``) and ``ID.json`` (its name and transcript). The JSON is written last, with
one rename, so a voice exists exactly when its JSON does; a WAV without one is what an interrupted upload left, and is
removed at the next start.
"""

from __future__ import annotations

import io
import json
import logging
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import soundfile as sf
import torch

from toolkit.audio import resample, save_audio
from toolkit.files import atomic_path
from tts.serve.config import ApiError
from tts.synthesizer import MIN_PROMPT_SECONDS, SynthesisError, speech_start

log = logging.getLogger("tts.serve")

VOICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # no dot, no slash: an id never leaves its folder
MAX_PROMPT_SECONDS = 10.0  # longer prompts only slow every request down; 3-10 s is what zero-shot models use
MAX_VOICES = 1000  # uploaded ones; bounds the disk a client can fill


@dataclass(frozen=True)
class Voice:
    """Attributes:
        id: what requests name it by. name: a label for people. transcript: what the prompt says ("" if unknown).
        seconds: length of the prompt. builtin: shipped with the package (cannot be deleted). audio: its file.
    """

    id: str
    name: str
    transcript: str
    seconds: float
    builtin: bool
    audio: Path

    def public(self) -> Dict[str, object]:
        """The voice as the API lists it."""
        return {"id": self.id, "object": "voice", "name": self.name, "transcript": self.transcript,
                "seconds": round(self.seconds, 2), "builtin": self.builtin}


def check_voice_id(voice_id: object, param: str = "voice") -> str:
    """``voice_id`` if it has the form of an id, else a 400: ids that could name another folder never reach a path."""
    if not isinstance(voice_id, str) or not VOICE_ID.fullmatch(voice_id):
        raise ApiError(400, f"{param} {str(voice_id)[:80]!r} is not a voice id (letters, digits, '_' and '-', at "
                            f"most 64)", param)
    return voice_id


def read_prompt_upload(data: bytes, sample_rate: int, has_transcript: bool) -> np.ndarray:
    """An uploaded prompt as it will be used: ``[L]`` float32 at ``sample_rate``, mono, leading silence cut.

    Raises ``ApiError``: 415 for bytes that are not audio, 400 for audio that is empty, silent, under
    ``MIN_PROMPT_SECONDS`` of speech, or (with a transcript, which must cover all of it) over ``MAX_PROMPT_SECONDS``.
    Without a transcript a longer prompt is cut to ``MAX_PROMPT_SECONDS``.
    """
    if not data:
        raise ApiError(400, "the uploaded file is empty", "file")
    try:
        audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        raise ApiError(415, "the uploaded file is not audio this server can read (WAV, FLAC, OGG, MP3, ...)",
                       "file") from None
    if audio.shape[0] == 0 or not np.isfinite(audio).all():
        raise ApiError(400, "the uploaded audio is empty or holds NaN/infinite samples", "file")
    wav = resample(audio.mean(axis=1), rate, sample_rate)
    try:
        start = speech_start(torch.from_numpy(wav), sample_rate)
    except SynthesisError:
        raise ApiError(400, "the uploaded audio is silent", "file") from None
    wav = wav[start:]
    seconds = wav.size / sample_rate
    if seconds < MIN_PROMPT_SECONDS:
        raise ApiError(400, f"the uploaded audio has {seconds:.2f} s of speech; at least {MIN_PROMPT_SECONDS:g} s is "
                            f"needed (3-10 s recommended)", "file")
    if seconds > MAX_PROMPT_SECONDS:
        if has_transcript:
            raise ApiError(400, f"the uploaded audio has {seconds:.1f} s of speech; a voice uses at most "
                                f"{MAX_PROMPT_SECONDS:g} s and the transcript must be of all of it: upload a shorter "
                                f"clip", "file")
        wav = wav[: int(MAX_PROMPT_SECONDS * sample_rate)]
    return np.ascontiguousarray(wav, dtype=np.float32)


class VoiceStore:
    """The voices a server offers: built-in ones from a folder of ``NAME.wav`` + ``NAME.txt``, uploaded ones in
    ``folder``. Thread-safe.

    Args:
        folder: where uploads are kept (created when missing).
        builtin: the example prompts' folder, or ``None``.
        sample_rate: the rate uploads are stored at (the codec's).
    """

    def __init__(self, folder: Path, builtin: Optional[Path], sample_rate: int):
        self.folder = Path(folder)
        self.sample_rate = sample_rate
        self._lock = threading.Lock()
        self.folder.mkdir(parents=True, exist_ok=True)
        self._voices: Dict[str, Voice] = {}
        for wav in sorted(builtin.glob("*.wav")) if builtin is not None and builtin.is_dir() else []:
            text = wav.with_suffix(".txt")
            if VOICE_ID.fullmatch(wav.stem) and text.is_file():
                self._voices[wav.stem] = Voice(wav.stem, wav.stem, text.read_text(encoding="utf-8").strip(),
                                               sf.info(str(wav)).duration, True, wav)
        for meta in sorted(self.folder.glob("*.json")):
            voice = self._load(meta)
            if voice is not None and voice.id not in self._voices:
                self._voices[voice.id] = voice
        for wav in self.folder.glob("*.wav"):
            if not wav.with_suffix(".json").exists():
                wav.unlink(missing_ok=True)  # an upload interrupted between its two writes
                log.info("removed %s: an interrupted upload", wav.name)

    def _load(self, meta: Path) -> Optional[Voice]:
        try:
            info = json.loads(meta.read_text(encoding="utf-8"))
            voice = Voice(info["id"], info["name"], info["transcript"], float(info["seconds"]), False,
                          meta.with_suffix(".wav"))
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("skipped voice %s: %s", meta.name, err)
            return None
        if voice.id != meta.stem or not voice.audio.is_file():
            log.warning("skipped voice %s: its id or audio does not match the file", meta.name)
            return None
        return voice

    def list(self) -> List[Voice]:
        with self._lock:
            return sorted(self._voices.values(), key=lambda v: (not v.builtin, v.id))

    def get(self, voice_id: object, param: str = "voice") -> Voice:
        """The voice ``voice_id``; 400 for an id of the wrong form, 404 for one not here."""
        voice_id = check_voice_id(voice_id, param)
        with self._lock:
            voice = self._voices.get(voice_id)
        if voice is None:
            raise ApiError(404, f"no voice {voice_id!r} (GET /v1/voices lists them)", param)
        return voice

    def add(self, wav: np.ndarray, transcript: str, name: str) -> Voice:
        """Store an uploaded prompt (as ``read_prompt_upload`` returns it); returns the new voice."""
        with self._lock:
            if sum(not v.builtin for v in self._voices.values()) >= MAX_VOICES:
                raise ApiError(409, f"this server keeps at most {MAX_VOICES} uploaded voices; delete some first")
            voice_id = "v-" + secrets.token_hex(6)
            while voice_id in self._voices:
                voice_id = "v-" + secrets.token_hex(6)
            voice = Voice(voice_id, name or voice_id, transcript, wav.size / self.sample_rate, False,
                          self.folder / f"{voice_id}.wav")
            save_audio(voice.audio, wav, self.sample_rate)  # atomic
            info = {k: v for k, v in asdict(voice).items() if k not in ("builtin", "audio")}
            with atomic_path(self.folder / f"{voice_id}.json") as tmp:
                tmp.write_text(json.dumps({**info, "created": time.time()}, indent=1) + "\n", encoding="utf-8")
            self._voices[voice_id] = voice
        return voice

    def delete(self, voice_id: object) -> Voice:
        """Remove an uploaded voice (the JSON first: a crash in between leaves an orphan WAV, never a broken voice);
        403 for a built-in one."""
        voice = self.get(voice_id, "voice_id")
        if voice.builtin:
            raise ApiError(403, f"{voice.id!r} is a built-in voice and cannot be deleted", "voice_id")
        with self._lock:
            self._voices.pop(voice.id, None)
            (self.folder / f"{voice.id}.json").unlink(missing_ok=True)
            voice.audio.unlink(missing_ok=True)
        return voice
