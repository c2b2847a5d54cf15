"""Speech quality metrics of a degraded signal against its reference: wideband PESQ, STOI, V/UV F1 (each needs the
eval extras, ``pip install -e ".[eval]"``), and the mean over clips."""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
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
    ref, deg = _voiced(reference, sample_rate), _voiced(degraded, sample_rate)
    n = min(len(ref), len(deg))
    ref, deg = ref[:n], deg[:n]
    tp = float(np.sum(ref & deg))
    precision = tp / max(1.0, float(deg.sum()))
    recall = tp / max(1.0, float(ref.sum()))
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


_VOICED: "OrderedDict[tuple, np.ndarray]" = OrderedDict()


def _voiced(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """pYIN's voicing flags of ``x``, remembered for the last few signals: evaluations score one reference against
    many degraded versions (a codec at several bitrates), and pYIN's Viterbi pass is the slow part."""
    import librosa

    x = np.ascontiguousarray(x, dtype=np.float32)
    key = (hashlib.sha1(x.tobytes()).hexdigest(), x.size, sample_rate)
    if key not in _VOICED:
        y = resample(x, sample_rate, 16000)
        _VOICED[key] = librosa.pyin(y, fmin=50, fmax=600, sr=16000, frame_length=1024, hop_length=160)[1]
        if len(_VOICED) > 8:
            _VOICED.popitem(last=False)
    return _VOICED[key]


def mean_scores(rows: List[Dict[str, float]]) -> Dict[str, float]:
    """Per metric, the mean over clips that have a score (NaN when none has)."""
    names = {k for r in rows for k in r}
    out = {}
    for name in sorted(names):
        values = [r[name] for r in rows if name in r and not math.isnan(r[name])]
        out[name] = sum(values) / len(values) if values else float("nan")
    return out
