"""Training packs: a prepared corpus as one small folder that trains without Lhotse, audio libraries or the text
frontend, e.g. on an offline GPU box that has only torch, accelerate, einops, numpy, safetensors, pyyaml, h5py and tqdm.

A pack (``tts.data.pack.write_pack`` from a prepared corpus, ``Pack`` to read it):

    pack.json                 format version, contents, sizes, where it came from, the packages it needs
    symbols.json              the symbol table of the phoneme strings
    codec/                    the codec release the codes were made with (and the start of a codec fine-tuning)
    data.h5                   tokens/<split>/codes [frames, K] int16; audio/<split>/samples int16 at the codec rate;
                              both gzip-compressed with byte shuffling (lossless)
    tokens_<split>.jsonl.gz   per cut: id, speaker, duration, phonemes, durations (when stored), its rows of codes
    audio_<split>.jsonl.gz    per clip: id, speaker, its samples

Its size is chosen, not inherited: the writer takes a byte budget and packs a seeded random subset of the cuts
(every speaker in proportion) that fits it. What a pack holds is read into memory when it is opened: it is bounded
by that budget (tens of MB), and in-memory arrays make each batch a slice.

The readers give the trainers what they read of a Lhotse cut (``PackCut``, ``PackClip``) and a sampler with Lhotse's
interface (``PackSampler``: duration buckets or fixed batch sizes, per-rank shares, ``state_dict`` for exact resume),
so the token and codec trainers train on a pack unchanged.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

import numpy as np

from toolkit.errors import InputError

FORMAT = "lctts-pack"
VERSION = 1
DATA_FILE = "data.h5"
# What reading a pack and training on it import beyond the standard library (the device list of the issue); the
# pack lists what its readers need on top of these (nothing, today).
BASE_REQUIREMENTS = ("torch", "accelerate", "einops", "numpy", "safetensors", "yaml", "h5py", "tqdm")
EXTRA_REQUIREMENTS: tuple = ()


class PackError(InputError):
    """A pack that is missing, incomplete, of another format version, or without the data asked for."""


# Reading ------------------------------------------------------------------------------------------------------------

@dataclass
class PackSupervision:
    """The part of a Lhotse supervision the token dataset reads."""

    speaker: str
    custom: dict = field(default_factory=dict)


class PackCodes:
    """A cut's ``[T, K]`` codes: a view into the pack's array (``load()`` as a Lhotse array has it)."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray):
        self.array = array

    def load(self) -> np.ndarray:
        return self.array


class PackCut:
    """A tokenized cut of a pack: ``id``, ``duration``, ``supervisions[0]`` (speaker; custom phonemes and durations)
    and ``codes``, which is all the token dataset reads of a Lhotse cut."""

    has_recording = False

    def __init__(self, id: str, duration: float, speaker: str, custom: dict, codes: np.ndarray):
        self.id, self.duration = id, duration
        self.supervisions = [PackSupervision(speaker, custom)]
        self.codes = PackCodes(codes)


