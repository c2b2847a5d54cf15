"""The transformer shared by VALL-E and MobileSpeech: pre-norm blocks, optional stage-conditioned adaptive
LayerNorm (VALL-E's NAR), optional cross-attention (MobileSpeech), and a key/value cache for incremental decoding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class TransformerConfig:
    """Attributes:
        dropout: on the residual branches and inside the feed-forward network.
        num_conditions: rows of the adaptive LayerNorm's scale/shift tables (0: plain LayerNorm).
        cross_attention: add a cross-attention sub-layer to every block.
        attention_dropout: on the attention probabilities; None means ``dropout`` (what every config before this
            field meant). Any non-zero value makes ``scaled_dot_product_attention`` leave its fused kernel for the
            materialized one, which costs about 3x per attention call on a CPU (docs/speed.md).
    """

    dim: int = 1024
    heads: int = 16
    layers: int = 12
    ffn_dim: int = 4096
    dropout: float = 0.1
    num_conditions: int = 0
    cross_attention: bool = False
    attention_dropout: Optional[float] = None

    def __post_init__(self):
        for name in ("dim", "heads", "layers", "ffn_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"transformer {name} must be a positive integer, got {value!r}")
        if self.dim % self.heads:
            raise ValueError(f"transformer dim {self.dim} is not divisible by heads {self.heads}")
        for name in ("dropout", "attention_dropout"):
            value = getattr(self, name)
            if name == "attention_dropout" and value is None:
                continue
            if isinstance(value, bool) or not (isinstance(value, (int, float)) and 0 <= value < 1):
                raise ValueError(f"transformer {name} must be in [0, 1), got {value!r}")
        if isinstance(self.num_conditions, bool) or not isinstance(self.num_conditions, int) or self.num_conditions < 0:
            raise ValueError(f"transformer num_conditions must be an integer >= 0, got {self.num_conditions!r}")


class KVCache:
    """Keys and values of every layer for the positions seen so far: ``[B, heads, T, head_dim]`` per layer.

    Each layer's keys and values live in a buffer with room to spare, written in place; a full buffer is replaced by
    one of twice the size. Concatenating the new position onto the whole cache at every step instead copies the cache
    each time (quadratic in the length): measured, that took 68 % of a batch of 8 decoding 100 frames on one thread.
    """

    def __init__(self, layers: int):
        self.keys: List[Optional[torch.Tensor]] = [None] * layers  # buffers [B, heads, capacity, head_dim]
        self.values: List[Optional[torch.Tensor]] = [None] * layers
        self.lengths = [0] * layers

    @property
    def length(self) -> int:
        return self.lengths[0]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Appends ``k``, ``v`` ``[B, heads, t, head_dim]`` to layer ``layer``; returns all its keys and values."""
        start, end = self.lengths[layer], self.lengths[layer] + k.shape[2]
        buffer = self.keys[layer]
        if buffer is None or end > buffer.shape[2]:
            capacity = max(2 * end, 64)
            grown_k = k.new_empty(k.shape[0], k.shape[1], capacity, k.shape[3])
            grown_v = v.new_empty(grown_k.shape)
            if buffer is not None:
                grown_k[:, :, :start] = buffer[:, :, :start]
                grown_v[:, :, :start] = self.values[layer][:, :, :start]
            self.keys[layer], self.values[layer] = grown_k, grown_v
        self.keys[layer][:, :, start:end] = k
        self.values[layer][:, :, start:end] = v
        self.lengths[layer] = end
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]


