"""Starting a codec run from a release: where the release is, whether its architecture is the run's, and the
discriminators that an export may write beside its generator (``CodecTrainer.init_from``, ``export.py``)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import List, Union

from torch import nn

from .config import CodecConfig
from .discriminators import DiscriminatorConfig
from .errors import CodecError

DISCRIMINATORS_WEIGHTS = "discriminators.safetensors"
DISCRIMINATORS_CONFIG = "discriminators.json"
# Quantizer fields that shape training only (EMA decay, k-means, dead-code threshold, the quantizer-count draw): a run
# may start from weights trained with other values of them.
_TRAINING_ONLY = {"decay", "epsilon", "kmeans_iters", "threshold_ema_dead_code", "train_num_quantizers"}


def resolve_init_source(source: Union[str, os.PathLike]) -> Path:
    """``"bundled"``, a release directory or an official checkpoint file, as a path that exists."""
    from .model import BUNDLED_DIR

    path = BUNDLED_DIR if str(source) == "bundled" else Path(source)
    if not path.exists():
        raise CodecError(f"cannot start from {source}: it does not exist (give a release directory, 'bundled' or an "
                         f"official checkpoint file)")
    return path


def save_discriminators(discs: nn.Module, config: DiscriminatorConfig, directory: os.PathLike) -> None:
    """``discriminators.safetensors`` (float32) and ``discriminators.json`` beside a release, written atomically."""
    from safetensors.torch import save_file

    from toolkit.files import atomic_path

    directory = Path(directory)
    state = {k: v.detach().cpu().float().contiguous().clone() for k, v in discs.state_dict().items()}
    with atomic_path(directory / DISCRIMINATORS_WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    with atomic_path(directory / DISCRIMINATORS_CONFIG) as tmp:
        tmp.write_text(json.dumps(dataclasses.asdict(config), indent=1) + "\n")


def check_architecture(released: CodecConfig, run: CodecConfig, source: Union[str, os.PathLike]) -> None:
    """A ``CodecError`` naming the differences when a release (from ``source``) is not of the run config's codec
    architecture (the quantizer's training-only fields aside)."""
    differences = _architecture_diff(released.to_dict(), run.to_dict())
    if differences:
        raise CodecError(f"{source} has another codec architecture than this run's config: {', '.join(differences)}")


def _architecture_diff(theirs: dict, ours: dict, prefix: str = "") -> List[str]:
    """Dotted keys whose values differ, leaving out the quantizer's training-only fields."""
    out = []
    for key in sorted(set(theirs) | set(ours)):
        if key in _TRAINING_ONLY:
            continue
        a, b = theirs.get(key), ours.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _architecture_diff(a, b, f"{prefix}{key}.")
        elif json.dumps(a) != json.dumps(b):
            out.append(f"{prefix}{key} {a} (run: {b})")
    return out
