"""Speech quality metrics of a degraded signal against its reference: wideband PESQ, STOI, V/UV F1 (each needs the
eval extras, ``pip install -e ".[eval]"``), and the mean over clips."""

from __future__ import annotations

import math
from typing import Dict, List

import numpy as np

from toolkit.audio import resample


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


def mean_scores(rows: List[Dict[str, float]]) -> Dict[str, float]:
    """Per metric, the mean over clips that have a score (NaN when none has)."""
    names = {k for r in rows for k in r}
    out = {}
    for name in sorted(names):
        values = [r[name] for r in rows if name in r and not math.isnan(r[name])]
        out[name] = sum(values) / len(values) if values else float("nan")
    return out
