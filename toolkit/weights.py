"""Strict weight loading: safetensors files only (never a pickle), and state dicts that must fit key for key."""

from __future__ import annotations

import os
from typing import Dict, Mapping, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from toolkit.errors import InputError

PathLike = Union[str, os.PathLike]


def load_safetensors(path: PathLike) -> Dict[str, torch.Tensor]:
    """The tensors of a safetensors file; an ``InputError`` naming the file when it cannot be read."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise InputError(f"cannot read weights {path}: {err}") from None


def load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy ``state`` into ``model``; any missing or unexpected key or wrong shape is a ``InputError`` naming it."""
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
        raise InputError(f"{source} does not fit this model: " + "; ".join(problems))
    with torch.no_grad():
        for name, tensor in own.items():
            tensor.copy_(state[name].to(tensor.dtype))


def _few(items: list, n: int = 3) -> str:
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")
