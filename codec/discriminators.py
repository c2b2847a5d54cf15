"""GAN discriminators of Language-Codec (paper section 3.4): multi-period, multi-resolution magnitude spectrogram,
multi-scale waveform, and complex-STFT multi-band (DAC) discriminators.

Every sub-discriminator returns its logits and the feature maps used by the feature-matching loss. All of them are
trained; the official code never passes its DAC discriminator to an optimizer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .modules import WNConv1d, WNConv2d

SLOPE = 0.1


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Sizes of the four discriminator families; an empty tuple (or 0 scales) leaves a family out."""

    periods: Tuple[int, ...] = (2, 3, 5, 7, 11)
    period_channels: Tuple[int, ...] = (32, 128, 512, 1024, 1024)
    resolutions: Tuple[Tuple[int, int], ...] = ((1024, 256), (2048, 512), (512, 128))
    resolution_channels: int = 64
    num_scales: int = 3
    scale_channels: Tuple[int, ...] = (16, 64, 256, 1024, 1024, 1024)
    band_windows: Tuple[int, ...] = (2048, 1024, 512)
    bands: Tuple[Tuple[float, float], ...] = ((0.0, 0.1), (0.1, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))
    band_channels: int = 32

    @classmethod
    def release(cls) -> "DiscriminatorConfig":
        return cls()

    @classmethod
    def reduced(cls) -> "DiscriminatorConfig":
        """For CPU training: every family, narrower (full ones cost ~25 s per step on 2 cores)."""
        return cls(period_channels=(16, 32, 64, 128, 128), resolution_channels=16,
                   scale_channels=(8, 16, 32, 64, 64, 64), band_channels=8)

    @classmethod
    def tiny(cls) -> "DiscriminatorConfig":
        return cls(periods=(2, 3), period_channels=(4, 8, 8), resolutions=((512, 128),), resolution_channels=4,
                   num_scales=2, scale_channels=(4, 16, 16, 16), band_windows=(512,), band_channels=4)


@dataclass
class SubOutput:
    """One sub-discriminator's verdict: logits and the feature maps of each layer."""

    logits: torch.Tensor
    features: List[torch.Tensor] = field(default_factory=list)


def _conv_stack(x: torch.Tensor, convs: nn.ModuleList, post: nn.Module) -> SubOutput:
    """Leaky-ReLU conv layers, then the output conv; every layer's output is a feature map."""
    features = []
    for conv in convs:
        x = F.leaky_relu(conv(x), SLOPE)
        features.append(x)
    x = post(x)
    features.append(x)
    return SubOutput(x.flatten(1), features)


class PeriodDiscriminator(nn.Module):
    """HiFi-GAN period discriminator: the waveform folded to ``[B, 1, L / p, p]``, 2-D convs along time."""

    def __init__(self, period: int, channels: Tuple[int, ...]):
        super().__init__()
        self.period = period
        chans = (1,) + tuple(channels)
        last = len(channels) - 1
        self.convs = nn.ModuleList([
            WNConv2d(chans[i], chans[i + 1], (5, 1), (3 if i < last else 1, 1), padding=(2, 0))
            for i in range(len(channels))
        ])
        self.post = WNConv2d(chans[-1], 1, (3, 1), padding=(1, 0))

    def forward(self, x: torch.Tensor) -> SubOutput:
        b, c, t = x.shape
        if t % self.period:
            x = F.pad(x, (0, self.period - t % self.period), mode="reflect")
        x = x.view(b, c, -1, self.period)
        return _conv_stack(x, self.convs, self.post)


class ResolutionDiscriminator(nn.Module):
    """Magnitude-spectrogram discriminator at one STFT resolution (UnivNet / Vocos MRD)."""

    def __init__(self, n_fft: int, hop_length: int, channels: int):
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        layout = [((7, 5), (2, 2), (3, 2)), ((5, 3), (2, 1), (2, 1)), ((5, 3), (2, 2), (2, 1)),
                  ((3, 3), (2, 1), (1, 1)), ((3, 3), (2, 2), (1, 1))]
        self.convs = nn.ModuleList([WNConv2d(1 if i == 0 else channels, channels, k, s, p)
                                    for i, (k, s, p) in enumerate(layout)])
        self.post = WNConv2d(channels, 1, (3, 3), padding=(1, 1))

    def forward(self, x: torch.Tensor) -> SubOutput:
        spec = torch.stft(x.squeeze(1), self.n_fft, self.hop_length, window=self.window, center=True,
                          return_complex=True).abs()
        x = spec.unsqueeze(1)
        return _conv_stack(x, self.convs, self.post)


