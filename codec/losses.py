"""Codec training losses: hinge adversarial, feature matching, log-mel L1 (paper section 3.4; Vocos)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List

import torch
import torch.nn.functional as F
from torch import nn

from .discriminators import SubOutput

Verdicts = Dict[str, List[SubOutput]]


@dataclass(frozen=True)
class LossWeights:
    """Weights of the generator loss terms; defaults are the official ones."""

    mel: float = 45.0
    commitment: float = 1000.0
    adversarial: float = 1.0
    feature_matching: float = 1.0
    complex_stft: float = 0.0  # ComplexSTFTLoss; 0 (the official recipe): off
    phase_derivative: float = 0.0  # PhaseDerivativeLoss; 0 (the official recipe): off


def discriminator_loss(real: Verdicts, fake: Verdicts) -> torch.Tensor:
    """Hinge loss ``relu(1 - D(x)) + relu(1 + D(G(z)))``, averaged over the sub-discriminators of each family and
    summed over families (as the official code)."""
    total = 0.0
    for name in real:
        per = [F.relu(1 - r.logits).mean() + F.relu(1 + f.logits).mean() for r, f in zip(real[name], fake[name])]
        total = total + sum(per) / len(per)
    return total


def generator_adversarial_loss(fake: Verdicts) -> torch.Tensor:
    """Hinge loss ``relu(1 - D(G(z)))``, averaged per family, summed over families."""
    total = 0.0
    for subs in fake.values():
        total = total + sum(F.relu(1 - s.logits).mean() for s in subs) / len(subs)
    return total


def feature_matching_loss(real: Verdicts, fake: Verdicts) -> torch.Tensor:
    """L1 between real and generated feature maps: summed over layers, averaged per family, summed over families."""
    total = 0.0
    for name in real:
        per = [sum(F.l1_loss(g, r.detach()) for r, g in zip(rs.features, fs.features))
               for rs, fs in zip(real[name], fake[name])]
        total = total + sum(per) / len(per)
    return total


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0, f_max: float = None,
                   ) -> torch.Tensor:
    """Triangular HTK-scale mel filters without area normalization, ``[n_fft // 2 + 1, n_mels]``.

    Written out because torchaudio (whose ``melscale_fbanks`` defaults this reproduces) is not a dependency.
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    freqs = torch.linspace(0, sample_rate // 2, n_fft // 2 + 1, dtype=torch.float64)

    def to_mel(f: float) -> float:
        return 2595.0 * math.log10(1.0 + f / 700.0)

    mels = torch.linspace(to_mel(f_min), to_mel(f_max), n_mels + 2, dtype=torch.float64)
    points = 700.0 * (10 ** (mels / 2595.0) - 1.0)
    widths = points[1:] - points[:-1]
    slopes = points[None, :] - freqs[:, None]
    down = -slopes[:, :-2] / widths[:-1]
    up = slopes[:, 2:] / widths[1:]
    return torch.clamp(torch.minimum(down, up), min=0.0).float()


class MelSpectrogram(nn.Module):
    """Log-mel magnitude spectrogram (Vocos features): centered STFT, power 1, ``log(clip(x, 1e-7))``.

    ``[B, L]`` or ``[B, 1, L]`` -> ``[B, n_mels, L // hop + 1]``.
    """

    def __init__(self, sample_rate: int = 24000, n_fft: int = 1024, hop_length: int = 256, n_mels: int = 100):
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.register_buffer("filters", mel_filterbank(sample_rate, n_fft, n_mels), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.dim() == 3:
            wav = wav.squeeze(1)
        spec = torch.stft(wav, self.n_fft, self.hop_length, window=self.window, center=True, pad_mode="reflect",
                          return_complex=True).abs()
        mel = torch.matmul(self.filters.t(), spec)
        return torch.log(mel.clamp(min=1e-7))


class MelLoss(nn.Module):
    """L1 distance between log-mel spectrograms of the reconstruction and the target."""

    def __init__(self, sample_rate: int = 24000, n_fft: int = 1024, hop_length: int = 256, n_mels: int = 100):
        super().__init__()
        self.mel = MelSpectrogram(sample_rate, n_fft, hop_length, n_mels)

    def forward(self, generated: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(self.mel(generated), self.mel(target))


# The single Vocos scale: what the official recipe and every earlier run of this project trained with.
VOCOS_MEL_SCALE = (1024, 256, 100)
# DAC's seven scales (window 32 ... 2048 samples, hop a quarter of the window, 5 ... 320 mel bands).
DAC_MEL_SCALES = tuple((2 ** k, 2 ** k // 4, 5 * 2 ** (k - 5)) for k in range(5, 12))


class MultiScaleMelLoss(nn.Module):
    """The log-mel L1 averaged over several ``(n_fft, hop_length, n_mels)`` scales (DAC's multi-scale mel loss).

    Short windows constrain what one 1024-sample window cannot see: the timing of transients and pitch pulses, which
    a decoder trained without discriminators otherwise gets from nothing. The mean over scales keeps the loss on the
    single scale's footing, so the mel weight need not change; one scale is exactly ``MelLoss``.
    """

    def __init__(self, sample_rate: int = 24000, scales=(VOCOS_MEL_SCALE,)):
        super().__init__()
        if not scales:
            raise ValueError("at least one mel scale is needed")
        self.losses = nn.ModuleList(MelLoss(sample_rate, int(n_fft), int(hop), int(n_mels))
                                    for n_fft, hop, n_mels in scales)

    def forward(self, generated: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(loss(generated, target) for loss in self.losses) / len(self.losses)


# The three resolutions of the compressed complex loss: (n_fft, hop), windows of 21, 43 and 85 ms at 24 kHz.
COMPLEX_STFT_SCALES = ((512, 128), (1024, 256), (2048, 512))


class ComplexSTFTLoss(nn.Module):
    """L1 between power-law compressed complex spectrograms ``|X|^c * X / |X|``, averaged over resolutions.

    The mel loss sees magnitudes only, so a decoder trained without discriminators learns its phase from nothing but
    overlapping frames. This term compares real and imaginary parts, so phase errors cost as much as magnitude
    errors; the compression (``c`` = 0.3, as in speech enhancement losses that track PESQ) keeps quiet cells from
    vanishing next to loud ones. ``eps`` bounds the gradient of ``|X|^(c - 1)`` near digital silence.
    """

    def __init__(self, scales=COMPLEX_STFT_SCALES, compress: float = 0.3, eps: float = 1e-5):
        super().__init__()
        if not scales:
            raise ValueError("at least one STFT scale is needed")
        self.scales = tuple((int(n_fft), int(hop)) for n_fft, hop in scales)
        self.compress, self.eps = compress, eps
        for n_fft, _ in self.scales:
            self.register_buffer(f"window_{n_fft}", torch.hann_window(n_fft), persistent=False)

    def _compressed(self, wav: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
        return _power_law(_stft(wav, n_fft, hop, getattr(self, f"window_{n_fft}")), self.compress, self.eps)

    def forward(self, generated: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if generated.dim() == 3:
            generated, target = generated.squeeze(1), target.squeeze(1)
        return sum(F.l1_loss(self._compressed(generated, n_fft, hop), self._compressed(target, n_fft, hop))
                   for n_fft, hop in self.scales) / len(self.scales)


class PhaseDerivativeLoss(ComplexSTFTLoss):
    """L1 between compressed phase-difference products along time and along frequency, averaged over resolutions.

    ``X[t] * conj(X[t-1])`` has the phase advance of each bin from one frame to the next (its instantaneous
    frequency) and ``X[f] * conj(X[f-1])`` the phase step between neighbouring bins (their group delay), each with
    the product of two magnitudes. Comparing those products, as the anti-wrapping instantaneous-frequency and
    group-delay losses of phase-predicting vocoders (APNet) compare the derivatives themselves, asks the decoder for
    the input's phase structure (harmonics that advance at their frequency, pulses at their time) without asking for
    its absolute phase: a constant phase offset of a bin costs nothing along time. Products instead of angles keep
    the gradient bounded where a bin is silent (an angle's gradient grows as ``1 / |X|``); the power law
    (``c / 2`` on a product of two magnitudes) puts them on the scale of ``ComplexSTFTLoss``'s compressed spectra.
    """

    def _products(self, wav: torch.Tensor, n_fft: int, hop: int):
        spec = _stft(wav, n_fft, hop, getattr(self, f"window_{n_fft}"))  # [batch, freq, frames]
        along_time = spec[..., 1:] * spec[..., :-1].conj()
        along_freq = spec[..., 1:, :] * spec[..., :-1, :].conj()
        return [_power_law(p, self.compress / 2, self.eps ** 2) for p in (along_time, along_freq)]

    def forward(self, generated: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if generated.dim() == 3:
            generated, target = generated.squeeze(1), target.squeeze(1)
        terms = [F.l1_loss(g, t) for n_fft, hop in self.scales
                 for g, t in zip(self._products(generated, n_fft, hop), self._products(target, n_fft, hop))]
        return sum(terms) / len(terms)


def _stft(wav: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor) -> torch.Tensor:
    return torch.stft(wav, n_fft, hop, window=window, center=True, pad_mode="reflect", return_complex=True)


def _power_law(spec: torch.Tensor, compress: float, eps: float) -> torch.Tensor:
    """``|X|^c * X / |X|`` as real pairs ``[..., 2]``; ``eps`` under the power bounds the gradient near zero."""
    spec = torch.view_as_real(spec)
    power = spec.pow(2).sum(-1, keepdim=True) + eps
    return spec * power.pow((compress - 1) / 2)
