"""SEANet encoder (EnCodec), as used by Language-Codec: waveform [B, 1, L] -> latent [B, D, ceil(L / hop)]."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import EncoderConfig
from .modules import SeanetConv1d, WNConv1d, _norm_except_first


class ResidualUnit(nn.Module):
    """ELU -> conv(k, dim -> dim/compress) -> ELU -> conv(1, -> dim), plus a 1x1 conv shortcut."""

    def __init__(self, dim: int, kernel_size: int, compress: int):
        super().__init__()
        hidden = dim // compress
        self.conv1 = SeanetConv1d(dim, hidden, kernel_size)
        self.conv2 = SeanetConv1d(hidden, dim, 1)
        self.shortcut = SeanetConv1d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv2(F.elu(self.conv1(F.elu(x))))


class EncoderStage(nn.Module):
    """One resolution: a residual unit, then ELU and a strided conv (kernel 2 x stride) that doubles the channels."""

    def __init__(self, dim: int, stride: int, config: EncoderConfig):
        super().__init__()
        self.residual = ResidualUnit(dim, config.residual_kernel_size, config.compress)
        self.down = SeanetConv1d(dim, 2 * dim, 2 * stride, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.elu(self.residual(x)))


class SkipLSTM(nn.Module):
    """LSTM over time with an additive skip; [B, C, T] in and out."""

    def __init__(self, dim: int, num_layers: int):
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, num_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x.permute(2, 0, 1)
        out, _ = self.lstm(seq)
        return (out + seq).permute(1, 2, 0)


class SeanetEncoder(nn.Module):
    """Args: config. Input ``[B, 1, L]`` at the codec's sample rate; output ``[B, latent_dim, ceil(L / hop)]``."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        width = config.base_width
        self.stem = SeanetConv1d(1, width, config.kernel_size)
        stages = []
        for stride in config.ratios:
            stages.append(EncoderStage(width, stride, config))
            width *= 2
        self.stages = nn.ModuleList(stages)
        self.lstm = SkipLSTM(width, config.lstm_layers) if config.lstm_layers else None
        self.proj = SeanetConv1d(width, config.latent_dim, config.last_kernel_size)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Variance-preserving init of every conv: weights ``N(0, 1 / fan_in)``, zero biases (the LSTM keeps its own).

        PyTorch's default conv init scales a signal's variance by about 1/3 per layer, so after the ~15 convs of the
        encoder the waveform's contribution to the latent is ~1e-3 of the bias terms: the latent is nearly constant
        in time, the codebooks are k-means-initialized on that constant, and the decoder learns to ignore its input
        (measured on the mini codec: mel loss stuck at 1.85 for thousands of steps, and decoding random codes gave
        the same audio as the true ones). With this init the latent varies with the input from the first step.
        Loaded checkpoints overwrite it, so only training from scratch is affected.
        """
        for module in self.modules():
            if isinstance(module, WNConv1d):
                fan_in = module.weight_v[0].numel()
                module.weight_v.normal_(0.0, fan_in ** -0.5)
                module.weight_g.copy_(_norm_except_first(module.weight_v))
                module.bias.zero_()

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        x = self.stem(wav)
        for stage in self.stages:
            x = stage(x)
        if self.lstm is not None:
            x = self.lstm(x)
        return self.proj(F.elu(x))
