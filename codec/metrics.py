"""Reconstruction metrics of the codec: mel distance always; wideband PESQ, STOI and V/UV F1 (``toolkit.metrics``)
when their packages are installed (``pip install -e ".[eval]"``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Dict

import torch

from toolkit.metrics import pesq_wb, stoi, vuv_f1


@lru_cache(maxsize=4)
def _mel(sample_rate: int):
    from .losses import MelSpectrogram

    return MelSpectrogram(sample_rate)


def mel_distance(reference: torch.Tensor, degraded: torch.Tensor, sample_rate: int) -> float:
    """Mean L1 between log-mel spectrograms (the training mel loss)."""
    mel = _mel(sample_rate)
    return float((mel(reference[None].float()) - mel(degraded[None].float())).abs().mean())


def reconstruction_metrics(reference: torch.Tensor, degraded: torch.Tensor, sample_rate: int,
                           vuv: bool = False) -> Dict[str, float]:
    """Metrics of ``degraded`` against ``reference`` (1-D, same rate); the ones whose package is missing are left out.
    V/UV F1 (slow: pYIN) only when ``vuv``."""
    n = min(reference.numel(), degraded.numel())
    ref, deg = reference[:n].detach().float().cpu(), degraded[:n].detach().float().cpu()
    out = {"mel_distance": mel_distance(ref, deg, sample_rate)}
    ref_np, deg_np = ref.numpy(), deg.numpy()
    for name, fn in (("pesq", pesq_wb), ("stoi", stoi)) + ((("vuv_f1", vuv_f1),) if vuv else ()):
        try:
            out[name] = fn(ref_np, deg_np, sample_rate)
        except ImportError:
            continue
        except Exception:  # noqa: BLE001 - e.g. PESQ's "no utterances detected" on silence: no score for this clip
            out[name] = float("nan")
    return out
