"""The staged LibriTTS data pipeline: manifests -> phonemes -> codec tokens (-> Lhotse Shar).

Every stage writes its outputs atomically and then a marker in ``<work>/.done/``; a re-run skips finished stages.
Tokenization goes in chunks of cuts, each chunk's codes (HDF5) and cut manifest written whole before its marker, so a
killed run resumes at the first unfinished chunk with no duplicated or missing cuts. Audio that cannot be read is
skipped and listed in ``<work>/report_<part>.json``.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch
from lhotse import CutSet, load_manifest_lazy
from lhotse.features.io import NumpyHdf5Writer
from tqdm import tqdm

from toolkit.files import atomic_path
from tts.data.espeak_timing import TimingMismatch, TimingWorker, parse_espeak_speaker
from tts.text import SymbolTable, TextError, build_phonemizer, is_phone

log = logging.getLogger(__name__)
SAMPLE_RATE = 24000


@dataclass(frozen=True)
class PipelineConfig:
    """Attributes:
        corpus_dir: LibriTTS-layout corpus (``<corpus_dir>/<part>/...``).
        work_dir: where manifests, codes, reports and stage markers go.
        parts: dataset parts.
        frontend: ``espeak`` (IPA) or ``arpabet``.
        symbols: an existing model's symbol table; every part must fit it (data for a trained model). Without it,
            the table is built from all parts.
        min_duration, max_duration: seconds; cuts outside are dropped (0.5-14 s as the references).
        chunk_size: cuts per tokenization chunk (the unit of resumption).
        frame_rate: the codec's frames per second, the unit of stored phoneme durations.
        min_exact_timing: synthetic espeak-ng utterances get durations (``tts.data.espeak_timing``) when at least
            this fraction of their phones is timed exactly.
    """

    corpus_dir: Path
    work_dir: Path
    parts: Sequence[str] = ("train-clean-100", "dev-clean", "test-clean")
    frontend: str = "espeak"
    symbols: Optional[Path] = None
    min_duration: float = 0.5
    max_duration: float = 14.0
    chunk_size: int = 500
    frame_rate: float = 75.0
    min_exact_timing: float = 0.8


class Pipeline:
    def __init__(self, config: PipelineConfig):
        self.config = config
        self.work = Path(config.work_dir)
        (self.work / ".done").mkdir(parents=True, exist_ok=True)

    # Paths and markers ------------------------------------------------------------------------------------------

    def cuts_path(self, part: str, stage: str) -> Path:
        return self.work / f"cuts_{part}.{stage}.jsonl.gz"

    def tokenized_path(self, part: str) -> Path:
        return self.work / f"cuts_{part}.jsonl.gz"

    def _done(self, name: str) -> Path:
        return self.work / ".done" / name

    def is_done(self, name: str) -> bool:
        return self._done(name).exists()

    def _mark(self, name: str) -> None:
        self._done(name).write_text("done\n")

    # Stages -----------------------------------------------------------------------------------------------------

    def prepare(self) -> None:
        """LibriTTS-layout parts -> cuts resampled to 24 kHz, filtered by duration, streamed to the raw manifest."""
        for part in self.config.parts:
            if self.is_done(f"prepare_{part}"):
                continue
            root = Path(self.config.corpus_dir)
            if not (root / part).is_dir():
                raise FileNotFoundError(f"{root / part} does not exist (download or build the corpus first)")
            report = self._report(part)
            low, high = self.config.min_duration, self.config.max_duration
            with atomic_path(self.cuts_path(part, "raw")) as tmp, CutSet.open_writer(tmp) as writer:
                for cut in libritts_cuts(root, part, report["skipped"]):
                    cut = cut.resample(SAMPLE_RATE)
                    if low <= cut.duration <= high:
                        writer.write(cut)
            self._write_report(part, report)
            self._mark(f"prepare_{part}")

    def phonemize(self, batch_size: int = 1000) -> SymbolTable:
        """Phonemes into ``supervision.custom["phonemes"]`` (tokens joined by spaces); writes ``symbols.json``.

        Utterances of synthetic espeak-ng speakers also get their exact phoneme durations: frames per token at
        ``frame_rate`` in ``custom["durations"]`` (summing to the utterance's frame count) and the fraction of phones
        timed exactly in ``custom["durations_exact"]``."""
        phonemizer = build_phonemizer(self.config.frontend)
        symbols_path = self.work / "symbols.json"
        for part in self.config.parts:
            if self.is_done(f"phonemize_{part}"):
                continue
            stream = iter(load_manifest_lazy(self.cuts_path(part, "raw")))  # one batch of cuts in memory at a time
            report = self._report(part)
            with atomic_path(self.cuts_path(part, "phon")) as tmp, CutSet.open_writer(tmp) as writer, \
                    TimingWorker() as timer:
                for batch in tqdm(iter(lambda: list(itertools.islice(stream, batch_size)), []),
                                  desc=f"phonemize {part}", unit="batch", leave=False):
                    tokens = phonemizer([c.supervisions[0].text for c in batch])
                    kept = []
                    for cut, toks in zip(batch, tokens):
                        if not any(is_phone(t) for t in toks):
                            report["skipped"][cut.id] = "nothing pronounceable in the transcript"
                            continue
                        cut.supervisions[0].custom = {**(cut.supervisions[0].custom or {}),
                                                      "phonemes": " ".join(toks)}
                        kept.append((cut, toks))
                    self._time_espeak(kept, report, timer)
                    for cut, _ in kept:
                        writer.write(cut)
            self._write_report(part, report)
            self._mark(f"phonemize_{part}")
        if self.config.symbols is not None:
            table = SymbolTable.load(self.config.symbols)
            if table.frontend != phonemizer.name:
                raise TextError(f"the symbol table {self.config.symbols} is for {table.frontend}, the data for "
                                f"{phonemizer.name}")
        else:
            table = SymbolTable.build((toks for part in self.config.parts for toks in self._phonemes(part)),
                                      phonemizer.name, phonemizer.version)
        unknown = {t for part in self.config.parts for toks in self._phonemes(part) for t in table.unknown(toks)}
        if unknown:
            raise TextError(f"phoneme symbols missing from the symbol table {self.config.symbols}: "
                            f"{' '.join(sorted(unknown))}")
        table.save(symbols_path)
        return table

    def _time_espeak(self, kept: List[tuple], report: dict, timer: TimingWorker) -> None:
        """Exact durations for the utterances of synthetic espeak-ng speakers among ``kept`` (cut, tokens) pairs;
        nothing for other speakers."""
        counts = report.setdefault("durations", {"timed": 0, "refused": {}})
        timed = [(cut, toks) for cut, toks in kept if parse_espeak_speaker(cut.supervisions[0].speaker) is not None]
        requests = [(cut.supervisions[0].speaker, cut.supervisions[0].text, toks, cut.num_samples, cut.sampling_rate,
                     self.config.frame_rate, self.config.min_exact_timing) for cut, toks in timed]
        for (cut, _), timing in zip(timed, timer.map(requests)):
            if isinstance(timing, TimingMismatch):
                counts["refused"][cut.id] = str(timing)
            elif timing is not None:
                cut.supervisions[0].custom.update(durations=" ".join(map(str, timing.frames)),
                                                  durations_exact=round(timing.exact, 4))
                counts["timed"] += 1

    def _phonemes(self, part: str):
        for cut in load_manifest_lazy(self.cuts_path(part, "phon")):
            yield cut.supervisions[0].custom["phonemes"].split(" ")

    def tokenize(self, codec_loader: Callable[[], torch.nn.Module], on_chunk: Optional[Callable[[int], None]] = None,
                 ) -> None:
        """Codes ``[T, K]`` int16 of every cut, stored with Lhotse's HDF5 array writer, attached as ``cut.codes``."""
        codec = None
        for part in self.config.parts:
            if self.is_done(f"tokenize_{part}"):
                continue
            source = self.cuts_path(part, "phon")
            size = self.config.chunk_size
            if self._chunks_in_id_order(part):  # begun by earlier code, which sorted the cuts by id: finish alike
                ordered = sorted(load_manifest_lazy(source), key=lambda c: c.id)
                stream, total = iter(ordered), len(ordered)
            else:  # manifest order, streamed: one chunk of cuts in memory at a time
                self._mark(f"tokenize_{part}_streamed")
                stream, total = iter(load_manifest_lazy(source)), sum(1 for _ in load_manifest_lazy(source))
            chunks = math.ceil(total / size)
            report = self._report(part)
            folder = self.work / "codes" / part
            folder.mkdir(parents=True, exist_ok=True)
            for index in tqdm(range(chunks), desc=f"tokenize {part}", unit="chunk", leave=False):
                chunk = list(itertools.islice(stream, size))
                marker = f"tokenize_{part}_{index:05d}"
                if self.is_done(marker):
                    continue
                codec = codec or codec_loader()
                self._tokenize_chunk(codec, chunk, folder / f"{index:05d}", report)
                self._write_report(part, report)
                self._mark(marker)
                if on_chunk is not None:
                    on_chunk(index)
            parts = [folder / f"{i:05d}.jsonl.gz" for i in range(chunks)]
            _save_cuts(CutSet.from_cuts(c for p in parts for c in load_manifest_lazy(p)), self.tokenized_path(part))
            self._mark(f"tokenize_{part}")

    def _chunks_in_id_order(self, part: str) -> bool:
        """Whether a tokenization of ``part`` was begun, chunked in id order, by code from before streaming."""
        return (not self.is_done(f"tokenize_{part}_streamed")
                and any((self.work / ".done").glob(f"tokenize_{part}_[0-9]*")))

    @torch.inference_mode()
    def _tokenize_chunk(self, codec, cuts: List, stem: Path, report: dict) -> None:
        h5 = stem.with_suffix(".h5")
        out = []
        with atomic_path(h5) as tmp_h5:
            with NumpyHdf5Writer(tmp_h5, mode="w") as writer:
                for cut in cuts:
                    try:
                        audio = cut.load_audio()
                    except Exception as err:  # noqa: BLE001 - any decoder failure means: skip and report the file
                        report["skipped"][cut.id] = f"unreadable audio: {type(err).__name__}: {err}"[:300]
                        continue
                    wav = torch.from_numpy(np.ascontiguousarray(audio.mean(axis=0), dtype=np.float32))
                    if wav.numel() == 0 or not bool(torch.isfinite(wav).all()):
                        report["skipped"][cut.id] = "empty or non-finite audio"
                        continue
                    codes = codec.encode(wav[None])[0].t().cpu().numpy().astype(np.int16)  # [T, K]
                    manifest = writer.store_array(cut.id, codes, frame_shift=codec.hop_length / codec.sample_rate,
                                                  temporal_dim=0)
                    out.append(cut.with_custom("codes", manifest))
        # The arrays were stored in the temporary file; point them at the final path that the rename created.
        out = [cut.with_custom("codes", _retarget(cut.codes, h5)) for cut in out]
        _save_cuts(CutSet.from_cuts(out), stem.with_suffix(".jsonl.gz"))

    def shar(self, shard_size: int = 1000) -> None:
        """Optional export to Lhotse Shar (sharded, streamable): codes as numpy arrays, no audio."""
        for part in self.config.parts:
            if self.is_done(f"shar_{part}"):
                continue
            out = self.work / "shar" / part
            out.mkdir(parents=True, exist_ok=True)
            # Written as a plain array: Lhotse would trim a temporal one to round(duration * 75) frames on the way.
            cuts = CutSet.from_file(self.tokenized_path(part)).map(_plain_codes)
            cuts.to_shar(out, fields={"codes": "numpy"}, shard_size=shard_size)
            self._mark(f"shar_{part}")

    # Reports ----------------------------------------------------------------------------------------------------

    def _report(self, part: str) -> dict:
        path = self.work / f"report_{part}.json"
        return json.loads(path.read_text()) if path.exists() else {"part": part, "skipped": {}}

    def _write_report(self, part: str, report: dict) -> None:
        with atomic_path(self.work / f"report_{part}.json") as tmp:
            tmp.write_text(json.dumps(report, indent=1) + "\n")


# Files that Lhotse's LibriTTS recipe leaves out: macOS resource forks and one file corrupt in the distribution.
LIBRITTS_EXCLUDE = re.compile(r"^(\._.+|1092_134562_000013_000004\.wav)$")


def libritts_cuts(root: Path, part: str, skipped: Dict[str, str]) -> Iterator:
    """The cuts of a LibriTTS-layout part (``<root>/<part>/<speaker>/<chapter>/``: WAVs, ``.trans.tsv``,
    ``.book.tsv``; ``<root>/SPEAKERS.txt`` optional), one transcript line at a time, in sorted file order.

    The same Recording, SupervisionSegment and cut objects as Lhotse's ``prepare_libritts`` (ids ``<utterance>-<n>``,
    the transcript's normalized text, ``orig_text`` and ``snr`` in ``custom``, gender from SPEAKERS.txt), made here
    because that recipe (Lhotse 1.33) holds the part's recordings and supervisions in memory and finds each
    transcript line's recording by a linear scan of the recording list: quadratic in the part's size (18,540
    utterances took 138 s, 75 s of it in ``RecordingSet.__contains__``; 4x that many, 324 s), hours for LibriTTS's
    larger parts. Audio that cannot be read and transcript lines without audio go to ``skipped`` (id -> reason).
    """
    from lhotse import Recording, SupervisionSegment
    from lhotse.cut import MonoCut, MultiCut

    genders = {}
    if (root / "SPEAKERS.txt").is_file():  # ";ID  |SEX| SUBSET |MINUTES| NAME"
        for line in (root / "SPEAKERS.txt").read_text().splitlines():
            fields = line.split("|")
            if not line.startswith(";") and len(fields) >= 2:
                genders[fields[0].strip()] = fields[1].strip()
    index = 0
    for trans in tqdm(sorted((root / part).rglob("*.trans.tsv")), desc=f"prepare {part}", unit="chapter",
                      leave=False):
        if LIBRITTS_EXCLUDE.match(trans.name):
            continue
        snr = {}
        book = trans.with_name(trans.name.replace(".trans.tsv", ".book.tsv"))
        for line in (book.read_text().splitlines() if book.is_file() else ()):
            fields = line.split()
            try:
                snr[fields[0]] = float(fields[-1])
            except (IndexError, ValueError):
                continue
        for line in trans.read_text(encoding="utf-8").splitlines():
            fields = line.split("\t")
            if len(fields) != 3:
                if line.strip():
                    skipped[f"{trans.name}:{line[:40]}"] = "transcript line without 3 tab-separated fields"
                continue
            utterance, original, normalized = fields
            wav = trans.parent / f"{utterance}.wav"
            if LIBRITTS_EXCLUDE.match(wav.name):
                continue
            if not wav.is_file():
                skipped[utterance] = "no audio file for this transcript line"
                continue
            try:
                recording = Recording.from_file(wav, recording_id=utterance)
                if recording.num_samples == 0:
                    raise ValueError("no samples")
            except Exception as err:  # noqa: BLE001 - whatever the reason, the file cannot be used
                skipped[utterance] = f"unreadable audio: {str(err).strip()[:200]}"
                continue
            speaker = utterance.split("_")[0]
            supervision = SupervisionSegment(
                id=utterance, recording_id=utterance, start=0, duration=recording.duration, channel=0,
                text=normalized, language="English", speaker=speaker, gender=genders.get(speaker),
                custom={"orig_text": original, "snr": snr.get(utterance)})
            mono = recording.num_channels == 1
            yield (MonoCut if mono else MultiCut)(
                id=f"{utterance}-{index}", start=0, duration=recording.duration,
                channel=recording.channel_ids[0] if mono else recording.channel_ids, recording=recording,
                supervisions=[supervision])
            index += 1


def _retarget(manifest, h5: Path):
    """The same stored array, read from ``h5`` (a ``TemporalArray`` wraps an ``Array`` that has the path)."""
    from dataclasses import replace

    if hasattr(manifest, "array"):
        return replace(manifest, array=replace(manifest.array, storage_path=str(h5)))
    return replace(manifest, storage_path=str(h5))


def _plain_codes(cut):
    return cut.with_custom("codes", getattr(cut.codes, "array", cut.codes))


def _save_cuts(cuts: CutSet, path: Path) -> None:
    with atomic_path(path) as tmp:
        # atomic_path keeps the ".gz" suffix, so Lhotse compresses the temporary file as the final one.
        cuts.to_file(str(tmp))


def codec_loader(path: os.PathLike, device: str = "cpu") -> Callable[[], torch.nn.Module]:
    """A release directory of this project or an official Language-Codec checkpoint, frozen, in eval mode."""

    def load() -> torch.nn.Module:
        from codec import load_codec

        return load_codec(path).to(device).eval().requires_grad_(False)

    return load


def summarize(work_dir: Path, parts: Sequence[str]) -> Dict[str, dict]:
    """Per part: cuts, hours, speakers, skipped."""
    out = {}
    for part in parts:
        path = Path(work_dir) / f"cuts_{part}.jsonl.gz"
        if not path.exists():
            continue
        cuts = CutSet.from_file(path)
        report = json.loads((Path(work_dir) / f"report_{part}.json").read_text()) \
            if (Path(work_dir) / f"report_{part}.json").exists() else {"skipped": {}}
        out[part] = {"cuts": len(cuts), "hours": round(sum(c.duration for c in cuts) / 3600, 3),
                     "speakers": len({c.supervisions[0].speaker for c in cuts}), "skipped": len(report["skipped"])}
    return out


def run(config: PipelineConfig, codec: Optional[os.PathLike], shar: bool = False, device: str = "cpu",
        ) -> Dict[str, dict]:
    """All stages in order (finished ones are skipped); tokenization needs ``codec`` (release dir or official ckpt)."""
    pipeline = Pipeline(config)
    pipeline.prepare()
    pipeline.phonemize()
    if codec is None:
        return summarize(config.work_dir, config.parts)
    pipeline.tokenize(codec_loader(codec, device))
    if shar:
        pipeline.shar()
    return summarize(config.work_dir, config.parts)