class Norm(nn.Module):
    """LayerNorm, or AdaLN when ``num_conditions``: ``LN(x) * (1 + scale[c]) + shift[c]`` (zero-initialized)."""

    def __init__(self, dim: int, num_conditions: int = 0):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=num_conditions == 0)
        if num_conditions:
            self.scale = nn.Embedding(num_conditions, dim)
            self.shift = nn.Embedding(num_conditions, dim)
            nn.init.zeros_(self.scale.weight)
            nn.init.zeros_(self.shift.weight)
        self.conditional = num_conditions > 0

    def forward(self, x: torch.Tensor, condition: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = self.norm(x)
        if self.conditional:
            x = x * (1 + self.scale(condition)[:, None]) + self.shift(condition)[:, None]
        return x


class Dropout(nn.Module):
    """Inverted dropout like ``nn.Dropout``, with a cheaper random mask on a CPU.

    Hand-rolled because PyTorch's CPU dropout draws one double-precision Bernoulli sample per element: 55 ms for a
    mini decoder's ``[5600, 256]`` activations on one thread, most of it the draw, which made dropout about a tenth of
    a mini token-model step (docs/speed.md). Here one 64-bit draw gives four elements 15 random bits each (20 ms): the
    drop probability is rounded to a multiple of 1/32768 and the kept values are scaled by the exact inverse of the
    keep probability. The mask comes from the global generator, as ``nn.Dropout``'s does. Other devices use
    ``F.dropout``.
    """

    RESOLUTION = 1 << 15

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.threshold = round(p * self.RESOLUTION)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.threshold == 0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, True)
        n = x.numel()
        bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_().view(torch.int16)[:n].view(x.shape)
        keep = (bits & (self.RESOLUTION - 1)) >= self.threshold
        return x * (keep.to(x.dtype) * (self.RESOLUTION / (self.RESOLUTION - self.threshold)))

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.head_dim, self.dropout = heads, dim // heads, dropout
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, memory: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None,
                cache: Optional[KVCache] = None, layer: int = 0, need_weights: bool = False):
        """x ``[B, T, D]``; memory (cross-attention) ``[B, S, D]``; mask ``[B or 1, 1 or heads, T, S]`` True = may
        attend. With ``need_weights``, returns ``(output, probabilities [B, heads, T, S])``: the attention is then
        computed explicitly (``scaled_dot_product_attention`` does not return its weights)."""
        b, t, _ = x.shape
        q = self.q(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k, v = self.kv(x if memory is None else memory).view(b, -1, 2, self.heads, self.head_dim).permute(
            2, 0, 3, 1, 4)
        if cache is not None:
            k, v = cache.update(layer, k, v)
        dropout = self.dropout if self.training else 0.0
        if not need_weights:
            h = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
            return self.out(h.transpose(1, 2).reshape(b, t, -1))
        scores = (q @ k.transpose(-2, -1)) * self.head_dim ** -0.5
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        probs = scores.float().softmax(-1).to(q.dtype)
        h = F.dropout(probs, dropout, True) @ v if dropout else probs @ v
        return self.out(h.transpose(1, 2).reshape(b, t, -1)), probs


class Block(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.norm1 = Norm(config.dim, config.num_conditions)
        attention_dropout = config.dropout if config.attention_dropout is None else config.attention_dropout
        self.attn = Attention(config.dim, config.heads, attention_dropout)
        if config.cross_attention:
            self.norm_cross = Norm(config.dim, config.num_conditions)
            self.cross = Attention(config.dim, config.heads, attention_dropout)
        self.norm2 = Norm(config.dim, config.num_conditions)
        self.ffn = nn.Sequential(nn.Linear(config.dim, config.ffn_dim), nn.GELU(), Dropout(config.dropout),
                                 nn.Linear(config.ffn_dim, config.dim))
        self.drop = Dropout(config.dropout)

    def forward(self, x, mask=None, condition=None, memory=None, memory_mask=None, cache=None, layer=0,
                need_weights=False):
        """The block's output, and with ``need_weights`` its self-attention probabilities as well."""
        attended = self.attn(self.norm1(x, condition), mask=mask, cache=cache, layer=layer, need_weights=need_weights)
        weights = None
        if need_weights:
            attended, weights = attended
        x = x + self.drop(attended)
        if memory is not None:
            x = x + self.drop(self.cross(self.norm_cross(x, condition), memory=memory, mask=memory_mask))
        x = x + self.drop(self.ffn(self.norm2(x, condition)))
        return (x, weights) if need_weights else x


class Transformer(nn.Module):
    """``forward(x [B, T, D], mask, condition, memory, memory_mask, cache) -> [B, T, D]`` (final norm applied).

    ``probe=i`` also returns layer i's self-attention probabilities ``[B, heads, T, S]`` (VALL-E's guided alignment
    head), and ``probe_mask`` replaces ``mask`` in that layer only (attention-constrained decoding).
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.layers)])
        self.norm = Norm(config.dim, config.num_conditions)

    def new_cache(self) -> KVCache:
        return KVCache(len(self.blocks))

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None, condition: Optional[torch.Tensor] = None,
                memory: Optional[torch.Tensor] = None, memory_mask: Optional[torch.Tensor] = None,
                cache: Optional[KVCache] = None, probe: Optional[int] = None,
                probe_mask: Optional[torch.Tensor] = None):
        weights = None
        for i, block in enumerate(self.blocks):
            if i == probe:
                x, weights = block(x, mask if probe_mask is None else probe_mask, condition, memory, memory_mask,
                                   cache, i, need_weights=True)
            else:
                x = block(x, mask, condition, memory, memory_mask, cache, i)
        x = self.norm(x, condition)
        return x if probe is None else (x, weights)


def sinusoidal(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal encodings ``[..., dim]`` of integer positions (Vaswani et al.)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=positions.device, dtype=torch.float32) / half)
    angles = positions.float()[..., None] * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=-1)
