"""Token sampling for autoregressive decoding: temperature, top-k, top-p, and repetition-aware sampling (VALL-E 2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch


@dataclass(frozen=True)
class SamplingConfig:
    """Attributes:
        greedy: argmax (temperature, top-k, top-p and repetition-aware sampling are ignored).
        ras_window, ras_threshold: repetition-aware sampling: when the nucleus-sampled token already fills more than
            ``threshold`` of the last ``window`` tokens, draw again from the whole distribution (0 window: off).
        constrain_alignment: a model with a guided alignment head (VALL-E's ``align_layer``) decodes with it moving
            monotonically through the text and ends only at the text's end; models without one ignore it.
        guidance: classifier-free guidance by the text, for models trained to predict without it too
            (``TokenModel.supports_guidance``): logits ``c + guidance * (c - u)`` from the prediction with the text
            (c) and without (u); 0 is off.
    """

    greedy: bool = False
    temperature: float = 1.0
    top_k: int = 25
    top_p: float = 0.8
    ras_window: int = 10
    ras_threshold: float = 0.1
    constrain_alignment: bool = True
    guidance: float = 0.0


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Logits ``[..., V]`` with everything outside the top-k and the top-p nucleus of each row set to -inf."""
    out = logits.clone()
    if 0 < top_k < out.shape[-1]:
        kth = torch.topk(out, top_k, dim=-1).values[..., -1:]
        out = out.masked_fill(out < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(out, dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative > top_p
        drop[..., 1:] = drop[..., :-1].clone()  # keep the token that crosses the threshold
        drop[..., 0] = False
        out = out.masked_fill(torch.zeros_like(drop).scatter(-1, order, drop), float("-inf"))
    return out


def sample_token(logits: torch.Tensor, config: SamplingConfig, history: List[int],
                 generator: Optional[torch.Generator] = None) -> int:
    if config.greedy:
        return int(logits.argmax())
    scaled = logits / max(config.temperature, 1e-5)
    probs = filter_logits(scaled, config.top_k, config.top_p).softmax(-1)
    token = int(torch.multinomial(probs, 1, generator=generator))
    if config.ras_window:
        recent = history[-config.ras_window:]
        if recent and recent.count(token) / config.ras_window > config.ras_threshold:
            token = int(torch.multinomial(scaled.softmax(-1), 1, generator=generator))
    return token


def next_token(logits: torch.Tensor, eos: int, history: List[int], min_tokens: int, config: SamplingConfig,
               generator: Optional[torch.Generator] = None) -> int:
    """The next token of one sequence; the end token is masked out while ``history`` is shorter than ``min_tokens``."""
    if len(history) < min_tokens:
        logits = logits.clone()
        logits[eos] = float("-inf")
    return sample_token(logits, config, history, generator)


def length_limits(num_phonemes: int, frame_rate: float, min_per_phoneme: float = 2.0,
                  max_per_phoneme: float = 20.0, max_seconds: float = 40.0) -> Tuple[int, int]:
    """(min, max) frames to generate for ``num_phonemes`` target phonemes (word boundaries included).

    Read speech runs at roughly 10-15 phoneme tokens per second, 5-8 frames each at 75 Hz; the bounds leave room for
    very fast and very slow voices while stopping a model that never emits its end token.
    """
    cap = max(2, int(max_seconds * frame_rate))
    low = min(max(1, int(num_phonemes * min_per_phoneme)), cap - 1)  # the cap holds for any text length
    high = max(low + 1, min(int(num_phonemes * max_per_phoneme), cap))
    return low, high
