"""Reconstruction metrics: mel distance always; wideband PESQ, STOI and V/UV F1 when their packages are installed
(``pip install -e ".[eval]"``)."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Dict, List

import numpy as np
import torch

from .audio import resample


@lru_cache(maxsize=4)
def _mel(sample_rate: int):
    from .losses import MelSpectrogram

    return MelSpectrogram(sample_rate)


def mel_distance(reference: torch.Tensor, degraded: torch.Tensor, sample_rate: int) -> float:
    """Mean L1 between log-mel spectrograms (the training mel loss)."""
    mel = _mel(sample_rate)
    return float((mel(reference[None].float()) - mel(degraded[None].float())).abs().mean())


def pesq_wb(reference: np.ndarray, degraded: np.ndarray, sample_rate: int) -> float:
    """Wideband PESQ at 16 kHz (ITU-T P.862.2)."""
    from pesq import pesq

    return float(pesq(16000, resample(reference, sample_rate, 16000), resample(degraded, sample_rate, 16000), "wb"))


def stoi(reference: np.ndarray, degraded: np.ndarray, sample_rate: int) -> float:
    from pystoi import stoi as _stoi

    return float(_stoi(reference, degraded, sample_rate, extended=False))


def vuv_f1(reference: np.ndarray, degraded: np.ndarray, sample_rate: int) -> float:
    """F1 of voiced/unvoiced decisions of the degraded signal against the reference's (pYIN voicing, 16 kHz,
    10 ms frames), the Vocos evaluation's V/UV F1 with librosa's pYIN in place of CREPE."""
    import librosa

    def voiced(x: np.ndarray) -> np.ndarray:
        y = resample(x, sample_rate, 16000)
        return librosa.pyin(y, fmin=50, fmax=600, sr=16000, frame_length=1024, hop_length=160)[1]

    ref, deg = voiced(reference), voiced(degraded)
    n = min(len(ref), len(deg))
    ref, deg = ref[:n], deg[:n]
    tp = float(np.sum(ref & deg))
    precision = tp / max(1.0, float(deg.sum()))
    recall = tp / max(1.0, float(ref.sum()))
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


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


def mean_scores(rows: List[Dict[str, float]]) -> Dict[str, float]:
    """Per metric, the mean over clips that have a score (NaN when none has)."""
    names = {k for r in rows for k in r}
    out = {}
    for name in sorted(names):
        values = [r[name] for r in rows if name in r and not math.isnan(r[name])]
        out[name] = sum(values) / len(values) if values else float("nan")
    return out
