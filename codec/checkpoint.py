"""Release directories (``config.json`` + ``model.safetensors``), atomic writes and strict state-dict loading."""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, Mapping, Optional, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .config import CodecConfig
from .errors import CodecError

PathLike = Union[str, os.PathLike]


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); on success it replaces ``path`` in one rename.

    A crash or an exception leaves either the old file or none, never a half-written one.
    """
    path = Path(path)
    suffix = "".join(path.suffixes[-2:]) or ".tmp"  # keep ".jsonl.gz": readers pick the format from it
    remove_stale_temporaries(path, suffix)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes 0600 files, and some writers (safetensors) recreate the file: give the usual mode at the end
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


STALE_SECONDS = 3600  # a temporary file untouched this long was left by a killed write, not one in progress


def remove_stale_temporaries(path: Path, suffix: str) -> None:
    """Delete the temporary files that writes of ``path`` killed before their rename (SIGKILL, power loss) left
    beside it; ones touched within ``STALE_SECONDS`` may belong to a write in progress and stay."""
    pattern = re.compile(rf"\.{re.escape(path.stem)}\.[A-Za-z0-9_]{{8}}{re.escape(suffix)}")
    if not path.parent.is_dir():
        return
    now = time.time()
    for candidate in path.parent.glob(f".{path.stem}.*"):
        try:
            if pattern.fullmatch(candidate.name) and now - candidate.stat().st_mtime > STALE_SECONDS:
                candidate.unlink()
        except OSError:  # gone already, or not ours to remove
            pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_release(model: nn.Module, directory: PathLike, dtype: Optional[torch.dtype] = None) -> Path:
    """Write ``config.json`` and ``model.safetensors``.

    Args:
        dtype: cast floating-point weights (e.g. ``torch.float16`` for a small bundle); codebooks stay float32 so
            the codes are unchanged.
    """
    from .model import CONFIG_NAME, WEIGHTS_NAME, config_to_json

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
    from .model import CONFIG_NAME, FORMAT_VERSION

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


def load_safetensors(path: PathLike) -> Dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CodecError(f"cannot read weights {path}: {err}") from None


def load_release(cls: type, directory: PathLike, map_location: Union[str, torch.device] = "cpu") -> nn.Module:
    from .model import WEIGHTS_NAME

    config = read_config(directory)
    weights = Path(directory) / WEIGHTS_NAME
    if not weights.is_file():
        raise CodecError(f"{directory} is not a codec release: {WEIGHTS_NAME} is missing")
    model = cls(config)
    load_strict(model, load_safetensors(weights), source=str(weights))
    return model.to(map_location).eval()


def load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy ``state`` into ``model``; any missing or unexpected key or wrong shape is a ``CodecError`` naming it."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(own[k].shape)})"
             for k in sorted(set(own) & set(state)) if tuple(state[k].shape) != tuple(own[k].shape)]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} key(s): {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} key(s): {_few(unexpected)}")
    if wrong:
        problems.append(f"wrong shape: {_few(wrong)}")
    if problems:
        raise CodecError(f"{source} does not fit this model: " + "; ".join(problems))
    with torch.no_grad():
        for name, tensor in own.items():
            tensor.copy_(state[name].to(tensor.dtype))


def _few(items: list, n: int = 3) -> str:
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")
