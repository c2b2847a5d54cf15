"""Discriminators and losses: shapes, gradients to every discriminator, loss values, mel features, a learning check."""

from __future__ import annotations

import math

import pytest
import torch

from codec.discriminators import DiscriminatorConfig, Discriminators
from codec.losses import (DAC_MEL_SCALES, ComplexSTFTLoss, LossWeights, MelLoss, MelSpectrogram, MultiScaleMelLoss,
                          PhaseDerivativeLoss,
                          discriminator_loss, feature_matching_loss, generator_adversarial_loss, mel_filterbank)


@pytest.fixture(scope="module")
def discs():
    return Discriminators(DiscriminatorConfig.tiny())


def test_families_and_outputs(discs):
    out = discs(torch.randn(2, 1, 6000))
    assert list(out) == ["period", "resolution", "scale", "band"]
    assert [len(v) for v in out.values()] == [2, 1, 2, 1]
    for subs in out.values():
        for sub in subs:
            assert sub.logits.dim() == 2 and sub.logits.shape[0] == 2 and len(sub.features) >= 3
            assert all(torch.isfinite(f).all() for f in sub.features)


def test_release_sizes_build():
    full = Discriminators(DiscriminatorConfig.release())
    assert [len(v) for v in full.families.values()] == [5, 3, 3, 3]
    assert len(full.families["band"][0].stacks) == 5
    assert sum(p.numel() for p in full.parameters()) > 10_000_000


def test_every_discriminator_gets_gradients(discs):
    real, fake = torch.randn(2, 1, 6000), torch.randn(2, 1, 6000)
    discs.zero_grad()
    # (The hinge terms of real and fake cancel exactly in the last bias, so the generator term is added.)
    (discriminator_loss(discs(real), discs(fake)) + generator_adversarial_loss(discs(fake))).backward()
    for name, p in discs.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_loss_values():
    from codec.discriminators import SubOutput

    real = {"a": [SubOutput(torch.full((1, 4), 2.0), [torch.ones(3)])]}
    fake = {"a": [SubOutput(torch.full((1, 4), -2.0), [torch.zeros(3)])]}
    assert discriminator_loss(real, fake).item() == 0.0  # both beyond the hinge margin
    assert generator_adversarial_loss(fake).item() == 3.0
    assert feature_matching_loss(real, fake).item() == 1.0
    assert feature_matching_loss(real, real).item() == 0.0
    assert LossWeights() == LossWeights(mel=45.0, commitment=1000.0, adversarial=1.0, feature_matching=1.0)


def test_mel_filterbank_shape_and_peaks():
    fb = mel_filterbank(24000, 1024, 100)
    assert fb.shape == (513, 100) and fb.min() >= 0
    assert (fb.max(dim=0).values > 0.5).all()  # every filter covers at least one bin well
    centers = fb.argmax(dim=0)
    assert (centers[1:] >= centers[:-1]).all()  # filters ordered by frequency