class ScaleDiscriminator(nn.Module):
    """MelGAN / HiFi-GAN multi-scale discriminator on a (pooled) waveform: grouped strided 1-D convs."""

    def __init__(self, channels: Tuple[int, ...]):
        super().__init__()
        layers = [WNConv1d(1, channels[0], 15, padding=7)]
        for i in range(1, len(channels) - 1):
            cin, cout = channels[i - 1], channels[i]
            layers.append(WNConv1d(cin, cout, 41, stride=4, groups=max(1, cin // 4), padding=20))
        layers.append(WNConv1d(channels[-2], channels[-1], 5, padding=2))
        self.convs = nn.ModuleList(layers)
        self.post = WNConv1d(channels[-1], 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> SubOutput:
        return _conv_stack(x, self.convs, self.post)


class BandDiscriminator(nn.Module):
    """DAC's complex multi-band discriminator at one STFT window: real and imaginary parts as two channels, one conv
    stack per frequency band, bands joined along frequency before the last conv."""

    def __init__(self, window_length: int, bands: Tuple[Tuple[float, float], ...], channels: int):
        super().__init__()
        self.window_length, self.hop_length = window_length, window_length // 4
        self.register_buffer("window", torch.hann_window(window_length), persistent=False)
        bins = window_length // 2 + 1
        self.bands = [(int(lo * bins), int(hi * bins)) for lo, hi in bands]

        def stack() -> nn.ModuleList:
            return nn.ModuleList([WNConv2d(2, channels, (3, 9), padding=(1, 4))]
                                 + [WNConv2d(channels, channels, (3, 9), (1, 2), padding=(1, 4)) for _ in range(3)]
                                 + [WNConv2d(channels, channels, (3, 3), padding=(1, 1))])

        self.stacks = nn.ModuleList([stack() for _ in bands])
        self.post = WNConv2d(channels, 1, (3, 3), padding=(1, 1))

    def forward(self, x: torch.Tensor) -> SubOutput:
        # DAC removes DC and peak-normalizes before the STFT so the verdict does not hinge on level.
        x = x.squeeze(1)
        x = x - x.mean(dim=-1, keepdim=True)
        x = 0.8 * x / (x.abs().amax(dim=-1, keepdim=True) + 1e-9)
        spec = torch.stft(x, self.window_length, self.hop_length, window=self.window, center=True,
                          return_complex=True)
        spec = torch.view_as_real(spec).permute(0, 3, 2, 1)  # [B, 2, T, F]
        features, outs = [], []
        for (lo, hi), stack in zip(self.bands, self.stacks):
            h = spec[..., lo:hi]
            for conv in stack:
                h = F.leaky_relu(conv(h), SLOPE)
                features.append(h)
            outs.append(h)
        x = self.post(torch.cat(outs, dim=-1))
        features.append(x)
        return SubOutput(x.flatten(1), features)


class Discriminators(nn.Module):
    """All discriminator families. ``forward(wav [B, 1, L])`` -> ``{family: [SubOutput, ...]}``."""

    def __init__(self, config: DiscriminatorConfig = DiscriminatorConfig()):
        super().__init__()
        self.config = config
        families: Dict[str, nn.ModuleList] = {
            "period": nn.ModuleList([PeriodDiscriminator(p, config.period_channels) for p in config.periods]),
            "resolution": nn.ModuleList([ResolutionDiscriminator(n, h, config.resolution_channels)
                                         for n, h in config.resolutions]),
            "scale": nn.ModuleList([ScaleDiscriminator(config.scale_channels) for _ in range(config.num_scales)]),
            "band": nn.ModuleList([BandDiscriminator(w, config.bands, config.band_channels)
                                   for w in config.band_windows]),
        }
        self.families = nn.ModuleDict({k: v for k, v in families.items() if len(v)})

    def forward(self, wav: torch.Tensor) -> Dict[str, List[SubOutput]]:
        if wav.dim() == 2:
            wav = wav.unsqueeze(1)
        out = {}
        for name, subs in self.families.items():
            if name == "scale":
                results, x = [], wav
                for i, sub in enumerate(subs):
                    if i:
                        x = F.avg_pool1d(x, 4, 2, padding=2)
                    results.append(sub(x))
                out[name] = results
            else:
                out[name] = [sub(wav) for sub in subs]
        return out
