"""ISTFT head (Vocos): backbone states -> log-magnitude and phase -> waveform by inverse STFT with "same" padding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ISTFT(nn.Module):
    """Inverse STFT with "same" padding: ``T`` frames -> ``T * hop`` samples.

    ``torch.istft`` supports only "center" padding, so the overlap-add is written out: irfft, periodic Hann window,
    overlap-add with ``fold``, trim ``(n_fft - hop) / 2`` on each side, divide by the window envelope.
    """

    def __init__(self, n_fft: int, hop_length: int):
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        """spec: complex ``[B, n_fft / 2 + 1, T]`` -> ``[B, T * hop]``."""
        frames = spec.shape[-1]
        pad = (self.n_fft - self.hop_length) // 2
        out_size = (frames - 1) * self.hop_length + self.n_fft
        ifft = torch.fft.irfft(spec, self.n_fft, dim=1, norm="backward") * self.window[None, :, None]
        y = F.fold(ifft, (1, out_size), (1, self.n_fft), stride=(1, self.hop_length))[:, 0, 0, pad:-pad]
        return y / self._envelope(frames, out_size, pad)

    def _envelope(self, frames: int, out_size: int, pad: int) -> torch.Tensor:
        window_sq = self.window.square().expand(1, frames, -1).transpose(1, 2)
        return F.fold(window_sq, (1, out_size), (1, self.n_fft), stride=(1, self.hop_length)).squeeze()[pad:-pad]


class ISTFTHead(nn.Module):
    """Linear ``dim -> n_fft + 2`` (log-magnitudes and phases), ``exp`` clipped at ``max_magnitude``, ISTFT."""

    def __init__(self, dim: int, n_fft: int, hop_length: int, max_magnitude: float = 100.0):
        super().__init__()
        self.out = nn.Linear(dim, n_fft + 2)
        self.istft = ISTFT(n_fft, hop_length)
        self.max_magnitude = max_magnitude

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``[B, T, dim]`` -> waveform ``[B, T * hop]``."""
        mag, phase = self.out(x).transpose(1, 2).chunk(2, dim=1)
        mag = torch.exp(mag).clip(max=self.max_magnitude)
        return self.istft(torch.polar(mag, phase))