def test_mel_features_and_loss():
    mel = MelSpectrogram()
    wav = torch.sin(2 * math.pi * 1000 * torch.arange(24000) / 24000)[None]
    feats = mel(wav)
    assert feats.shape == (1, 100, 24000 // 256 + 1)
    hz = 700 * (10 ** (torch.linspace(0, 2595 * math.log10(1 + 12000 / 700), 102) / 2595) - 1)
    expected_band = int(torch.argmin((hz[1:-1] - 1000).abs()))
    assert abs(int(feats[0, :, 20:-20].mean(1).argmax()) - expected_band) <= 1
    loss = MelLoss()
    assert loss(wav, wav).item() == 0.0 and loss(wav, 0.5 * wav).item() == pytest.approx(math.log(2), abs=0.05)


def test_multiscale_mel_loss():
    """One scale is exactly the Vocos loss; several average their L1s, each with its own STFT and filterbank."""
    torch.manual_seed(0)
    a, b = torch.randn(2, 6000), torch.randn(2, 6000)
    assert torch.equal(MultiScaleMelLoss()(a, b), MelLoss()(a, b))
    multi = MultiScaleMelLoss(scales=DAC_MEL_SCALES)
    expected = sum(MelLoss(24000, *s)(a, b) for s in DAC_MEL_SCALES) / 7
    assert torch.allclose(multi(a, b), expected) and multi(a, a).item() == 0.0
    assert [m.mel.filters.shape[1] for m in multi.losses] == [5, 10, 20, 40, 80, 160, 320]
    assert [m.mel.hop_length for m in multi.losses] == [8, 16, 32, 64, 128, 256, 512]
    with pytest.raises(ValueError, match="at least one"):
        MultiScaleMelLoss(scales=[])


def test_complex_stft_loss_sees_phase():
    """The compressed complex loss: zero on equal signals, the compressed-spectrum L1 by hand on one scale, blind
    neither to a phase change the mel loss cannot see (a sign flip) nor to magnitude; finite gradients at silence."""
    torch.manual_seed(0)
    t = torch.arange(12000) / 24000
    voice = (0.5 * torch.sin(2 * math.pi * 220 * t) + 0.05 * torch.randn(12000))[None]
    loss = ComplexSTFTLoss(scales=[(512, 128)])
    assert loss(voice, voice).item() == 0.0
    spec = lambda x: torch.stft(x, 512, 128, window=torch.hann_window(512), return_complex=True)  # noqa: E731
    compress = lambda s: s / (s.abs() ** 2 + 1e-5) ** 0.35  # noqa: E731
    expected = (torch.view_as_real(compress(spec(-voice))) - torch.view_as_real(compress(spec(voice)))).abs().mean()
    assert torch.allclose(loss(-voice, voice), expected, rtol=1e-4)
    assert MelLoss()(-voice, voice).item() < 1e-5 < loss(-voice, voice).item()
    assert loss(0.5 * voice, voice).item() > 0.01
    multi = ComplexSTFTLoss()
    assert [s[0] for s in multi.scales] == [512, 1024, 2048]
    silence = torch.zeros(1, 12000, requires_grad=True)
    multi(silence, torch.zeros(1, 12000)).backward()
    assert torch.isfinite(silence.grad).all()
    with pytest.raises(ValueError, match="at least one"):
        ComplexSTFTLoss(scales=[])


def test_phase_derivative_loss_sees_phase_structure_not_absolute_phase():
    """The phase-derivative loss: zero on equal signals and on a constant phase offset (a sign flip), which the
    complex loss counts in full; the compressed products by hand on one scale; scrambled phase with the same
    magnitudes costs it far more than a change of volume; finite gradients at silence."""
    torch.manual_seed(0)
    t = torch.arange(12000) / 24000
    voice = (0.5 * torch.sin(2 * math.pi * 220 * t) + 0.05 * torch.randn(12000))[None]
    loss = PhaseDerivativeLoss(scales=[(512, 128)])
    assert loss(voice, voice).item() == 0.0
    assert loss(-voice, voice).item() < 1e-6 < 0.1 < ComplexSTFTLoss(scales=[(512, 128)])(-voice, voice).item()
    window = torch.hann_window(512)
    spec = lambda x: torch.stft(x, 512, 128, window=window, return_complex=True)  # noqa: E731
    compress = lambda p: torch.view_as_real(p / (p.abs() ** 2 + 1e-10) ** 0.425)  # noqa: E731
    products = lambda s: (s[..., 1:] * s[..., :-1].conj(), s[..., 1:, :] * s[..., :-1, :].conj())  # noqa: E731
    half = 0.5 * voice
    expected = sum((compress(a) - compress(b)).abs().mean()
                   for a, b in zip(products(spec(half)), products(spec(voice)))) / 2
    assert torch.allclose(loss(half, voice), expected, rtol=1e-4)
    original = spec(voice)
    scrambled = torch.istft(torch.polar(original.abs(), 2 * math.pi * torch.rand(original.shape)), 512, 128,
                            window=window, length=12000)
    # scrambling costs 3x what halving the volume does here; for the mel loss the two are within 1.5x
    assert loss(scrambled, voice).item() > 3 * loss(half, voice).item()
    assert MelLoss()(scrambled, voice).item() < 1.5 * MelLoss()(half, voice).item()
    silence = torch.zeros(1, 12000, requires_grad=True)
    PhaseDerivativeLoss()(silence, torch.zeros(1, 12000)).backward()
    assert torch.isfinite(silence.grad).all()


@pytest.mark.slow
def test_discriminator_learns_to_tell_apart():
    """A tiny discriminator trained a few steps lowers its hinge loss on sine (real) vs noise (fake)."""
    torch.manual_seed(0)
    discs = Discriminators(DiscriminatorConfig.tiny())
    opt = torch.optim.AdamW(discs.parameters(), lr=1e-2)
    t = torch.arange(4000) / 24000
    real = (0.5 * torch.sin(2 * math.pi * 300 * t)).expand(2, 1, -1).contiguous()
    losses = []
    for _ in range(15):
        fake = 0.3 * torch.randn(2, 1, 4000)
        loss = discriminator_loss(discs(real), discs(fake))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < 0.5 * sum(losses[:3]) / 3
