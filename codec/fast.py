"""Inference-only SEANet encoder: the same arithmetic as ``SeanetEncoder``, laid out for CPU speed.

Why hand-written: at batch 1 the encoder's early layers have few channels and ~10^5 time steps, shapes for which
oneDNN's ``conv1d`` (channels-first, with a layout reorder per call) runs at 5-25 GFLOP/s on a 2-core CPU. Keeping the
activations time-major (``[B, T, C]``) and running each conv as a channels-last ``conv2d`` over a ``[B, C, 1, T]`` view
of the same memory cuts the conv time of the release encoder by more than half (``benchmarks/codec_speed.py``).
Reflect padding and the ELU before each conv are written straight into a pre-allocated padded buffer, weight norm is
folded once, and the result equals the module path up to float rounding (the tests check the codes are identical).
"""

from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn.functional as F

from .encoder import SeanetEncoder
from .modules import SeanetConv1d

# Every layer's input must be longer than its reflect padding; shorter inputs take the module path.
MIN_SAMPLES = 4800


class _Conv:
    """One ``SeanetConv1d`` with its folded weight as a channels-last ``[C_out, C_in, 1, k]`` kernel."""

    def __init__(self, layer: SeanetConv1d):
        self.layer = layer
        self.weight = layer.conv.weight.detach().unsqueeze(2).contiguous(memory_format=torch.channels_last)
        self.bias = layer.conv.bias.detach().clone()
        self.stride = (1, layer.stride)
        self.dilation = (1, layer.conv.dilation)

    def __call__(self, x: torch.Tensor, elu: bool) -> torch.Tensor:
        """``[B, T, C_in]`` -> ``[B, T_out, C_out]``: pad (after an ELU when asked), then convolve."""
        left, right = self.layer.padding_for(x.shape[1])
        padded = _pad_time(x, left, right, elu)
        out = F.conv2d(padded.permute(0, 2, 1).unsqueeze(2), self.weight, self.bias, self.stride, 0, self.dilation)
        return out.squeeze(2).permute(0, 2, 1)  # channels-last output: already [B, T, C] in memory


def _pad_time(x: torch.Tensor, left: int, right: int, elu: bool) -> torch.Tensor:
    """``reflect_pad(elu(x) if elu else x)`` along time for ``[B, T, C]``, in one allocation."""
    b, t, c = x.shape
    if not (left or right or elu):
        return x
    buf = x.new_empty(b, left + t + right, c)
    mid = buf[:, left:left + t]
    if elu:
        torch.ops.aten.elu.out(x, 1.0, 1, 1, out=mid)
    else:
        mid.copy_(x)
    if left:
        buf[:, :left] = buf[:, left + 1:2 * left + 1].flip(1)
    if right:
        buf[:, left + t:] = buf[:, left + t - 1 - right:left + t - 1].flip(1)
    return buf


class FastEncoder:
    """Built from a ``SeanetEncoder`` (weights are read once); call with ``[B, 1, L]`` -> ``[B, D, ceil(L / hop)]``."""

    def __init__(self, encoder: SeanetEncoder):
        with torch.no_grad():
            self.lstm = encoder.lstm
            self.stem = _Conv(encoder.stem)
            self.stages: List[Tuple[_Conv, _Conv, _Conv, _Conv]] = [
                (_Conv(s.residual.conv1), _Conv(s.residual.conv2), _Conv(s.residual.shortcut), _Conv(s.down))
                for s in encoder.stages
            ]
            self.proj = _Conv(encoder.proj)

    @torch.inference_mode()
    def __call__(self, wav: torch.Tensor) -> torch.Tensor:
        x = self.stem(wav.transpose(1, 2), elu=False)
        for conv1, conv2, shortcut, down in self.stages:
            h = conv1(x, elu=True)
            y = conv2(F.elu(h, inplace=True), elu=False).add_(shortcut(x, elu=False))
            x = down(y, elu=True)
        if self.lstm is not None:
            seq = x.transpose(0, 1)  # [T, B, C]
            out, _ = self.lstm.lstm(seq)
            x = out.add_(seq).transpose(0, 1)
        return self.proj(x, elu=True).transpose(1, 2).contiguous()
