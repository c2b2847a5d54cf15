"""Strict weight loading: safetensors files only (never a pickle), and state dicts that must fit key for key.

The weights of a release directory are either one ``model.safetensors`` or, as Hugging Face shards them,
``model-00001-of-0000N.safetensors`` ... with ``model.safetensors.index.json`` (``{"metadata": {"total_size": bytes of
tensor data}, "weight_map": {tensor name: shard file name}}``): ``save_weights`` writes either layout, ``load_weights``
and ``load_strict_from`` read both, ``has_weights`` says whether a directory holds either.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from toolkit.errors import InputError
from toolkit.files import atomic_path

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
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(own[k].shape)})"
             for k in sorted(set(own) & set(state)) if tuple(state[k].shape) != tuple(own[k].shape)]
    problems = _key_problems(own, state)
    if wrong:
        problems.append(f"wrong shape: {_few(wrong)}")
    if problems:
        raise InputError(f"{source} does not fit this model: " + "; ".join(problems))
    with torch.no_grad():
        for name, tensor in own.items():
            tensor.copy_(state[name].to(tensor.dtype))


def average_states(states: List[Mapping[str, torch.Tensor]], source: str) -> Dict[str, torch.Tensor]:
    """The element-wise mean of state dicts with the same keys and shapes (checkpoint averaging, as fairseq's
    ``average_checkpoints.py`` and ESPnet do): floating-point tensors are averaged in float32 and returned in their
    own dtype; any other tensor (a step counter, an index buffer) must be equal in all of them. An ``InputError``
    naming ``source`` when they do not fit."""
    if not states:
        raise InputError(f"{source}: nothing to average")
    first, averaged = states[0], {}
    for other in states[1:]:
        problems = _key_problems(first, other)
        problems += [f"{k} has shape {tuple(other[k].shape)}, not {tuple(v.shape)}"
                     for k, v in first.items() if k in other and other[k].shape != v.shape][:3]
        if problems:
            raise InputError(f"{source}: the checkpoints differ: " + "; ".join(problems))
    for name, tensor in first.items():
        if tensor.is_floating_point():
            total = sum(s[name].float() for s in states)
            averaged[name] = (total / len(states)).to(tensor.dtype)
        elif all(torch.equal(s[name], tensor) for s in states[1:]):
            averaged[name] = tensor
        else:
            raise InputError(f"{source}: {name} ({tensor.dtype}) differs between the checkpoints and cannot be "
                             f"averaged")
    return averaged


def _key_problems(expected, found) -> List[str]:
    """``missing N key(s): ...`` of ``expected`` that ``found`` lacks, ``unexpected N key(s): ...`` it has beyond."""
    missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    return ([f"missing {len(missing)} key(s): {_few(missing)}"] if missing else []) + \
        ([f"unexpected {len(unexpected)} key(s): {_few(unexpected)}"] if unexpected else [])


def _few(items: list, n: int = 3) -> str:
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


# Release weights: one file, or shards with an index ----------------------------------------------------------------
# Hugging Face's layout (huggingface_hub.save_torch_state_dict, transformers' save_pretrained(max_shard_size=...)),
# written and read by hand here: huggingface_hub is not part of the base install.

WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
SHARD_NAME = "model-{:05d}-of-{:05d}.safetensors"
SHARD_PATTERN = re.compile(r"model-\d{5}-of-\d{5}\.safetensors")
NO_WEIGHTS = f"{WEIGHTS_NAME} is missing (and there is no {INDEX_NAME} of shards)"
MB = 2 ** 20  # what --shard-size-mb counts in


def tensor_bytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def plan_shards(state: Mapping[str, torch.Tensor], max_shard_bytes: int) -> List[List[str]]:
    """The tensor names of each shard, in ``state``'s order: a shard takes tensors while their bytes stay within
    ``max_shard_bytes``; a tensor larger than that goes alone into its own shard."""
    shards: List[List[str]] = []
    current: List[str] = []
    size = 0
    for name, tensor in state.items():
        n = tensor_bytes(tensor)
        if current and size + n > max_shard_bytes:
            shards.append(current)
            current, size = [], 0
        current.append(name)
        size += n
    shards.append(current)  # never empty but for an empty state, which gets one empty shard
    return shards


def save_weights(state: Mapping[str, torch.Tensor], directory: PathLike,
                 max_shard_bytes: Optional[int] = None) -> List[Path]:
    """Write ``state`` (contiguous CPU tensors) into ``directory`` as ``model.safetensors``, or, with
    ``max_shard_bytes``, as shards of at most that many bytes of tensor data (see ``plan_shards``) and their index.

    Each file is written atomically, the index last; then the files of the other layout and the shards of an earlier
    save that this one did not rewrite are removed, so a directory never keeps both layouts. Readers take the index
    when there is one: at every moment of a save the directory reads as the old weights, the new ones or (while shards
    replace shards) as holding none, never as a mixture. Returns the files written (index first).
    """
    if max_shard_bytes is not None and (isinstance(max_shard_bytes, bool) or not isinstance(max_shard_bytes, int)
                                        or max_shard_bytes < 1):
        raise ValueError(f"max_shard_bytes must be a positive int, got {max_shard_bytes!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    old_shards = [p for p in directory.glob("model-*-of-*.safetensors") if SHARD_PATTERN.fullmatch(p.name)]
    if max_shard_bytes is None:
        _write_safetensors(state, directory / WEIGHTS_NAME)
        written = [directory / WEIGHTS_NAME]
        stale = [directory / INDEX_NAME] + old_shards  # the index first: from its removal on, the new file is read
    else:
        (directory / INDEX_NAME).unlink(missing_ok=True)  # old shards may be replaced below: none is read meanwhile
        groups = plan_shards(state, max_shard_bytes)
        names = [SHARD_NAME.format(i + 1, len(groups)) for i in range(len(groups))]
        for name, group in zip(names, groups):
            _write_safetensors({k: state[k] for k in group}, directory / name)
        index = {"metadata": {"total_size": sum(tensor_bytes(t) for t in state.values())},
                 "weight_map": {k: name for name, group in zip(names, groups) for k in group}}
        with atomic_path(directory / INDEX_NAME) as tmp:
            tmp.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
        written = [directory / INDEX_NAME] + [directory / name for name in names]
        stale = [directory / WEIGHTS_NAME] + [p for p in old_shards if p.name not in names]
    for path in stale:
        path.unlink(missing_ok=True)
    return written


def _write_safetensors(state: Mapping[str, torch.Tensor], path: Path) -> None:
    with atomic_path(path) as tmp:
        save_file(dict(state), str(tmp), metadata={"format": "pt"})


def has_weights(directory: PathLike) -> bool:
    """Whether ``directory`` holds weights in either layout (``model.safetensors``, or an index of shards)."""
    directory = Path(directory)
    return (directory / INDEX_NAME).is_file() or (directory / WEIGHTS_NAME).is_file()


def _layout(directory: Path) -> Tuple[List[Path], Optional[Dict[str, str]]]:
    """(the weight files: the index then its shards in name order, or model.safetensors; the index's weight_map or
    None), refusing a directory without weights, an index that cannot be read and a shard file that is missing."""
    index = directory / INDEX_NAME
    if not index.is_file():
        if not (directory / WEIGHTS_NAME).is_file():
            raise InputError(f"{directory} holds no weights: {NO_WEIGHTS}")
        return [directory / WEIGHTS_NAME], None
    try:
        data = json.loads(index.read_text())
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read {index}: {err}") from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in weight_map.items()):
        raise InputError(f"{index} has no weight_map of tensor names to shard files")
    shards = sorted(set(weight_map.values()))
    odd = [name for name in shards if Path(name).name != name or not name.endswith(".safetensors")]
    if odd:
        raise InputError(f"{index} names shards that are not safetensors files in its directory: {_few(odd)}")
    for name in shards:
        if not (directory / name).is_file():
            raise InputError(f"shard {directory / name} is missing (named in {index})")
    return [index] + [directory / name for name in shards], weight_map


def weight_files(directory: PathLike) -> List[Path]:
    """The files that hold a directory's weights: ``model.safetensors``, or the index and then its shards in name
    (shard-number) order; an ``InputError`` when there are none, the index is unreadable or a shard is missing."""
    return _layout(Path(directory))[0]


def load_weights(directory: PathLike) -> Dict[str, torch.Tensor]:
    """The tensors of a directory's weights in either layout. Sharded: every shard the index names must exist and hold
    exactly the tensors the index maps to it; otherwise an ``InputError`` naming the file."""
    files, weight_map = _layout(Path(directory))
    if weight_map is None:
        return load_safetensors(files[0])
    index, state = files[0], {}
    for path in files[1:]:
        tensors = load_safetensors(path)
        problems = _key_problems([k for k, v in weight_map.items() if v == path.name], tensors)
        if problems:  # "missing": mapped to this shard by the index but not in it; "unexpected": the other way round
            raise InputError(f"shard {path} does not match {index}: " + "; ".join(problems))
        state.update(tensors)
    return state


def load_strict_from(model: nn.Module, directory: PathLike) -> None:
    """``load_strict`` of a directory's weights in either layout, errors naming its index or ``model.safetensors``."""
    directory = Path(directory)
    source = directory / (INDEX_NAME if (directory / INDEX_NAME).is_file() else WEIGHTS_NAME)
    load_strict(model, load_weights(directory), source=str(source))


def shard_size_mb(text: str) -> int:
    """The argparse type of ``--shard-size-mb``: a positive number of MB (2**20 bytes), returned in bytes."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of MB, got {text!r}") from None
    if not (math.isfinite(value) and value > 0 and int(value * MB) >= 1):
        raise argparse.ArgumentTypeError(f"must be a positive number of MB, got {text}")
    return int(value * MB)


def add_shard_size_option(parser: argparse.ArgumentParser) -> None:
    """``--shard-size-mb N`` (``args.max_shard_bytes``, in bytes; default None: one ``model.safetensors``)."""
    parser.add_argument("--shard-size-mb", type=shard_size_mb, dest="max_shard_bytes", metavar="N",
                        help=f"write the weights as safetensors shards of at most N MB (2**20 bytes) of tensor data "
                             f"each, with {INDEX_NAME} (the Hugging Face layout; a larger tensor gets a shard of its "
                             f"own); default: one {WEIGHTS_NAME}")
