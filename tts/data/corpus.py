"""Corpora in the LibriTTS layout, so the LibriTTS recipe runs on them unchanged.

LibriTTS layout (what ``lhotse.recipes.prepare_libritts`` reads)::

    <root>/<part>/<speaker>/<chapter>/<speaker>_<chapter>_<utt>_000000.wav
    <root>/<part>/<speaker>/<chapter>/<speaker>_<chapter>.trans.tsv    id \\t original text \\t normalized text
    <root>/<part>/<speaker>/<chapter>/<speaker>_<chapter>.book.tsv     id \\t ... \\t SNR

Two sources: any folder of ``<speaker>/<utt>.{wav,flac}`` with ``<utt>.txt`` transcripts (``from_folder``), and
multi-speaker synthetic speech from espeak-ng voices over a sentence list (``synthesize_espeak``).
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf
from tqdm import tqdm

from toolkit.audio import load_audio, resample
from toolkit.errors import InputError
from tts.data.espeak_timing import espeak_speaker_name, synthesize

SAMPLE_RATE = 24000
AUDIO_SUFFIXES = (".wav", ".flac")
log = logging.getLogger(__name__)


@dataclass
class CorpusReport:
    """What a corpus build wrote and what it skipped (with the reason)."""

    written: int = 0
    seconds: float = 0.0
    speakers: int = 0
    skipped: Dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        return (f"{self.written} utterances, {self.seconds / 3600:.2f} h, {self.speakers} speakers; "
                f"skipped {len(self.skipped)}")


def speaker_id(name: str) -> str:
    """LibriTTS ids split on "_": speaker names keep only letters, digits and "-"."""
    return re.sub(r"[^A-Za-z0-9-]+", "-", name).strip("-") or "spk"


class LibriTTSWriter:
    """Writes utterances of one part in the LibriTTS layout (chapter "0" per speaker), 24 kHz 16-bit WAV."""

    def __init__(self, root: Path, part: str):
        self.dir = Path(root) / part
        self.rows: Dict[str, List[Tuple[str, str]]] = defaultdict(list)
        self.report = CorpusReport()

    def add(self, speaker: str, text: str, wav: np.ndarray) -> str:
        spk = speaker_id(speaker)
        utt = f"{spk}_0_{len(self.rows[spk]):06d}_000000"
        folder = self.dir / spk / "0"
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(folder / f"{utt}.wav", np.clip(wav, -1, 1), SAMPLE_RATE, subtype="PCM_16")
        self.rows[spk].append((utt, " ".join(text.split())))
        self.report.written += 1
        self.report.seconds += len(wav) / SAMPLE_RATE
        return utt

    def close(self) -> CorpusReport:
        for spk, rows in self.rows.items():
            folder = self.dir / spk / "0"
            (folder / f"{spk}_0.trans.tsv").write_text("".join(f"{u}\t{t}\t{t}\n" for u, t in rows))
            (folder / f"{spk}_0.book.tsv").write_text("".join(f"{u}\t{t}\t30.0\n" for u, t in rows))
        self.report.speakers = len(self.rows)
        return self.report


def from_folder(src: Path, root: Path, part: str, max_utterances: Optional[int] = None,
                max_per_speaker: Optional[int] = None) -> CorpusReport:
    """Copy ``<speaker>/<utt>.{wav,flac}`` + ``<utt>.txt`` (at any depth; the speaker is the parent folder) into the
    LibriTTS layout at 24 kHz mono. Unreadable or empty audio and missing transcripts are skipped and reported."""
    writer = LibriTTSWriter(root, part)
    files = sorted(p for p in Path(src).rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    per_speaker: Dict[str, int] = defaultdict(int)
    for path in tqdm(files, desc=f"corpus {part}", unit="utt", leave=False):
        if max_utterances is not None and writer.report.written >= max_utterances:
            break
        speaker = f"{path.parent.parent.name}-{path.parent.name}" if path.parent.parent != Path(src) else \
            path.parent.name
        if max_per_speaker is not None and per_speaker[speaker] >= max_per_speaker:
            continue
        transcript = path.with_suffix(".txt")
        if not transcript.is_file() or not transcript.read_text().strip():
            writer.report.skipped[str(path)] = "no transcript"
            continue
        try:
            wav = load_audio(path, SAMPLE_RATE).numpy()
        except InputError as err:
            writer.report.skipped[str(path)] = str(err)
            continue
        writer.add(speaker, transcript.read_text(), wav)
        per_speaker[speaker] += 1
    return writer.close()


ESPEAK_VOICES = ("en-us", "en", "en-gb-x-rp", "en-029", "en-gb-scotland")
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2",
                   "croak", "whisper")


def espeak_speakers(count: int, seed: int = 0) -> List[Tuple[str, int, int]]:
    """``count`` distinct synthetic speakers: (voice+variant, pitch 0-99, words per minute)."""
    rng = random.Random(seed)
    combos = [(f"{v}+{var}", p, s) for v in ESPEAK_VOICES for var in ESPEAK_VARIANTS if var != "whisper"
              for p, s in ((40, 150), (60, 170), (30, 140), (70, 185))]
    rng.shuffle(combos)
    return combos[:count]


def synthesize_espeak(sentences: Sequence[str], root: Path, part: str, num_speakers: int,
                      utterances_per_speaker: int, seed: int = 0) -> CorpusReport:
    """Synthetic multi-speaker speech: each speaker reads its own random sentences with one espeak-ng voice (through
    the espeak-ng library, sample for sample what its command line writes; ``tts.data.espeak_timing``)."""
    rng = random.Random(seed)
    writer = LibriTTSWriter(root, part)
    for voice, pitch, speed in tqdm(espeak_speakers(num_speakers, seed), desc=f"espeak {part}", unit="spk",
                                    leave=False):
        name = espeak_speaker_name(voice, pitch, speed)
        for text in rng.sample(list(sentences), min(utterances_per_speaker, len(sentences))):
            said = synthesize(text, voice, pitch, speed)
            if said.audio.size == 0:
                writer.report.skipped[f"{name}: {text[:40]}"] = "espeak-ng produced no audio"
                continue
            # as the command line's 16-bit WAV read back as float32, then resampled (soxr HQ)
            writer.add(name, text, resample(said.audio.astype(np.float32) / 32768, said.sample_rate, SAMPLE_RATE))
    return writer.close()


def read_sentences(path: Path, min_words: int = 3, max_words: int = 30) -> List[str]:
    """Sentences from a TSV with a ``sentence`` column (or one sentence per line)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    if lines and "\t" in lines[0]:
        column = lines[0].split("\t").index("sentence") if "sentence" in lines[0].split("\t") else -1
        lines = [row.split("\t")[column] for row in lines[1:] if row.strip()]
    return [s.strip() for s in lines if min_words <= len(s.split()) <= max_words]


