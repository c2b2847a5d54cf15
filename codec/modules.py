"""Building blocks shared by the encoder and the discriminators: weight-normed convolutions with EnCodec padding."""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn


class WeightNorm(nn.Module):
    """Base for layers whose weight is ``g * v / ||v||`` (norm over all but the first dim).

    Hand-rolled instead of ``torch.nn.utils.parametrizations.weight_norm`` for two reasons: the parameters keep the
    names ``weight_g`` / ``weight_v`` of the official checkpoints, and inference reuses the folded weight until a
    parameter changes (tracked through the tensors' storage and version counters), so eval-mode calls pay nothing
    for the norm.
    """

    weight_g: nn.Parameter
    weight_v: nn.Parameter

    def _init_weight_norm(self, weight: torch.Tensor) -> None:
        self.weight_v = nn.Parameter(weight.detach().clone())
        self.weight_g = nn.Parameter(_norm_except_first(weight.detach()))
        self._cache: Optional[Tuple[tuple, torch.Tensor]] = None

    def _compute(self) -> torch.Tensor:
        return self.weight_v * (self.weight_g / _norm_except_first(self.weight_v))

    @property
    def weight(self) -> torch.Tensor:
        if self.training or torch.is_grad_enabled():
            return self._compute()
        g, v = self.weight_g, self.weight_v
        key = (g.data_ptr(), g._version, v.data_ptr(), v._version, v.dtype)
        if self._cache is None or self._cache[0] != key:
            with torch.no_grad():
                self._cache = (key, self._compute())
        return self._cache[1]


def _norm_except_first(w: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(w, dim=tuple(range(1, w.dim())), keepdim=True)


class WNConv1d(WeightNorm):
    """``nn.Conv1d`` with weight norm; no padding of its own."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, dilation: int = 1,
                 groups: int = 1, padding: int = 0):
        super().__init__()
        conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation, groups=groups)
        self._init_weight_norm(conv.weight)
        self.bias = nn.Parameter(conv.bias.detach().clone())
        self.stride, self.dilation, self.groups, self.padding = stride, dilation, groups, padding
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class WNConv2d(WeightNorm):
    """``nn.Conv2d`` with weight norm (discriminators)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Tuple[int, int],
                 stride: Tuple[int, int] = (1, 1), padding: Tuple[int, int] = (0, 0)):
        super().__init__()
        conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride)
        self._init_weight_norm(conv.weight)
        self.bias = nn.Parameter(conv.bias.detach().clone())
        self.stride, self.padding = stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)


def reflect_pad(x: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """Reflect padding that also works when the input is shorter than the padding (zero-extends first, as EnCodec)."""
    length = x.shape[-1]
    max_pad = max(left, right)
    if length > max_pad:
        return F.pad(x, (left, right), mode="reflect")
    extra = max_pad - length + 1
    x = F.pad(x, (0, extra))
    return F.pad(x, (left, right), mode="reflect")[..., : length + left + right]


class SeanetConv1d(nn.Module):
    """Weight-normed conv with EnCodec's non-causal padding.

    Pads ``k_eff - stride`` in total (one more on the left when odd) plus what the last window needs, so the output
    has ``ceil(L / stride)`` frames.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.conv = WNConv1d(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation)
        self.stride = stride
        self.effective_kernel = (kernel_size - 1) * dilation + 1

    def padding_for(self, length: int) -> Tuple[int, int]:
        total = self.effective_kernel - self.stride
        frames = math.ceil((length - self.effective_kernel + total) / self.stride + 1)
        extra = (frames - 1) * self.stride + self.effective_kernel - total - length
        right = total // 2
        return total - right, right + extra

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right = self.padding_for(x.shape[-1])
        return self.conv(reflect_pad(x, left, right))
