"""Residual vector quantizers: plain RVQ and MCRVQ (masked channel RVQ, Language-Codec section 3.2).

One routine (``forward``) serves training and encoding, so ``encode(x) == forward(x).codes`` in eval mode. The official
code breaks that: its ``quantizer.encode`` runs plain RVQ without the masks and disagrees with training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .config import QuantizerConfig


@dataclass
class QuantizerOutput:
    """Attributes:
        quantized: ``[B, D, T]`` sum of the selected codewords (straight-through in training).
        codes: ``[B, K, T]`` indices, K = number of quantizers used.
        commit_loss: scalar, MSE between each layer's input and its codeword, averaged over layers.
    """

    quantized: torch.Tensor
    codes: torch.Tensor
    commit_loss: torch.Tensor


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def nearest_codes(x: torch.Tensor, embed: torch.Tensor, embed_sq: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Index of the nearest codeword by squared Euclidean distance.

    Args:
        x: ``[N, D]`` vectors.
        embed: ``[C, D]`` codebook.
        embed_sq: ``[C]`` squared norms of the codewords, when the caller has them.
    Returns:
        ``[N]`` indices. ``||x||^2`` is the same for every codeword of a row and is left out of the argmin.
    """
    if embed_sq is None:
        embed_sq = embed.pow(2).sum(1)
    return torch.addmm(embed_sq.unsqueeze(0), x, embed.t(), alpha=-2.0).argmin(dim=1)


def kmeans(samples: torch.Tensor, num_clusters: int, num_iters: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means. Returns the means ``[C, D]`` and the cluster sizes ``[C]``; empty clusters keep their mean."""
    n = samples.shape[0]
    if n >= num_clusters:
        means = samples[torch.randperm(n, device=samples.device)[:num_clusters]]
    else:
        means = samples[torch.randint(0, n, (num_clusters,), device=samples.device)]
    bins = torch.zeros(num_clusters, device=samples.device)
    for _ in range(num_iters):
        buckets = nearest_codes(samples, means)
        bins = torch.bincount(buckets, minlength=num_clusters).to(samples.dtype)
        sums = torch.zeros_like(means).index_add_(0, buckets, samples)
        empty = bins == 0
        means = torch.where(empty[:, None], means, sums / bins.clamp(min=1)[:, None])
    return means, bins


class EuclideanCodebook(nn.Module):
    """A codebook updated by exponential moving averages (EnCodec), not by gradients.

    Buffers (names as in the official checkpoints): ``inited`` [1], ``cluster_size`` [C], ``embed`` [C, D],
    ``embed_avg`` [C, D]. In training: k-means on the first batch, EMA of counts and sums with Laplace smoothing, and
    replacement of codewords whose EMA count falls below ``threshold_ema_dead_code`` by random current inputs.
    """

    def __init__(self, dim: int, config: QuantizerConfig):
        super().__init__()
        self.codebook_size = config.codebook_size
        self.decay, self.epsilon = config.decay, config.epsilon
        self.kmeans_iters = config.kmeans_iters
        self.threshold = config.threshold_ema_dead_code
        self.register_buffer("inited", torch.zeros(1))
        self.register_buffer("cluster_size", torch.zeros(config.codebook_size))
        self.register_buffer("embed", torch.zeros(config.codebook_size, dim))
        self.register_buffer("embed_avg", torch.zeros(config.codebook_size, dim))
        self._sq_cache: Optional[Tuple[tuple, torch.Tensor]] = None

    def squared_norms(self) -> torch.Tensor:
        """``[C]`` squared codeword norms, cached until the codebook changes (storage or version counter)."""
        key = (self.embed.data_ptr(), self.embed._version, self.embed.dtype)
        if self._sq_cache is None or self._sq_cache[0] != key:
            self._sq_cache = (key, self.embed.pow(2).sum(1))
        return self._sq_cache[1]

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        return nearest_codes(x, self.embed, self.squared_norms())

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        return F.embedding(codes, self.embed)

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """k-means on ``x`` [N, D] (the first training batch); rank 0's result is shared with every rank."""
        embed, sizes = kmeans(x.float(), self.codebook_size, self.kmeans_iters)
        self.embed.copy_(embed)
        self.embed_avg.copy_(embed)
        self.cluster_size.copy_(sizes)
        self.inited.fill_(1.0)
        if _distributed():
            for buf in (self.embed, self.embed_avg, self.cluster_size):
                dist.broadcast(buf, src=0)

    @torch.no_grad()
    def update(self, x: torch.Tensor, codes: torch.Tensor) -> None:
        """EMA update from inputs ``x`` [N, D] and their codes [N]; statistics are summed over ranks."""
        x = x.float()
        counts = torch.bincount(codes, minlength=self.codebook_size).to(x.dtype)
        sums = torch.zeros_like(self.embed).index_add_(0, codes, x)
        if _distributed():
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_avg.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.epsilon) / (total + self.codebook_size * self.epsilon) * total
        self.embed.copy_(self.embed_avg / smoothed.unsqueeze(1))
        self._expire_dead_codes(x)

    def _expire_dead_codes(self, x: torch.Tensor) -> None:
        # (ours) EnCodec replaces dead codewords in `embed` only, and the next EMA step overwrites them from
        # `embed_avg`, so its replacement has no effect. Here all three buffers are reset consistently.
        if self.threshold <= 0:
            return
        dead = self.cluster_size < self.threshold
        if not bool(dead.any()):
            return
        picks = torch.randint(0, x.shape[0], (self.codebook_size,), device=x.device)
        fresh = x[picks]
        if _distributed():
            dist.broadcast(fresh, src=0)
        self.embed.copy_(torch.where(dead[:, None], fresh, self.embed))
        self.embed_avg.copy_(torch.where(dead[:, None], fresh * self.threshold, self.embed_avg))
        self.cluster_size.copy_(torch.where(dead, torch.full_like(self.cluster_size, self.threshold),
                                            self.cluster_size))


