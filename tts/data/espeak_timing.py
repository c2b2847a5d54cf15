"""Exact phoneme timings of espeak-ng speech: synthesis through the espeak-ng library with its phoneme events.

The synthetic speakers of the mini corpus are espeak-ng voices. When espeak-ng synthesizes, it knows where every
phoneme starts; the library reports that as ``espeakEVENT_PHONEME`` events (with IPA names when initialized for them),
each with the position of the phoneme in the audio it produced. ``EspeakVoice.synthesize`` returns the audio together
with those events, and ``frame_durations`` turns them into frame counts per token of the text frontend's phoneme
sequence, checked against it.

Hand-rolled with ctypes rather than through a library: phonemizer (which loads the same shared library) exposes only
text-to-phonemes, and the espeak-ng command line writes audio but not phoneme positions. Like phonemizer, we load a
private copy of the library so that its global state (voice, rate, callback) cannot disturb the phonemizer's.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import difflib
import math
import multiprocessing
import re
import shutil
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from tts.text.phonemize import STRESS, is_phone

# speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_PHONEME_IPA = 0x0002
_INITIALIZE_DONT_EXIT = 0x8000
_EVENT_LIST_TERMINATED, _EVENT_PHONEME = 0, 7
_RATE, _PITCH = 1, 3
_CHARS_AUTO, _PHONEMES, _ENDPAUSE = 0, 0x100, 0x1000  # the flags the espeak-ng command line synthesizes with
_POS_CHARACTER = 1


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _EventId)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Synthesis:
    """What espeak-ng said: ``audio`` (int16 at ``sample_rate``) and ``phones``, (IPA name, start sample) in order."""

    audio: np.ndarray
    sample_rate: int
    phones: List[Tuple[str, int]]


class _Library:
    """A private copy of libespeak-ng, initialized for synchronous synthesis with IPA phoneme events.

    espeak-ng keeps state from one utterance to the next (what it says after another utterance can be a few samples
    longer or shorter than in a fresh process, as the command line says it), so each utterance gets a fresh copy:
    ``synthesize`` loads one, speaks, and unloads it (27 ms per utterance, synthesis included, measured on
    the mini corpus: 340x real time).
    """

    def __init__(self, path: str, folder: str):
        copy = Path(folder) / Path(path).name
        if not copy.exists():
            shutil.copy(path, copy)
        self.lib = ctypes.CDLL(str(copy), mode=ctypes.RTLD_LOCAL)
        options = _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_PHONEME_IPA | _INITIALIZE_DONT_EXIT
        self.sample_rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, options)
        if self.sample_rate <= 0:
            raise RuntimeError("espeak-ng failed to initialize")
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                          ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        self._chunks: List[np.ndarray] = []
        self._phones: List[Tuple[str, int]] = []
        self._callback = _CALLBACK(self._collect)  # kept referenced: the library calls it
        self.lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, count, events) -> int:
        if count > 0:
            # Copied as bytes: np.ctypeslib.as_array(wav, shape=(count,)) makes a ctypes array type per distinct
            # count, which ctypes caches for good (1.3 KiB a cut in benchmarks/data_scale.py's phonemize stage).
            self._chunks.append(np.frombuffer(ctypes.string_at(wav, count * 2), dtype=np.int16))
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            event = events[i]
            if event.type == _EVENT_PHONEME:
                name = bytes(event.id.string).split(b"\0")[0].decode("utf-8", errors="replace")
                self._phones.append((name, int(event.sample)))
            i += 1
        return 0  # continue synthesis

    def synthesize(self, text: str, voice: str, pitch: int, rate: int) -> Synthesis:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        self.lib.espeak_SetParameter(_RATE, int(rate), 0)
        self.lib.espeak_SetParameter(_PITCH, int(pitch), 0)
        self._chunks, self._phones = [], []
        # Some voices (breathy and Klatt variants) draw noise from libc's rand(), whose state is the process's: seed
        # it as a fresh process starts (srand(1)), where the command line would be.
        _libc().srand(1)
        data = text.encode("utf-8")
        error = self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_AUTO | _PHONEMES | _ENDPAUSE,
                                      None, None)
        if error != 0 or self.lib.espeak_Synchronize() != 0:
            raise RuntimeError(f"espeak-ng failed to synthesize {text[:40]!r} (error {error})")
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return Synthesis(audio, self.sample_rate, list(self._phones))

    def close(self) -> None:
        """Terminate espeak-ng and unload this copy, so that the next load starts from a fresh state."""
        import _ctypes

        self.lib.espeak_Terminate()
        _ctypes.dlclose(self.lib._handle)


def library_path() -> str:
    """The espeak-ng shared library phonemizer uses (``PHONEMIZER_ESPEAK_LIBRARY`` or the system's)."""
    try:
        from phonemizer.backend.espeak.wrapper import EspeakWrapper

        path = EspeakWrapper.library()
    except (ImportError, RuntimeError):
        path = ctypes.util.find_library("espeak-ng")
    if not path:
        raise RuntimeError("the espeak-ng library is not installed (apt-get install espeak-ng)")
    if Path(path).is_file():
        return str(Path(path).resolve())
    import dlinfo  # a phonemizer dependency: where the loader found a library given by name

    try:
        return str(Path(dlinfo.DLInfo(ctypes.cdll.LoadLibrary(path)).path).resolve())
    except OSError as err:
        raise RuntimeError(f"cannot load the espeak-ng library {path}: {err}") from None


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c"))


@lru_cache(maxsize=1)
def _library_copy() -> Tuple[str, tempfile.TemporaryDirectory]:
    folder = tempfile.TemporaryDirectory(prefix="espeak-timing-")
    return library_path(), folder


def synthesize(text: str, voice: str, pitch: int = 50, rate: int = 175) -> Synthesis:
    """``text`` spoken by espeak-ng ``voice`` (e.g. ``en-us+m3``) at ``pitch`` (0-99) and ``rate`` (words per
    minute), sample for sample as ``espeak-ng -v VOICE -p PITCH -s RATE`` says it (whose defaults these are), with
    its phoneme events."""
    path, folder = _library_copy()
    library = _Library(path, folder.name)
    try:
        return library.synthesize(text, voice, pitch, rate)
    finally:
        library.close()


class TimingMismatch(ValueError):
    """The phonemes espeak-ng spoke are not the text frontend's phoneme sequence."""


def frame_durations(tokens: Sequence[str], synthesis: Synthesis, frame_rate: float, num_frames: int,
                    min_exact: float = 0.0) -> Timing:
    """Frames per token of ``tokens`` (the frontend's sequence: phones, stress marks, punctuation, word boundaries)
    from what espeak-ng reported while speaking them; they sum to ``num_frames``.

    The spoken phones are matched to the frontend's phones (``difflib``): where they agree one for one (the same
    phone, or another phone in its place, as where an accent's vowel differs from the frontend's en-us), each phone
    lasts from its event to the next event, exactly. Where they do not (a phone spoken that the frontend lacks, or the
    reverse), the block's frames are shared evenly by its frontend phones. Pauses (events without a name) go to the
    punctuation or word boundary that precedes the next phone, or to the phone before them when there is none; silence
    before the first phone goes to the first token. Stress marks get 0 frames.

    Raises ``TimingMismatch`` when fewer than ``min_exact`` of the frontend's phones are matched one for one.
    """
    phone_index = [i for i, t in enumerate(tokens) if is_phone(t)]
    events = [(k, name) for k, (name, _) in enumerate(synthesis.phones) if name]
    if not phone_index or not events:
        raise TimingMismatch("no phones to time")
    ops = difflib.SequenceMatcher(None, [name for _, name in events], [tokens[i] for i in phone_index],
                                  autojunk=False).get_opcodes()

    def boundary(sample: int) -> int:
        return min(num_frames, int(round(sample * frame_rate / synthesis.sample_rate)))

    starts = [boundary(sample) for _, sample in synthesis.phones] + [num_frames]
    span = [max(0, starts[k + 1] - starts[k]) for k in range(len(synthesis.phones))]
    frames = [0] * len(tokens)
    frames[0] += starts[0]  # leading silence
    owner = {}  # event index of a spoken phone -> index (in phone_index) of the frontend phone that took its time
    exact = 0
    for tag, i1, i2, j1, j2 in ops:
        if tag == "equal" or (tag == "replace" and i2 - i1 == j2 - j1):
            for m in range(i2 - i1):
                k = events[i1 + m][0]
                frames[phone_index[j1 + m]] += span[k]
                owner[k] = j1 + m
            exact += j2 - j1
            continue
        total = sum(span[events[i][0]] for i in range(i1, i2))
        if j2 > j1:  # shared evenly by the frontend's phones of the block
            share, rest = divmod(total, j2 - j1)
            for m, j in enumerate(range(j1, j2)):
                frames[phone_index[j]] += share + (m < rest)
        else:  # spoken phones the frontend lacks: to the phone before them
            frames[phone_index[max(j1 - 1, 0)]] += total
        for i in range(i1, i2):
            owner[events[i][0]] = j2 - 1 if j2 > j1 else j1 - 1
    if exact < min_exact * len(phone_index):
        raise TimingMismatch(f"only {exact} of {len(phone_index)} phones match what espeak-ng spoke")
    last = -1  # the frontend phone that the last spoken phone went to
    for k, (name, _) in enumerate(synthesis.phones):
        if name:
            last = owner[k]
            continue
        after = phone_index[last] if last >= 0 else -1  # token of the phone before the pause
        upto = phone_index[last + 1] if last + 1 < len(phone_index) else len(tokens)
        pauses = [i for i in range(after + 1, upto) if tokens[i] not in STRESS]
        frames[pauses[-1] if pauses else max(after, 0)] += span[k]
    assert sum(frames) == num_frames, (sum(frames), num_frames)  # boundaries are monotonic and end at num_frames
    return Timing(frames, exact / len(phone_index))


@dataclass(frozen=True)
class Timing:
    """``frames`` per token, and the fraction of the phones timed exactly (matched one for one)."""

    frames: List[int]
    exact: float


def espeak_speaker_name(voice: str, pitch: int, rate: int) -> str:
    """The speaker id of a synthetic espeak-ng speaker, e.g. ``espeak-en-us-m3-p40s150`` for ``en-us+m3``."""
    return f"espeak-{voice.replace('+', '-')}-p{pitch}s{rate}"


def parse_espeak_speaker(name: str) -> Optional[Tuple[str, int, int]]:
    """``(voice, pitch, rate)`` of a speaker id written by ``espeak_speaker_name``; None for any other speaker."""
    match = re.fullmatch(r"espeak-(.+)-([a-z0-9]+)-p(\d+)s(\d+)", name)
    if not match:
        return None
    return f"{match[1]}+{match[2]}", int(match[3]), int(match[4])


def espeak_cut_durations(speaker: str, text: str, tokens: Sequence[str], num_samples: int, sample_rate: int,
                         frame_rate: float, min_exact: float = 0.0) -> Optional[Timing]:
    """Frames per token of an utterance of a synthetic espeak-ng speaker (its id from ``espeak_speaker_name``), from
    saying ``text`` again with the speaker's voice: espeak-ng is deterministic, so the phones fall where they fell in
    the recording. None for other speakers. Raises ``TimingMismatch`` when the recording's length (``num_samples`` at
    ``sample_rate``) is not what espeak-ng says now, or the phones are not ``tokens``' phones."""
    params = parse_espeak_speaker(speaker)
    if params is None:
        return None
    said = synthesize(text, *params)
    expected = len(said.audio) * sample_rate / said.sample_rate
    if abs(expected - num_samples) > 2 * sample_rate / said.sample_rate + 1:
        raise TimingMismatch(f"the recording has {num_samples} samples, espeak-ng says {expected:.0f} now")
    return frame_durations(tokens, said, frame_rate, math.ceil(num_samples * frame_rate / sample_rate), min_exact)


def _durations_or_mismatch(request: tuple) -> Union[Timing, None, TimingMismatch]:
    try:
        return espeak_cut_durations(*request)
    except TimingMismatch as err:  # returned, not raised: one refused utterance must not end its chunk
        return err


class TimingWorker:
    """``espeak_cut_durations`` for many utterances, in a child process that is replaced every ``recycle`` chunks of
    ``chunk`` utterances; a context manager.

    Why a child: espeak-ng does not free what selecting a voice allocates, not even when terminated and unloaded
    (measured: 5 KiB for each load, voice selection and unload, which no ``malloc_trim`` returns), and every utterance
    gets a fresh load (``_Library``). In the process that phonemizes a corpus, that would grow with the corpus. The
    child takes that growth and is replaced before it matters (at most 25,000 utterances: about 120 MiB); the parent
    stays flat. Chunks keep the cost of the round trips small; the child starts on the first request, so corpora
    without synthetic speakers never start one. A standard-library pool rather than our own process handling: it
    replaces the child after ``maxtasksperchild`` tasks (chunks) and carries exceptions back. Forked where the
    platform can (a spawned child would import the caller's main module again, seconds for a recipe script)."""

    def __init__(self, chunk: int = 25, recycle: int = 1000):
        self.chunk, self.recycle = chunk, recycle
        self._pool = None

    def map(self, requests: Sequence[tuple]) -> Iterator[Union[Timing, None, TimingMismatch]]:
        """For each request (``espeak_cut_durations``' arguments, in order), its ``Timing``, None (not a synthetic
        speaker), or the ``TimingMismatch`` it raised."""
        if not requests:
            return iter(())
        if self._pool is None:
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            self._pool = multiprocessing.get_context(method).Pool(1, maxtasksperchild=self.recycle)
        return self._pool.imap(_durations_or_mismatch, requests, chunksize=self.chunk)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool.join()
            self._pool = None

    def __enter__(self) -> "TimingWorker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
