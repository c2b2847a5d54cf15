"""Vocos-style decoder backbone: conv embedding, optional attention block, AdaLayerNorm, ConvNeXt blocks.

Parameter names follow the official checkpoints (``embed``, ``norm.scale``, ``convnext.N.dwconv`` ...), so official
weights load by a prefix change.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import AttentionConfig, DecoderConfig


class AdaLayerNorm(nn.Module):
    """LayerNorm whose scale and shift are rows of embeddings selected by ``bandwidth_id``."""

    def __init__(self, num_embeddings: int, dim: int, eps: float = 1e-6):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.scale = nn.Embedding(num_embeddings, dim)
        self.shift = nn.Embedding(num_embeddings, dim)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: torch.Tensor, bandwidth_id: torch.Tensor) -> torch.Tensor:
        """x: ``[B, T, C]``; bandwidth_id: ``[1]`` or ``[B]`` long."""
        scale = self.scale(bandwidth_id).unsqueeze(-2) if bandwidth_id.dim() else self.scale(bandwidth_id)
        shift = self.shift(bandwidth_id).unsqueeze(-2) if bandwidth_id.dim() else self.shift(bandwidth_id)
        return F.layer_norm(x, (self.dim,), eps=self.eps) * scale + shift


class ConvNeXtBlock(nn.Module):
    """Depthwise conv -> AdaLayerNorm -> Linear -> GELU -> Linear, scaled by a learned ``gamma``, plus the input."""

    def __init__(self, dim: int, intermediate_dim: int, layer_scale: float, num_bandwidths: int, kernel_size: int):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = AdaLayerNorm(num_bandwidths, dim)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor, bandwidth_id: torch.Tensor) -> torch.Tensor:
        """x: ``[B, C, T]``."""
        h = self.dwconv(x).transpose(1, 2)
        h = self.pwconv2(F.gelu(self.pwconv1(self.norm(h, bandwidth_id))))
        return x + (self.gamma * h).transpose(1, 2)


def _group_norm(channels: int, max_groups: int) -> nn.GroupNorm:
    groups = max(g for g in range(1, max_groups + 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels, eps=1e-6)


class ResnetBlock(nn.Module):
    """GroupNorm -> swish -> conv(3) -> GroupNorm -> swish -> dropout -> conv(3), plus the input."""

    def __init__(self, dim: int, config: AttentionConfig):
        super().__init__()
        self.norm1 = _group_norm(dim, config.max_groups)
        self.conv1 = nn.Conv1d(dim, dim, 3, padding=1)
        self.norm2 = _group_norm(dim, config.max_groups)
        self.dropout = nn.Dropout(config.dropout)
        self.conv2 = nn.Conv1d(dim, dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return x + h


class SelfAttention(nn.Module):
    """Single-head self-attention over time with 1x1 conv query, key, value and output projections."""

    def __init__(self, dim: int, config: AttentionConfig):
        super().__init__()
        self.norm = _group_norm(dim, config.max_groups)
        self.q = nn.Conv1d(dim, dim, 1)
        self.k = nn.Conv1d(dim, dim, 1)
        self.v = nn.Conv1d(dim, dim, 1)
        self.proj_out = nn.Conv1d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        q, k, v = (proj(h).transpose(1, 2) for proj in (self.q, self.k, self.v))
        h = F.scaled_dot_product_attention(q, k, v).transpose(1, 2)
        return x + self.proj_out(h)


class AttentionBlock(nn.Module):
    """The paper's attention module (Appendix I): resnet blocks, self-attention, resnet blocks, GroupNorm."""

    def __init__(self, dim: int, config: AttentionConfig):
        super().__init__()
        layers = [ResnetBlock(dim, config) for _ in range(config.resnet_blocks_before)]
        layers.append(SelfAttention(dim, config))
        layers += [ResnetBlock(dim, config) for _ in range(config.resnet_blocks_after)]
        layers.append(_group_norm(dim, config.max_groups))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class VocosBackbone(nn.Module):
    """Args: input_dim (the codec latent D), config. ``[B, D, T]`` -> ``[B, T, dim]``."""

    def __init__(self, input_dim: int, config: DecoderConfig):
        super().__init__()
        self.embed = nn.Conv1d(input_dim, config.dim, config.kernel_size, padding=config.kernel_size // 2)
        self.attention = AttentionBlock(config.dim, config.attention) if config.attention is not None else None
        self.norm = AdaLayerNorm(config.num_bandwidths, config.dim)
        scale = config.layer_scale_init if config.layer_scale_init is not None else 1.0 / config.num_layers
        self.convnext = nn.ModuleList([
            ConvNeXtBlock(config.dim, config.intermediate_dim, scale, config.num_bandwidths, config.kernel_size)
            for _ in range(config.num_layers)
        ])
        self.final_layer_norm = nn.LayerNorm(config.dim, eps=1e-6)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor, bandwidth_id: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        if self.attention is not None:
            x = self.attention(x)
        x = self.norm(x.transpose(1, 2), bandwidth_id).transpose(1, 2)
        for block in self.convnext:
            x = block(x, bandwidth_id)
        return self.final_layer_norm(x.transpose(1, 2))


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv1d, nn.Linear)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)
