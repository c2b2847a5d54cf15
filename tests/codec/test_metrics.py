"""Reconstruction metrics: perfect for identical signals, worse for degraded ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from codec.metrics import reconstruction_metrics


def voiced_signal(seconds: float = 2.0, rate: int = 24000) -> torch.Tensor:
    t = np.arange(int(seconds * rate)) / rate
    f0 = 140 + 30 * np.sin(2 * np.pi * 1.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    envelope = (np.sin(2 * np.pi * 2 * t) > -0.3).astype(float)  # voiced stretches and pauses
    wav = sum(np.sin(k * phase) / k for k in range(1, 8)) * envelope * 0.2
    return torch.from_numpy(wav.astype(np.float32))


def test_identical_and_degraded():
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    pytest.importorskip("librosa")
    ref = voiced_signal()
    same = reconstruction_metrics(ref, ref.clone(), 24000, vuv=True)
    assert same["mel_distance"] == 0.0 and same["pesq"] > 4.4 and same["stoi"] > 0.999 and same["vuv_f1"] == 1.0
    noisy = ref + 0.05 * torch.randn_like(ref)
    worse = reconstruction_metrics(ref, noisy, 24000, vuv=True)
    assert worse["pesq"] < same["pesq"] - 1 and worse["stoi"] < same["stoi"] and worse["mel_distance"] > 0.1
    silent = reconstruction_metrics(ref, torch.zeros_like(ref) + 1e-4 * torch.randn_like(ref), 24000, vuv=True)
    assert silent["vuv_f1"] < 0.2


def test_unscorable_clips_do_not_crash():
    pytest.importorskip("pesq")
    from toolkit.metrics import mean_scores

    ref = voiced_signal()
    scores = reconstruction_metrics(torch.zeros_like(ref), torch.zeros_like(ref), 24000)
    assert np.isnan(scores["pesq"])  # PESQ finds no utterance in silence
    merged = mean_scores([scores, {"pesq": 3.0, "stoi": 0.5, "mel_distance": 1.0}])
    assert merged["pesq"] == 3.0 and merged["mel_distance"] == 0.5
