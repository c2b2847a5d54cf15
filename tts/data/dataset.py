"""The dataset of the token models: phoneme ids, codec codes and an acoustic prompt per cut, read without audio.

Lhotse style: the sampler (``DynamicBucketingSampler`` by duration) composes batches of cuts, the dataset only
collates them. Use with ``DataLoader(dataset, sampler=sampler, batch_size=None)``.
"""

from __future__ import annotations

import math
import random
import re
import sys
import zlib
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Dict, List, Optional

import numpy as np
import torch

from toolkit.pack import PackSampler, is_pack_data
from tts.text import SymbolTable

CODE_PAD = -1


def cut_codes(cut) -> np.ndarray:
    """The ``[T, K]`` codes of a cut, T = ceil(duration * frame_rate).

    ``cut.load_codes()`` trims a stored array to ``round(duration / frame_shift)`` frames, one short of what the codec
    produced whenever the last frame is less than half covered; whole (untruncated) cuts read the stored array as is.
    """
    codes = cut.codes
    if not hasattr(codes, "temporal_dim"):  # a plain array (Shar export): already whole
        return codes.load()
    whole = cut.start == 0 and abs(cut.duration - cut.recording.duration) < 1e-6 if cut.has_recording else True
    return codes.load() if whole else cut.load_codes()


@dataclass
class TokenBatch:
    """A collated batch. Padding: phonemes with ``<pad>``, codes with ``CODE_PAD`` (-1).

    Attributes:
        phonemes: ``[B, P]`` ids; phoneme_lens ``[B]``.
        codes: ``[B, K, T]`` target codes; code_lens ``[B]`` (T = ceil(duration * frame_rate)).
        prompt_codes: ``[B, K, Tp]`` acoustic prompt; prompt_lens ``[B]``.
        prompt_is_prefix: ``[B]`` True when the prompt is the first ``prompt_lens`` frames of the target itself
            (the NAR loss then leaves those frames out), False when it comes from another utterance of the speaker.
        cut_ids, speakers: per item.
        durations: ``[B, P]`` stored frames per phoneme token (0-padded) where the data has them
            (``supervision.custom["durations"]``, e.g. exact timings of synthetic espeak-ng speech), with
            ``durations_known`` ``[B]`` saying which items have them; None when no item has.
    """

    phonemes: torch.Tensor
    phoneme_lens: torch.Tensor
    codes: torch.Tensor
    code_lens: torch.Tensor
    prompt_codes: torch.Tensor
    prompt_lens: torch.Tensor
    prompt_is_prefix: torch.Tensor
    cut_ids: List[str]
    speakers: List[str]
    durations: Optional[torch.Tensor] = None
    durations_known: Optional[torch.Tensor] = None

    def to(self, device: torch.device) -> "TokenBatch":
        moved = {k: v.to(device) if torch.is_tensor(v) else v for k, v in self.__dict__.items()}
        return TokenBatch(**moved)


