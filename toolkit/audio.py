"""Reading and writing audio files: any format soundfile reads, downmixed to mono, resampled with soxr.

soundfile and soxr are imported where they are used: training on a pack (``toolkit.pack``) needs neither.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np
import torch

from toolkit.errors import InputError
from toolkit.files import atomic_path

PathLike = Union[str, os.PathLike]


def load_audio(path: PathLike, sample_rate: int) -> torch.Tensor:
    """Read ``path`` as mono float32 at ``sample_rate``.

    Multi-channel audio is averaged to mono; other rates are resampled with soxr (high quality).

    Returns:
        ``[L]`` float32 tensor.
    Raises:
        InputError: the file is missing, unreadable, empty, or holds non-finite samples.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise InputError(f"audio file {path} does not exist")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise InputError(f"cannot read audio {path}: {str(err).strip() or type(err).__name__}") from None
    if data.shape[0] == 0:
        raise InputError(f"audio {path} is empty")
    if not np.isfinite(data).all():
        raise InputError(f"audio {path} contains NaN or infinite samples")
    return torch.from_numpy(resample(data.mean(axis=1), rate, sample_rate))


def resample(wav: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Resample a 1-D float32 array from ``rate`` to ``target`` Hz (soxr HQ); a no-op when they are equal."""
    if rate == target:
        return np.ascontiguousarray(wav, dtype=np.float32)
    import soxr

    return soxr.resample(wav.astype(np.float32), rate, target, quality="HQ").astype(np.float32)


def save_audio(path: PathLike, wav: Union[torch.Tensor, np.ndarray], sample_rate: int) -> Path:
    """Write a mono waveform (``[L]``, ``[1, L]`` or ``[1, 1, L]``) as 16-bit PCM, atomically.

    The format follows the suffix (``.wav``, ``.flac``, ...). Samples beyond [-1, 1] are clipped.
    """
    import soundfile as sf

    path = Path(path)
    if torch.is_tensor(wav):
        wav = wav.detach().float().cpu().numpy()
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim > 1 and int(np.prod(wav.shape[:-1])) != 1:
        raise InputError(f"save_audio writes one mono waveform, got shape {wav.shape}")
    wav = wav.reshape(-1)
    if wav.size == 0:
        raise InputError("refusing to write empty audio")
    if not np.isfinite(wav).all():
        raise InputError("refusing to write audio with NaN or infinite samples")
    fmt = sf.check_format(path.suffix.lstrip(".").upper()) and path.suffix.lstrip(".").upper()
    if not fmt:
        raise InputError(f"unsupported audio format {path.suffix!r} (use .wav or .flac)")
    if not path.parent.is_dir():
        raise InputError(f"cannot write {path}: directory {path.parent} does not exist")
    try:
        with atomic_path(path) as tmp:
            sf.write(str(tmp), np.clip(wav, -1.0, 1.0), sample_rate, subtype="PCM_16", format=fmt)
    except (OSError, sf.LibsndfileError, RuntimeError) as err:
        raise InputError(f"cannot write {path}: {err}") from None
    return path
