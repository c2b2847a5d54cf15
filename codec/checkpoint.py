"""Codec release directories: ``config.json`` (the ``CodecConfig``, with a format version) + ``model.safetensors``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional, Union

import torch
from safetensors.torch import save_file
from torch import nn

from toolkit.files import atomic_path
from toolkit.weights import load_safetensors, load_strict

from .config import CodecConfig
from .errors import CodecError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1

PathLike = Union[str, os.PathLike]


def config_to_json(config: CodecConfig) -> str:
    return json.dumps({"format_version": FORMAT_VERSION, "model": "LanguageCodec", **config.to_dict()}, indent=2)


def save_release(model: nn.Module, directory: PathLike, dtype: Optional[torch.dtype] = None) -> Path:
    """Write ``config.json`` and ``model.safetensors``.

    Args:
        dtype: cast floating-point weights (e.g. ``torch.float16`` for a small bundle); codebooks stay float32 so
            the codes are unchanged.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        if dtype is not None and tensor.is_floating_point() and ".codebook." not in name:
            tensor = tensor.to(dtype)
        state[name] = tensor.clone()
    with atomic_path(directory / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    with atomic_path(directory / CONFIG_NAME) as tmp:
        tmp.write_text(config_to_json(model.config) + "\n")
    return directory


def read_config(directory: PathLike) -> CodecConfig:
    path = Path(directory) / CONFIG_NAME
    if not Path(directory).is_dir():
        raise CodecError(f"{directory} is not a directory (a codec release holds {CONFIG_NAME} and model.safetensors)")
    if not path.is_file():
        raise CodecError(f"{directory} is not a codec release: {CONFIG_NAME} is missing")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CodecError(f"cannot read {path}: {err}") from None
    if not isinstance(data, dict) or data.get("model") != "LanguageCodec":
        raise CodecError(f"{path} does not describe a LanguageCodec")
    if data.get("format_version", 0) > FORMAT_VERSION:
        raise CodecError(f"{path} has format version {data['format_version']}; this version reads {FORMAT_VERSION}")
    data = {k: v for k, v in data.items() if k not in ("format_version", "model")}
    try:
        return CodecConfig.from_dict(data)
    except ValueError as err:
        raise CodecError(f"{path}: {err}") from None


def load_release(cls: type, directory: PathLike, map_location: Union[str, torch.device] = "cpu") -> nn.Module:
    config = read_config(directory)
    weights = Path(directory) / WEIGHTS_NAME
    if not weights.is_file():
        raise CodecError(f"{directory} is not a codec release: {WEIGHTS_NAME} is missing")
    model = cls(config)
    load_strict(model, load_safetensors(weights), source=str(weights))
    return model.to(map_location).eval()
