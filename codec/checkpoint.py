"""Codec release directories: ``config.json`` (the ``CodecConfig``, with a format version) + ``model.safetensors``,
or its Hugging Face shards ``model-0000i-of-0000N.safetensors`` + ``model.safetensors.index.json``
(``toolkit.weights``).

A release may carry a version of its own (``"version"`` in ``config.json``, ``export.py --version``): a frozen
codec that token models are trained on is released under a version number, so that a token model's release can say
which one its codes came from.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from toolkit.files import atomic_path
from toolkit.weights import NO_WEIGHTS, WEIGHTS_NAME, has_weights, load_strict_from, save_weights

from .config import CodecConfig
from .errors import CodecError

CONFIG_NAME = "config.json"
FORMAT_VERSION = 1

PathLike = Union[str, os.PathLike]


def config_to_json(config: CodecConfig, version: Optional[int] = None) -> str:
    head = {"format_version": FORMAT_VERSION, "model": "LanguageCodec"}
    if version is not None:
        head["version"] = check_version(version)
    return json.dumps({**head, **config.to_dict()}, indent=2)


def check_version(version: object) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CodecError(f"a codec release version is a positive integer, not {version!r}")
    return version


def save_release(model: nn.Module, directory: PathLike, dtype: Optional[torch.dtype] = None,
                 max_shard_bytes: Optional[int] = None, version: Optional[int] = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (each file atomically).

    Args:
        version: the release's own version number (``read_version``); None: unversioned.
        dtype: cast floating-point weights (e.g. ``torch.float16`` for a small bundle); codebooks stay float32 so
            the codes are unchanged.
        max_shard_bytes: write the weights as shards of at most this many bytes of tensor data, with their index,
            instead of one file (``toolkit.weights.save_weights``; the other layout is removed from ``directory``).
    """
    text = config_to_json(model.config, version) + "\n"  # a bad version fails before anything is written
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        if dtype is not None and tensor.is_floating_point() and ".codebook." not in name:
            tensor = tensor.to(dtype)
        state[name] = tensor.clone()
    save_weights(state, directory, max_shard_bytes)
    with atomic_path(directory / CONFIG_NAME) as tmp:
        tmp.write_text(text)
    return directory


def read_config(directory: PathLike) -> CodecConfig:
    data = _read_json(directory)
    data = {k: v for k, v in data.items() if k not in ("format_version", "model", "version")}
    try:
        return CodecConfig.from_dict(data)
    except ValueError as err:
        raise CodecError(f"{Path(directory) / CONFIG_NAME}: {err}") from None


def read_version(directory: PathLike) -> Optional[int]:
    """The release's own version (``save_release(version=...)``), or None for an unversioned release."""
    version = _read_json(directory).get("version")
    if version is None:
        return None
    try:
        return check_version(version)
    except CodecError as err:
        raise CodecError(f"{Path(directory) / CONFIG_NAME}: {err}") from None


def _read_json(directory: PathLike) -> dict:
    path = Path(directory) / CONFIG_NAME
    if not Path(directory).is_dir():
        raise CodecError(f"{directory} is not a directory (a codec release holds {CONFIG_NAME} and "
                         f"{WEIGHTS_NAME} or its shards)")
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
    return data


def load_release(cls: type, directory: PathLike, map_location: Union[str, torch.device] = "cpu") -> nn.Module:
    config = read_config(directory)
    if not has_weights(directory):
        raise CodecError(f"{directory} is not a codec release: {NO_WEIGHTS}")
    model = cls(config)
    load_strict_from(model, directory)
    return model.to(map_location).eval()