class TokenDataset(torch.utils.data.Dataset):
    """Args:
        symbols: the model's symbol table (unknown phonemes raise).
        frame_rate: codec frames per second.
        prompt_seconds: longest acoustic prompt.
        other_utterance_prob: chance of prompting with another utterance of the same speaker (from ``prompt_pool``)
            instead of a prefix of the target; prefixes are used when the speaker has no other utterance.
        prompt_pool: a ``PromptPool``, or cuts to make one of (typically the training set), to draw other-utterance
            prompts from.
        seed: prompt choices are drawn from a generator seeded by it and the batch's cut ids (reproducible).
    """

    def __init__(self, symbols: SymbolTable, frame_rate: int = 75, prompt_seconds: float = 3.0,
                 other_utterance_prob: float = 0.0, prompt_pool=None, seed: int = 0):
        self.symbols = symbols
        self.prompt_frames = int(round(prompt_seconds * frame_rate))
        self.other_utterance_prob = other_utterance_prob
        self.seed = seed
        if prompt_pool is not None and not isinstance(prompt_pool, PromptPool):
            prompt_pool = PromptPool(prompt_pool)
        self.prompt_pool = prompt_pool

    def __getitem__(self, cuts) -> TokenBatch:
        cuts = sorted(cuts, key=lambda c: c.duration, reverse=True)  # as CutSet.sort_by_duration(ascending=False)
        rng = random.Random(zlib.crc32(" ".join(c.id for c in cuts).encode()) + self.seed)  # stable across runs
        phonemes = [torch.tensor(self.symbols.encode(c.supervisions[0].custom["phonemes"].split(" ")))
                    for c in cuts]
        arrays = [torch.from_numpy(cut_codes(c).astype(np.int64)) for c in cuts]
        code_lens = torch.tensor([a.shape[0] for a in arrays])
        codes = torch.nn.utils.rnn.pad_sequence(arrays, batch_first=True, padding_value=CODE_PAD)  # [B, T, K]
        prompts, is_prefix = [], []
        for i, cut in enumerate(cuts):
            other = self._other_utterance(cut, rng)
            if other is not None:
                prompt = torch.from_numpy(other.astype(np.int64))
                is_prefix.append(False)
            else:
                length = int(code_lens[i])
                n = min(self.prompt_frames, max(1, int(length * rng.uniform(0.25, 0.5))))
                prompt = codes[i, :n]
                is_prefix.append(True)
            prompts.append(prompt)
        prompt_lens = torch.tensor([p.shape[0] for p in prompts])
        prompt_codes = torch.full((len(prompts), int(prompt_lens.max()), codes.shape[-1]), CODE_PAD, dtype=torch.long)
        for i, p in enumerate(prompts):
            prompt_codes[i, : p.shape[0]] = p
        durations = [stored_durations(c, len(p), int(n)) for c, p, n in zip(cuts, phonemes, code_lens)]
        known = torch.tensor([d is not None for d in durations])
        return TokenBatch(
            durations=torch.nn.utils.rnn.pad_sequence(
                [d if d is not None else torch.zeros(len(p), dtype=torch.long) for d, p in zip(durations, phonemes)],
                batch_first=True) if known.any() else None,
            durations_known=known if known.any() else None,
            phonemes=torch.nn.utils.rnn.pad_sequence(phonemes, batch_first=True, padding_value=self.symbols.pad_id),
            phoneme_lens=torch.tensor([len(p) for p in phonemes]),
            codes=codes.transpose(1, 2).contiguous(), code_lens=code_lens,
            prompt_codes=prompt_codes.transpose(1, 2).contiguous(), prompt_lens=prompt_lens,
            prompt_is_prefix=torch.tensor(is_prefix), cut_ids=[c.id for c in cuts],
            speakers=[c.supervisions[0].speaker for c in cuts],
        )

    def _other_utterance(self, cut, rng: random.Random) -> Optional[np.ndarray]:
        """The first ``prompt_frames`` codes of another utterance of the cut's speaker, or None."""
        if self.prompt_pool is None or self.other_utterance_prob <= 0 or rng.random() >= self.other_utterance_prob:
            return None
        return self.prompt_pool.draw(cut.supervisions[0].speaker, cut, rng, self.prompt_frames)


_REPEAT = re.compile(r"(_repeat\d+)+$")  # Lhotse's CutSet.repeat ids, and recipes/mini/oversample.py's


def utterance_key(cut):
    """What makes two cuts the same utterance: the stretch of a recording they cover, or, for cuts without a
    recording, the id without the ``_repeat<k>`` of a copy."""
    if cut.has_recording:
        return sys.intern(cut.recording.id), round(cut.start, 3), round(cut.duration, 3)
    return _REPEAT.sub("", cut.id)


