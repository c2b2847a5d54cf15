"""Phoneme durations at the codec frame rate without external tools (MobileSpeech needs them; docs/design.md,
section 5).

A RAD-TTS-style aligner: phoneme keys against acoustic queries (summed code embeddings of every codebook), a
beta-binomial prior favouring the diagonal, the forward-sum loss (CTC over the soft alignment, ``nn.CTCLoss``), and
monotonic alignment search (MAS) for hard durations. Every frame goes to exactly one phoneme, so an utterance's
durations sum to its frame count.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Dict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from toolkit.config import build
from tts.models.base import StageOutput, TokenModel, lengths_mask


def beta_binomial_prior(num_phonemes: torch.Tensor, num_frames: torch.Tensor, scaling: float = 1.0) -> torch.Tensor:
    """Log prior ``[B, T, N]`` (padded with 0): for frame t of T, a BetaBinomial(N - 1, scaling t, scaling (T - t + 1))
    over the N phonemes, so frame t expects phoneme ~ t N / T."""
    n_max, t_max = int(num_phonemes.max()), int(num_frames.max())
    k = torch.arange(n_max, dtype=torch.float64)[None, None, :]
    t = torch.arange(1, t_max + 1, dtype=torch.float64)[None, :, None]
    n = (num_phonemes.double() - 1)[:, None, None]
    frames = num_frames.double()[:, None, None]
    a, b = scaling * t, scaling * (frames - t + 1)
    # log pmf = log C(n, k) + log B(k + a, n - k + b) - log B(a, b), with log B(x, y) = lgamma x + lgamma y - lgamma x+y
    n_k = (n - k).clamp(min=0)
    log_choose = torch.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n_k + 1)
    log_beta_num = torch.lgamma(k + a) + torch.lgamma(n_k + b) - torch.lgamma(n + a + b)
    log_beta_den = torch.lgamma(a) + torch.lgamma(b.clamp(min=1e-6)) - torch.lgamma(a + b)
    prior = log_choose + log_beta_num - log_beta_den
    valid = (k < num_phonemes[:, None, None]) & (t <= frames)
    return torch.where(valid, prior, torch.zeros_like(prior)).float()


@torch.no_grad()
def monotonic_alignment_search(log_probs: torch.Tensor, num_phonemes: torch.Tensor,
                               num_frames: torch.Tensor) -> torch.Tensor:
    """The best monotonic hard alignment: ``log_probs`` ``[B, T, N]`` -> 0/1 path ``[B, T, N]``.

    Each frame takes one phoneme; the path starts at (frame 0, phoneme 0), ends at the last frame and phoneme of each
    item, and moves by 0 or 1 phoneme per frame, maximizing the summed log-probabilities. Vectorized over the batch
    and the phonemes in the forward pass; the backward pass walks each item's decisions.
    Raises ValueError when an item has fewer frames than phonemes.
    """
    if bool((num_frames < num_phonemes).any()):
        raise ValueError("monotonic alignment needs at least one frame per phoneme")
    b, t_max, n_max = log_probs.shape
    valid_n = lengths_mask(num_phonemes, n_max)  # [B, N]
    values = log_probs.detach().double().masked_fill(~valid_n[:, None, :], float("-inf")).cpu()
    # Forward pass, one tensor step per frame: best[i] = value[t, i] + max(best[i] (stay), best[i - 1] (advance)),
    # remembering where advancing won. The backward pass then only follows those decisions.
    advance = torch.zeros(b, t_max, n_max, dtype=torch.bool)
    best = values[:, 0].clone()
    best[:, 1:] = float("-inf")
    for t in range(1, t_max):
        stay, step = best[:, 1:], best[:, :-1]
        won = step > stay
        advance[:, t, 1:] = won
        best = torch.cat([best[:, :1], torch.where(won, step, stay)], dim=1) + values[:, t]
    # Backtracking is a scalar walk per item; plain Python over NumPy is faster here than tensor ops per frame.
    decisions = advance.numpy()
    path = np.zeros((b, t_max, n_max), dtype=np.float32)
    for item in range(b):
        index = int(num_phonemes[item]) - 1
        row_decisions, row_path = decisions[item], path[item]
        for t in range(int(num_frames[item]) - 1, -1, -1):
            row_path[t, index] = 1.0
            if index > 0 and row_decisions[t, index]:
                index -= 1
    path = torch.from_numpy(path).to(device=log_probs.device, dtype=log_probs.dtype)
    return path


def durations_from_path(path: torch.Tensor) -> torch.Tensor:
    """Frames per phoneme ``[B, N]`` (long) from a hard path ``[B, T, N]``."""
    return path.sum(1).long()


def forward_sum_loss(log_probs: torch.Tensor, num_phonemes: torch.Tensor, num_frames: torch.Tensor,
                     blank_log_prob: float = -1.0) -> torch.Tensor:
    """The RAD-TTS forward-sum loss: minus the log-likelihood, summed over every monotonic alignment, of the text given
    the frames, computed by ``nn.CTCLoss`` with phoneme i as CTC label i + 1 and a blank of fixed score; mean per item
    (CTC's mean over target lengths)."""
    b, t_max, n_max = log_probs.shape
    padded = F.pad(log_probs, (1, 0), value=blank_log_prob)  # class 0 = blank
    classes = torch.arange(n_max + 1, device=log_probs.device)
    valid = classes[None, :] <= num_phonemes[:, None]  # the blank and this item's phonemes
    # a large finite score, not -inf: CTC's backward returns NaN where its inputs hold -inf
    padded = padded.masked_fill(~valid[:, None, :], -1e4)
    log_softmax = padded.log_softmax(-1).transpose(0, 1)  # [T, B, N + 1]
    targets = (torch.arange(1, n_max + 1, device=log_probs.device)[None, :].expand(b, -1))
    return F.ctc_loss(log_softmax, targets, num_frames, num_phonemes, blank=0, reduction="mean", zero_infinity=True)


def binarization_loss(hard: torch.Tensor, soft_log_probs: torch.Tensor) -> torch.Tensor:
    """Pulls the soft alignment towards the hard one: mean of ``-log p`` on the hard path."""
    return -(soft_log_probs.clamp(min=-1e4) * hard).sum() / hard.sum().clamp(min=1)


@dataclass(frozen=True)
class AlignerConfig:
    """Attributes:
        dim: hidden width of the key and query encoders.
        attention_dim: width of the space where keys and queries are compared.
        temperature: scale of the negative squared distance that makes the attention logits.
        prior_scaling: the beta-binomial prior's concentration (lower: flatter).
    """

    num_symbols: int
    num_codebooks: int = 8
    codebook_size: int = 1024
    dim: int = 256
    attention_dim: int = 80
    temperature: float = 0.0005
    prior_scaling: float = 1.0


@dataclass
class Alignment:
    """Attributes:
        log_probs: ``[B, T, N]`` soft alignment (log-softmax over phonemes, prior included; padding -inf).
        path: ``[B, T, N]`` hard alignment from MAS.
        durations: ``[B, N]`` frames per phoneme (0 on padding); each row sums to its frame count.
        loss: forward-sum loss plus ``binarization_weight`` x binarization loss.
    """

    log_probs: torch.Tensor
    path: torch.Tensor
    durations: torch.Tensor
    loss: torch.Tensor


class Aligner(nn.Module):
    """Phoneme keys ``[B, N]`` ids vs acoustic queries ``[B, K, T]`` codes -> alignment."""

    def __init__(self, config: AlignerConfig):
        super().__init__()
        self.config = config
        d = config.dim
        self.text = nn.Embedding(config.num_symbols, d)
        self.codes = nn.Embedding(config.num_codebooks * config.codebook_size, d)
        self.register_buffer("offsets", torch.arange(config.num_codebooks) * config.codebook_size, persistent=False)
        self.key = nn.Sequential(nn.Conv1d(d, 2 * d, 3, padding=1), nn.ReLU(),
                                 nn.Conv1d(2 * d, config.attention_dim, 1))
        self.query = nn.Sequential(nn.Conv1d(d, 2 * d, 3, padding=1), nn.ReLU(), nn.Conv1d(2 * d, d, 1), nn.ReLU(),
                                   nn.Conv1d(d, config.attention_dim, 1))

    def soft(self, phonemes: torch.Tensor, num_phonemes: torch.Tensor, codes: torch.Tensor,
             num_frames: torch.Tensor) -> torch.Tensor:
        """Log soft alignment ``[B, T, N]``: log-softmax over phonemes of the attention logits plus the log prior."""
        keys = self.key(self.text(phonemes).transpose(1, 2))  # [B, A, N]
        k = codes.shape[1]
        embedded = self.codes(codes.clamp(min=0) + self.offsets[:k, None]).sum(1)  # [B, T, d]
        queries = self.query(embedded.transpose(1, 2))  # [B, A, T]
        distance = (queries[:, :, :, None] - keys[:, :, None, :]).pow(2).sum(1)  # [B, T, N]
        logits = -self.config.temperature * distance
        n_mask = lengths_mask(num_phonemes, phonemes.shape[1])
        logits = logits.masked_fill(~n_mask[:, None, :], float("-inf"))
        log_probs = logits.log_softmax(-1)
        prior = beta_binomial_prior(num_phonemes.cpu(), num_frames.cpu(), self.config.prior_scaling)
        log_probs = (log_probs + prior.to(log_probs.device)).log_softmax(-1)
        t_mask = lengths_mask(num_frames, codes.shape[2])
        return log_probs.masked_fill(~t_mask[:, :, None], float("-inf"))

    def forward(self, phonemes: torch.Tensor, num_phonemes: torch.Tensor, codes: torch.Tensor,
                num_frames: torch.Tensor, binarization_weight: float = 0.0) -> Alignment:
        log_probs = self.soft(phonemes, num_phonemes, codes, num_frames)
        path = monotonic_alignment_search(log_probs.detach(), num_phonemes, num_frames)
        loss = forward_sum_loss(log_probs.masked_fill(torch.isinf(log_probs), -1e4), num_phonemes, num_frames)
        if binarization_weight:
            loss = loss + binarization_weight * binarization_loss(path, log_probs)
        return Alignment(log_probs=log_probs, path=path, durations=durations_from_path(path), loss=loss)

    @torch.no_grad()
    def durations(self, phonemes: torch.Tensor, num_phonemes: torch.Tensor, codes: torch.Tensor,
                  num_frames: torch.Tensor) -> torch.Tensor:
        """Hard durations ``[B, N]`` (long); row b sums to ``num_frames[b]``."""
        log_probs = self.soft(phonemes, num_phonemes, codes, num_frames)
        return durations_from_path(monotonic_alignment_search(log_probs, num_phonemes, num_frames))



def frame_targets(durations: torch.Tensor, num_frames: int) -> torch.Tensor:
    """The phoneme index of every frame ``[B, T]`` for durations ``[B, N]`` (``-1`` past an item's total)."""
    ends = durations.cumsum(1)  # [B, N]
    frames = torch.arange(num_frames, device=durations.device)[None, :].expand(durations.shape[0], -1)
    index = torch.searchsorted(ends, frames.contiguous(), right=True)
    return torch.where(frames < ends[:, -1:], index, torch.full_like(index, -1))


def supervised_alignment_loss(log_probs: torch.Tensor, durations: torch.Tensor) -> torch.Tensor:
    """Mean ``-log p`` of each frame's phoneme under known ``durations`` ``[B, N]`` (a phoneme of 0 frames is no
    frame's target): what pulls the soft alignment to exact boundaries."""
    target = frame_targets(durations, log_probs.shape[1])
    valid = target >= 0
    picked = log_probs.clamp(min=-1e4).gather(2, target.clamp(min=0)[..., None])[..., 0]
    return -(picked * valid).sum() / valid.sum().clamp(min=1)


def boundary_error(predicted: torch.Tensor, exact: torch.Tensor, phones: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference in frames between where the ``phones`` (``[B, N]`` bool) of two duration sets
    ``[B, N]`` end."""
    diff = (predicted.cumsum(1) - exact.cumsum(1)).abs().float()
    return (diff * phones).sum() / phones.sum().clamp(min=1)


def uniform_durations(phones: torch.Tensor, num_frames: int) -> torch.Tensor:
    """``[N]`` durations that spread ``num_frames`` evenly over the ``phones`` (``[N]`` bool) and give the other
    tokens none: the baseline an aligner's ``boundary_error`` is read against."""
    count = int(phones.sum())
    durations = torch.zeros(len(phones), dtype=torch.long)
    if count:
        ends = torch.div(torch.arange(1, count + 1) * num_frames + count // 2, count, rounding_mode="floor")
        durations[phones] = torch.diff(ends, prepend=ends.new_zeros(1))
    return durations


@dataclass(frozen=True)
class AlignerModelConfig(AlignerConfig):
    """The aligner trained as a stage of its own (``AlignerModel``): an ``AlignerConfig`` and how it learns.

    Attributes:
        supervised_weight: weight of the supervised loss on items with stored (exact) durations; every item also
            takes the unsupervised forward-sum loss.
        binarization_weight: weight of the loss pulling the soft alignment towards the hard one.
    """

    supervised_weight: float = 1.0
    binarization_weight: float = 0.0

    @classmethod
    def paper(cls, num_symbols: int, num_codebooks: int = 8, codebook_size: int = 1024) -> "AlignerModelConfig":
        return cls(num_symbols, num_codebooks, codebook_size, dim=512)

    @classmethod
    def mini(cls, num_symbols: int, num_codebooks: int = 8, codebook_size: int = 1024) -> "AlignerModelConfig":
        return cls(num_symbols, num_codebooks, codebook_size)

    @classmethod
    def tiny(cls, num_symbols: int, num_codebooks: int = 8, codebook_size: int = 64) -> "AlignerModelConfig":
        return cls(num_symbols, num_codebooks, codebook_size, dim=32, attention_dim=16)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "AlignerModelConfig":
        return build(cls, data)


class AlignerModel(TokenModel):
    """The aligner as a token model of its own (stage ``align``), trained with the token models' loop: the
    forward-sum loss on every item, plus the supervised loss where the batch has stored durations (the exact timings
    of synthetic speech). Frozen, it labels the cuts without durations (``recipes/aligner/label.py``). Its accuracy
    is the share of frames that its hard alignment gives the phoneme the stored durations give (items with stored
    durations only). It does not synthesize."""

    name = "aligner"
    config_class = AlignerModelConfig
    all_stages = ("align",)
    progress_keys = ("align_loss", "align_accuracy")
    synthesizes = False

    def __init__(self, config: AlignerModelConfig):
        super().__init__()
        self.config = config
        self.stages = self.all_stages
        self.aligner = Aligner(config)

    @classmethod
    def build(cls, config: AlignerModelConfig, stages=None) -> "AlignerModel":
        cls.check_stages(cls.all_stages if stages is None else stages)
        return cls(config)

    def forward(self, batch, generator=None) -> Dict[str, StageOutput]:
        alignment = self.aligner(batch.phonemes, batch.phoneme_lens, batch.codes, batch.code_lens,
                                 binarization_weight=self.config.binarization_weight)
        loss = alignment.loss
        zero = torch.zeros((), device=loss.device)
        accuracy = zero
        if batch.durations is not None:
            known = batch.durations_known.to(loss.device)
            stored = batch.durations.to(loss.device)[known]
            loss = loss + self.config.supervised_weight * supervised_alignment_loss(alignment.log_probs[known],
                                                                                     stored)
            with torch.no_grad():
                target = frame_targets(stored, batch.codes.shape[2])
                got = frame_targets(alignment.durations[known], batch.codes.shape[2])
                valid = target >= 0
                accuracy = ((got == target) & valid).sum().float() / valid.sum().clamp(min=1)
        frames = int(batch.code_lens.sum())
        return {"align": StageOutput(loss, accuracy, zero, frames)}

    def generate(self, request):
        raise ValueError("an aligner release labels durations (recipes/aligner/label.py); it does not synthesize")