# folder utterances (max, per speaker), espeak train speakers x utterances, espeak test speakers x utterances
MINI_SIZES = {
    "smoke": ((12, 3), (2, 3), (2, 2)),
    "small": ((300, 10), (20, 15), (6, 5)),
    "full": ((None, None), (60, 120), (10, 10)),
}


def build_mini_corpus(folder: Optional[Path], sentences: Optional[Path], root: Path, size: str, seed: int = 0) -> dict:
    """The mini corpus of ``recipes/mini/prepare.py`` under ``root`` in the LibriTTS layout (skipped when
    ``root/.built`` exists): utterances of ``folder`` and espeak-ng speakers reading ``sentences`` for "train", other
    espeak-ng speakers for "test". ``size``: a key of ``MINI_SIZES``. Returns what was written and skipped."""
    marker = root / ".built"
    if marker.exists():
        return json.loads(marker.read_text())
    (max_utts, per_spk), (train_spk, train_utts), (test_spk, test_utts) = MINI_SIZES[size]
    report = {}
    texts = read_sentences(sentences) if sentences else []
    if folder:
        r = from_folder(folder, root, "train", max_utterances=max_utts, max_per_speaker=per_spk)
        report["folder"] = {"summary": r.summary(), "skipped": r.skipped}
    if texts:
        half = len(texts) // 2  # test speakers read sentences the train speakers never read
        r = synthesize_espeak(texts[:half], root, "train", train_spk, train_utts, seed=seed)
        report["espeak_train"] = {"summary": r.summary(), "skipped": r.skipped}
        r = synthesize_espeak(texts[half:], root, "test", test_spk, test_utts, seed=seed + 1000 + train_spk)
        report["espeak_test"] = {"summary": r.summary(), "skipped": r.skipped}
    root.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(report, indent=1))
    return report