class PromptPool:
    """Utterances to prompt with, by speaker: each a cut id, its ``utterance_key`` and a reference to its stored codes
    (Lhotse's array manifest with the cut's window, or a pack's array), not the cut, so that a LibriTTS-sized pool costs
    a few hundred bytes per utterance instead of a cut's few kilobytes. Built in one pass over ``cuts`` (lazy manifests
    stay lazy).

    Copies of one utterance (an oversampled manifest's ``<id>_repeat<k>``, or any cuts over the same stretch of one
    recording) are one utterance: a cut is never prompted by a copy of itself.
    """

    def __init__(self, cuts):
        self.by_speaker: Dict[str, List[tuple]] = defaultdict(list)
        paths: Dict[str, str] = {}
        for cut in cuts:
            codes = cut.codes
            inner = getattr(codes, "array", codes)
            if hasattr(inner, "storage_path"):  # one string per storage file, not one per cut
                inner = replace(inner, storage_path=paths.setdefault(inner.storage_path, inner.storage_path))
                codes = replace(codes, array=inner) if inner is not codes and hasattr(codes, "array") else inner
            window = None
            if hasattr(codes, "temporal_dim") and cut.has_recording and not (
                    cut.start == 0 and abs(cut.duration - cut.recording.duration) < 1e-6):
                window = (cut.start, cut.duration)  # a part of a recording: read as cut.load_codes() does
            entry = (sys.intern(_REPEAT.sub("", cut.id)), utterance_key(cut), codes, window)
            self.by_speaker[sys.intern(cut.supervisions[0].speaker)].append(entry)

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_speaker.values())

    def draw(self, speaker: str, exclude, rng: random.Random, frames: int) -> Optional[np.ndarray]:
        """``[<=frames, K]`` codes of a random utterance of ``speaker`` other than ``exclude`` (a cut, or a cut id),
        or None."""
        entries = self.by_speaker.get(speaker, ())
        if isinstance(exclude, str):
            field, key = 0, _REPEAT.sub("", exclude)
        else:
            field, key = 1, utterance_key(exclude)
        choices = [i for i, entry in enumerate(entries) if entry[field] != key]
        if not choices:
            return None
        _, _, codes, window = entries[rng.choice(choices)]
        array = codes.load() if window is None else codes.load(start=window[0], duration=window[1])
        return array[:frames]


def stored_durations(cut, num_tokens: int, num_frames: int) -> Optional[torch.Tensor]:
    """A cut's stored frames per phoneme token, or None when it has none or they do not fit its phonemes and codes
    (durations from another frontend or frame rate)."""
    return fitting_durations((cut.supervisions[0].custom or {}).get("durations"), num_tokens, num_frames)


def fitting_durations(text: Optional[str], num_tokens: int, num_frames: int) -> Optional[torch.Tensor]:
    """Durations stored as text (frames per token, space-separated), or None when there are none or they do not fit
    ``num_tokens`` tokens over ``num_frames`` frames."""
    if not text:
        return None
    frames = torch.tensor([int(f) for f in text.split(" ")], dtype=torch.long)
    if len(frames) != num_tokens or int(frames.sum()) != num_frames or bool((frames < 0).any()):
        return None
    return frames


