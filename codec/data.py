"""Training data for the codec: random fixed-length crops of Lhotse cuts (or of a training pack's clips),
peak-normalized to a random level."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Mapping, Optional, Tuple

import numpy as np
import torch

from toolkit.pack import PackSampler, is_pack_data


class AudioCropDataset(torch.utils.data.Dataset):
    """Lhotse-style dataset: ``dataset[cuts] -> Tensor[B, segment]`` at 24 kHz.

    Each cut gives one crop at a random offset (zero-padded when shorter), scaled so that its peak lies at a random
    level in ``gain_db`` dBFS (the official recipe normalizes gain to -1..-6 dBFS). Randomness comes from the torch
    generator, which Accelerate's checkpoints restore, so a resumed run draws the same crops.

    Args:
        segment: samples per crop (24000 = 1 s, as the official training).
        gain_db: range of peak levels in dBFS; ``None`` keeps the level.
        noise_db: when given, white noise at a level drawn uniformly in this range (dBFS, RMS) is added to each crop
            after the gain. The synthetic voices of the mini corpus have digital silence between words, and a codec
            trained on them learned to gate quiet input: it turned real recordings' -80 to -47 dBFS room noise
            into zeros (6 of the 54 development clips, their log-mel distance 2-3.6 instead of 0.7). With a noise
            floor in its input, the codec must reproduce one.
    """

    def __init__(self, segment: int = 24000, gain_db: Tuple[float, float] = (-6.0, -1.0), sample_rate: int = 24000,
                 noise_db: Optional[Tuple[float, float]] = None):
        self.segment, self.gain_db, self.sample_rate, self.noise_db = segment, gain_db, sample_rate, noise_db

    def __getitem__(self, cuts) -> torch.Tensor:
        out = torch.zeros(len(cuts), self.segment)
        for i, cut in enumerate(cuts):
            if cut.sampling_rate != self.sample_rate:
                cut = cut.resample(self.sample_rate)
            if cut.num_samples > self.segment:  # read the crop only, not the whole recording
                start = int(torch.randint(0, cut.num_samples - self.segment + 1, (1,)))
                cut = cut.truncate(offset=start / self.sample_rate, duration=self.segment / self.sample_rate,
                                   preserve_id=True)
            audio = cut.load_audio()
            wav = torch.from_numpy(np.ascontiguousarray(audio.mean(axis=0), dtype=np.float32))[: self.segment]
            out[i, : wav.numel()] = wav
            if self.gain_db is not None:
                peak = out[i].abs().max()
                if peak > 1e-6:
                    level = self.gain_db[0] + (self.gain_db[1] - self.gain_db[0]) * float(torch.rand(()))
                    out[i] *= 10 ** (level / 20) / peak
        if self.noise_db is not None:
            low, high = self.noise_db
            levels = low + (high - low) * torch.rand(len(cuts), 1)
            out += torch.randn(out.shape) * 10 ** (levels / 20)
        return out


def repeat_cuts(cuts, factors: Mapping[str, int]):
    """``cuts`` with each cut appearing as many times per epoch as the first speaker pattern it matches says
    (``fnmatch`` patterns such as ``"espeak-*"``; no match: once; 0 drops it). Lazy: the manifest is still streamed,
    repeats follow their original (ids suffixed ``_rep1``, ...) and the sampler's shuffle buffer spreads them. Each
    repeat is cropped afresh, so the codec sees more of the up-weighted audio, not the same crop again.

    The mini corpus is 11 of its 13 hours synthetic voices, and the codec is judged on real speech: a codec trained
    on the corpus as it is scored PESQ 2.5 on held-out synthetic speech and 1.46 on real clips.
    """
    from lhotse import CutSet
    from lhotse.lazy import LazyFlattener, LazyMapper

    return CutSet(LazyFlattener(LazyMapper(cuts, _Copies(tuple(factors.items())))))


class _Copies:
    """A cut -> its copies under ``repeat_cuts``' patterns; a class, not a closure, so a manifest using it pickles."""

    def __init__(self, patterns):
        self.patterns = patterns

    def __call__(self, cut):
        speaker = cut.supervisions[0].speaker if cut.supervisions else None
        times = next((n for pattern, n in self.patterns if fnmatchcase(speaker or "", pattern)), 1)
        return [cut if k == 0 else cut.with_id(f"{cut.id}_rep{k}") for k in range(times)]


def clip_sampler(cuts, batch_size: int, seed: int, world_size: int = 1, rank: int = 0):
    """Batches of ``batch_size`` cuts in random order, each rank its share, short batches dropped: Lhotse's
    ``DynamicCutSampler`` for cuts, ``PackSampler`` for a pack's clips (both resume from ``state_dict()``)."""
    if is_pack_data(cuts):
        return PackSampler(cuts, max_cuts=batch_size, seed=seed, world_size=world_size, rank=rank, drop_last=True)
    from lhotse.dataset import DynamicCutSampler

    return DynamicCutSampler(cuts, max_cuts=batch_size, shuffle=True, seed=seed, world_size=world_size, rank=rank,
                             drop_last=True)