class VectorQuantizer(nn.Module):
    """One quantizer layer over ``[B, D, T]`` inputs."""

    def __init__(self, dim: int, config: QuantizerConfig):
        super().__init__()
        self.codebook = EuclideanCodebook(dim, config)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns the codeword per frame ``[B, D, T]`` (straight-through in training), codes ``[B, T]`` and the
        commitment loss (scalar)."""
        b, d, t = x.shape
        flat = x.transpose(1, 2).reshape(-1, d)
        if self.training:
            if not bool(self.codebook.inited.item()):
                self.codebook.initialize(flat.detach())
            codes = self.codebook.nearest(flat.detach())
        else:
            codes = self.codebook.nearest(flat)
        # The codeword is looked up before the EMA step, as in EnCodec and the official code.
        quantized = self.codebook.lookup(codes).view(b, t, d).transpose(1, 2)
        if self.training:
            self.codebook.update(flat.detach(), codes)
            commit = F.mse_loss(quantized.detach(), x)
            quantized = x + (quantized - x).detach()
        else:
            commit = x.new_zeros(())
        return quantized, codes.view(b, t), commit


class ResidualQuantizer(nn.Module):
    """Plain residual VQ: quantizer k encodes what quantizers 1..k-1 left (the ablation's "without MCRVQ")."""

    def __init__(self, dim: int, config: QuantizerConfig):
        super().__init__()
        self.config = config
        self.dim = dim
        self.layers = nn.ModuleList([VectorQuantizer(dim, config) for _ in range(config.num_quantizers)])

    @property
    def num_quantizers(self) -> int:
        return len(self.layers)

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def num_initialized(self) -> int:
        """How many codebooks are k-means-initialized: 0 before the first quantized step (a continuous warm-up)."""
        return sum(bool(layer.codebook.inited.item()) for layer in self.layers)

    def sample_num_quantizers(self) -> int:
        """The number of quantizers for one training step, uniform over ``config.train_num_quantizers``."""
        choices = self.config.train_num_quantizers
        return choices[int(torch.randint(0, len(choices), (1,)).item())]

    def forward(self, z: torch.Tensor, num_quantizers: Optional[int] = None) -> QuantizerOutput:
        """Args:
            z: latent ``[B, D, T]``.
            num_quantizers: layers to use; default: all in eval mode, a random choice in training.
        """
        n = self._resolve(num_quantizers)
        quantized, codes, losses = self._quantize(z, n)
        return QuantizerOutput(quantized=quantized, codes=torch.stack(codes, dim=1),
                               commit_loss=torch.stack(losses).mean())

    def _resolve(self, num_quantizers: Optional[int]) -> int:
        if num_quantizers is None:
            return self.sample_num_quantizers() if self.training else self.num_quantizers
        if not 1 <= num_quantizers <= self.num_quantizers:
            raise ValueError(f"num_quantizers must be in 1..{self.num_quantizers}, got {num_quantizers}")
        return num_quantizers

    def _residual_layers(self, residual: torch.Tensor, layers: Sequence[VectorQuantizer],
                         ) -> Tuple[torch.Tensor, List[torch.Tensor], List[torch.Tensor]]:
        total = torch.zeros_like(residual)
        codes, losses = [], []
        for layer in layers:
            q, c, loss = layer(residual)
            residual = residual - q.detach()
            total = total + q
            codes.append(c)
            losses.append(loss)
        return total, codes, losses

    def _quantize(self, z: torch.Tensor, n: int) -> Tuple[torch.Tensor, List[torch.Tensor], List[torch.Tensor]]:
        return self._residual_layers(z, self.layers[:n])

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, K, T]`` (K <= num_quantizers) -> quantized latent ``[B, D, T]`` (sum of codewords)."""
        out = self.layers[0].codebook.lookup(codes[:, 0])
        for k in range(1, codes.shape[1]):
            out = out + self.layers[k].codebook.lookup(codes[:, k])
        return out.transpose(1, 2)


class MaskedChannelResidualQuantizer(ResidualQuantizer):
    """MCRVQ: the first ``num_groups`` quantizers run in parallel, each on the full latent with every channel outside
    its group zeroed (groups split at ``i * D // num_groups``: [0:42], [42:85], [85:128] for D=128) and each
    returning a full-width codeword; the next quantizer takes ``z`` minus their sum; the rest are residual steps.
    """

    def __init__(self, dim: int, config: QuantizerConfig):
        super().__init__(dim, config)
        g = config.num_groups
        bounds = [i * dim // g for i in range(g + 1)]
        masks = torch.zeros(g, dim, 1)
        for i in range(g):
            masks[i, bounds[i]:bounds[i + 1]] = 1.0
        self.register_buffer("masks", masks, persistent=False)
        self.bounds = bounds

    def _quantize(self, z: torch.Tensor, n: int) -> Tuple[torch.Tensor, List[torch.Tensor], List[torch.Tensor]]:
        g = min(n, len(self.bounds) - 1)
        total = torch.zeros_like(z)
        codes, losses = [], []
        parallel = torch.zeros_like(z)
        for i in range(g):
            q, c, loss = self.layers[i](z * self.masks[i])
            total = total + q
            parallel = parallel + q.detach()
            codes.append(c)
            losses.append(loss)
        if n > g:
            rest, rest_codes, rest_losses = self._residual_layers(z - parallel, self.layers[g:n])
            total = total + rest
            codes += rest_codes
            losses += rest_losses
        return total, codes, losses


QUANTIZERS = {"rvq": ResidualQuantizer, "mcrvq": MaskedChannelResidualQuantizer}


def build_quantizer(dim: int, config: QuantizerConfig) -> ResidualQuantizer:
    return QUANTIZERS[config.kind](dim, config)