def make_sampler(cuts, max_duration: float, shuffle: bool = True, seed: int = 0, world_size: int = 1,
                 rank: int = 0, num_buckets: int = 10, drop_last: bool = False,
                 curriculum: Optional[Curriculum] = None):
    """Duration-bucketed dynamic batches of at most ``max_duration`` seconds; each rank gets its own share.

    Fewer than 8 cuts (or ``num_buckets`` < 2) get plain dynamic batches: there is nothing to bucket, and Lhotse's
    bucketing needs two buckets at least. Its ``state_dict()`` goes into training checkpoints so a resumed run
    continues mid-epoch. The cuts of a training pack (``toolkit.pack``) get its ``PackSampler``, alike. A
    ``curriculum`` decides, epoch by epoch, which cuts are drawn (``Curriculum``).
    """
    if is_pack_data(cuts):
        sampler = PackSampler(cuts, max_duration=max_duration, shuffle=shuffle, seed=seed, num_buckets=num_buckets,
                              world_size=world_size, rank=rank)
        if curriculum is not None:
            sampler.filter(curriculum)
            curriculum.sampler = sampler
        return sampler
    from lhotse import CutSet
    from lhotse.dataset import DynamicBucketingSampler, DynamicCutSampler
    from lhotse.lazy import LazyFilter

    if not per_rank_stream(cuts):  # counting a lazy manifest reads its lines once; a Shar stream would read its tars
        num_buckets = min(num_buckets, math.ceil(len(cuts) / 4))
    if curriculum is not None:
        cuts = CutSet(LazyFilter(cuts, curriculum))  # read anew in every epoch
    if num_buckets < 2:
        sampler = DynamicCutSampler(cuts, max_duration=max_duration, shuffle=shuffle, seed=seed,
                                    world_size=world_size, rank=rank, drop_last=drop_last)
    else:
        try:
            sampler = DynamicBucketingSampler(cuts, max_duration=max_duration, shuffle=shuffle, seed=seed,
                                              num_buckets=num_buckets, world_size=world_size, rank=rank,
                                              drop_last=drop_last)
        except AssertionError as err:  # Lhotse's check of a stream too short for its buckets: the user's input
            raise ValueError(f"{err} (lower train.num_buckets)") from None
    if curriculum is not None:
        curriculum.sampler = sampler
    return sampler


class Curriculum:
    """A short-utterance curriculum: the first epochs of a training sampler draw only the shorter cuts.

    ``stages``: ``(epochs, max_seconds)`` pairs in order. Epoch ``e`` belongs to the first stage whose epochs, with
    those of the stages before it, exceed ``e``, and takes only the cuts of at most that stage's seconds; after the
    last stage, every cut. An epoch of short cuts is shorter, so a stage ends sooner than a full epoch would.
    ``make_sampler(curriculum=...)`` applies it to the cuts the sampler reads (for Lhotse's samplers a lazy filter
    of the cuts, not ``CutSampler.filter``, whose rejected cuts are counted as batches that a restored sampler would
    then skip; for a pack's sampler its ``filter``) and sets ``sampler``. It reads the sampler's epoch, which the
    sampler's state holds, so a resumed run draws the batches an unbroken one does. Without a sampler yet (Lhotse's
    duration bins are estimated when the sampler is made) it passes every cut.
    """

    def __init__(self, stages):
        self.stages, self.sampler = check_curriculum(stages), None

    def limit(self, epoch: int) -> Optional[float]:
        """The longest cut epoch ``epoch`` takes (None: any)."""
        end = 0
        for epochs, seconds in self.stages:
            end += epochs
            if epoch < end:
                return seconds
        return None

    def __call__(self, cut) -> bool:
        limit = None if self.sampler is None else self.limit(self.sampler.epoch)
        return limit is None or cut.duration <= limit


def check_curriculum(stages, where: str = "train.curriculum") -> tuple:
    """``stages`` as a tuple of ``(epochs, max_seconds)``; a ``ValueError`` naming ``where`` unless each is a pair of a
    positive int and a positive number."""
    pairs = []
    for stage in stages or ():
        if not (isinstance(stage, (list, tuple)) and len(stage) == 2 and isinstance(stage[0], int)
                and not isinstance(stage[0], bool) and stage[0] >= 1 and isinstance(stage[1], (int, float))
                and not isinstance(stage[1], bool) and stage[1] > 0):
            raise ValueError(f"{where} must be a list of [epochs, max_seconds] pairs (a positive int and a positive "
                             f"number), got {stages!r}")
        pairs.append((stage[0], float(stage[1])))
    return tuple(pairs)


def per_rank_stream(cuts) -> bool:
    """Cuts read from Lhotse Shar shards (``toolkit.cuts.open_cuts``), which are not counted before sampling."""
    return type(getattr(cuts, "data", None)).__name__ == "LazySharIterator"