class PackClip:
    """A clip of a pack's audio with what the codec dataset reads of a Lhotse cut: ``sampling_rate``,
    ``num_samples``, ``duration``, ``truncate`` and ``load_audio``."""

    def __init__(self, id: str, speaker: str, samples: np.ndarray, sampling_rate: int):
        self.id, self.speaker, self.samples, self.sampling_rate = id, speaker, samples, sampling_rate

    @property
    def num_samples(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration(self) -> float:
        return self.num_samples / self.sampling_rate

    def truncate(self, offset: float = 0.0, duration: Optional[float] = None, preserve_id: bool = False) -> PackClip:
        start = int(round(offset * self.sampling_rate))
        end = self.num_samples if duration is None else start + int(round(duration * self.sampling_rate))
        return PackClip(self.id if preserve_id else f"{self.id}-{start}", self.speaker, self.samples[start:end],
                        self.sampling_rate)

    def resample(self, sampling_rate: int) -> PackClip:
        if sampling_rate != self.sampling_rate:
            raise PackError(f"pack audio is at {self.sampling_rate} Hz, the model needs {sampling_rate} Hz: write the "
                            f"pack for this codec")
        return self

    def load_audio(self) -> np.ndarray:
        """``[1, L]`` float32 in [-1, 1)."""
        return (self.samples.astype(np.float32) / 32768.0)[None]


class PackCuts(list):
    """The cuts (or clips) of one split of a pack; a list, so anything that iterates cuts takes it."""


class Pack:
    """A training pack (see the module docstring); ``PackError`` with one line when ``root`` is not one.

    Attributes:
        root: the folder; info: ``pack.json``; symbols: path of ``symbols.json``; codec: the codec release folder.
    """

    def __init__(self, root: os.PathLike):
        self.root = Path(root)
        meta = self.root / "pack.json"
        if not meta.is_file():
            raise PackError(f"{self.root} is not a training pack (no pack.json): write one with recipes/gpu/pack.py")
        try:
            self.info = json.loads(meta.read_text())
        except (OSError, ValueError) as err:
            raise PackError(f"{meta} is unreadable: {err}") from None
        if self.info.get("format") != FORMAT or not isinstance(self.info.get("version"), int):
            raise PackError(f"{meta} is not a training pack's description")
        if self.info["version"] > VERSION:
            raise PackError(f"{self.root} is a version-{self.info['version']} pack; this code reads up to "
                            f"version {VERSION}: update the project")
        self.symbols = self.root / "symbols.json"
        self.codec = self.root / "codec"
        missing = [p.name for p in (self.symbols, self.codec, self.root / DATA_FILE) if not p.exists()]
        missing += [name for name in self._index_files() if not (self.root / name).is_file()]
        if missing:
            raise PackError(f"{self.root} is incomplete: {', '.join(missing)} missing")

    def _index_files(self) -> List[str]:
        return [f"{kind}_{split}.jsonl.gz" for kind in ("tokens", "audio")
                for split in self.info.get(kind, {}).get("splits", {})]

    @property
    def codec_reference(self) -> str:
        """The codec the pack's codes were made with, as its writer named it (``bundled`` or a path on that machine):
        what a release trained on the pack records, ``codec/`` being a copy of it."""
        return str(self.info.get("codec", {}).get("reference") or self.codec)

    @property
    def requirements(self) -> List[str]:
        """Python packages (import names) the pack's readers need beyond ``BASE_REQUIREMENTS``."""
        return list(self.info.get("requires", []))

    def has(self, kind: str, split: str = "train") -> bool:
        return split in self.info.get(kind, {}).get("splits", {})

    def _index(self, kind: str, split: str) -> List[dict]:
        if not self.has(kind, split):
            held = ", ".join(f"{k} {s}" for k in ("tokens", "audio") for s in self.info.get(k, {}).get("splits", {}))
            raise PackError(f"{self.root} holds no {kind} for {split!r} (it holds: {held or 'nothing'})")
        with gzip.open(self.root / f"{kind}_{split}.jsonl.gz", "rt") as f:
            return [json.loads(line) for line in f]

    def _array(self, name: str) -> np.ndarray:
        import h5py

        with h5py.File(self.root / DATA_FILE, "r") as f:
            return f[name][()]

    def token_cuts(self, split: str = "train") -> PackCuts:
        """The tokenized cuts of ``split`` (``train`` or ``valid``)."""
        rows = self._index("tokens", split)
        codes = self._array(f"tokens/{split}/codes")
        return PackCuts(PackCut(r["id"], r["duration"], r["speaker"],
                                {k: r[k] for k in ("phonemes", "durations", "durations_exact") if k in r},
                                codes[r["start"]: r["start"] + r["frames"]]) for r in rows)

    def audio_clips(self, split: str = "train") -> PackCuts:
        """The audio clips of ``split`` at the pack's ``audio.sample_rate``."""
        rows = self._index("audio", split)
        samples = self._array(f"audio/{split}/samples")
        rate = int(self.info["audio"]["sample_rate"])
        return PackCuts(PackClip(r["id"], r["speaker"], samples[r["start"]: r["start"] + r["samples"]], rate)
                        for r in rows)


def is_pack_data(cuts) -> bool:
    return isinstance(cuts, PackCuts)


# Sampling -----------------------------------------------------------------------------------------------------------

class PackSampler:
    """Batches of a pack's cuts with the interface the trainers use of Lhotse's samplers.

    Either duration buckets (``max_duration``: seconds of audio per batch, cuts of similar length together, as
    Lhotse's ``DynamicBucketingSampler``) or ``max_cuts`` per batch in random order (``DynamicCutSampler``). Each
    epoch's batches follow from (seed, epoch) alone; rank r of n takes batches r, r + n, ... of an epoch cut to a
    multiple of n, so every rank has as many. ``drop_last`` leaves out batches of fewer than ``max_cuts`` cuts.
    ``state_dict()`` holds the epoch and the position in it.
    """

    def __init__(self, cuts: Sequence, max_duration: Optional[float] = None, max_cuts: Optional[int] = None,
                 shuffle: bool = True, seed: int = 0, num_buckets: int = 10, world_size: int = 1, rank: int = 0,
                 drop_last: bool = False):
        if (max_duration is None) == (max_cuts is None):
            raise ValueError("PackSampler takes max_duration or max_cuts")
        self.cuts = list(cuts)
        self.max_duration, self.max_cuts = max_duration, max_cuts
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.num_buckets = max(1, min(num_buckets, math.ceil(len(self.cuts) / 4))) if max_duration else 1
        self.world_size, self.rank = world_size, rank
        self.epoch, self.position = 0, 0
        self.predicates: List = []

    def filter(self, predicate) -> "PackSampler":
        """Leave out the cuts ``predicate(cut)`` rejects, as Lhotse's ``CutSampler.filter`` does; it is asked anew
        in every epoch (so it may depend on ``self.epoch``)."""
        self.predicates.append(predicate)
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.position = epoch, 0

    def _batches(self) -> List[List[int]]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        kept = (i for i in range(len(self.cuts)) if all(keep(self.cuts[i]) for keep in self.predicates))
        order = sorted(kept, key=lambda i: (self.cuts[i].duration, i))
        size = math.ceil(len(order) / self.num_buckets) if order else 1
        batches: List[List[int]] = []
        for b in range(0, len(order), size):
            bucket = order[b: b + size]
            if self.shuffle:
                rng.shuffle(bucket)
            batch: List[int] = []
            total = 0.0
            for i in bucket:
                full = len(batch) >= self.max_cuts if self.max_cuts else (
                    batch and total + self.cuts[i].duration > self.max_duration)
                if full:
                    batches.append(batch)
                    batch, total = [], 0.0
                batch.append(i)
                total += self.cuts[i].duration
            if batch and not (self.drop_last and self.max_cuts and len(batch) < self.max_cuts):
                batches.append(batch)
        if self.shuffle:
            rng.shuffle(batches)
        whole = len(batches) - len(batches) % self.world_size
        return batches[self.rank: whole: self.world_size]

    def __iter__(self) -> Iterator[PackCuts]:
        batches = self._batches()
        while self.position < len(batches):
            batch = batches[self.position]
            self.position += 1
            yield PackCuts(self.cuts[i] for i in batch)

    def __len__(self) -> int:
        return len(self._batches())

    def state_dict(self) -> dict:
        return {"kind": "pack", "epoch": self.epoch, "position": self.position, "seed": self.seed,
                "world_size": self.world_size, "num_cuts": len(self.cuts)}

    def load_state_dict(self, state: dict) -> None:
        if state.get("kind") != "pack":
            raise ValueError("the checkpoint's sampler read Lhotse cuts, this run reads a pack")
        mine = {"world_size": self.world_size, "num_cuts": len(self.cuts), "seed": self.seed}
        for key, value in mine.items():
            if state.get(key) != value:
                raise ValueError(f"the checkpoint's sampler had {key} {state.get(key)}, this run has {value}")
        self.epoch, self.position = state["epoch"], state["position"]
