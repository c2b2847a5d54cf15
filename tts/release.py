"""Release directories of the token models: ``config.json`` + ``model.safetensors`` + ``symbols.json`` (+ ``codec/``).

The weights may instead be Hugging Face shards, ``model-00001-of-0000N.safetensors`` ... with
``model.safetensors.index.json`` (``save_token_model(max_shard_bytes=...)``, ``export.py --shard-size-mb``); every
reader takes either layout (``toolkit.weights``).

``config.json`` names the model type, its stages and config, the phonemizer of the symbol table and the codec the
model was trained with: a copy inside the release (``"codec": {"path": "codec"}``), or a reference (a path, or
``"bundled"``) with the SHA-256 of its weights and of what its codes are computed from (``codes_sha256``), so a
mismatched codec is caught when the model is loaded while one whose decoder alone was fine-tuned is accepted, and the
codec release's own version when it has one.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Union

import torch
from toolkit.errors import InputError
from toolkit.files import atomic_path, sha256
from toolkit.weights import (NO_WEIGHTS, WEIGHTS_NAME, average_states, has_weights, load_safetensors, load_strict,
                             load_strict_from, save_weights, weight_files)
from tts.models.base import TokenModel
from tts.text import SymbolTable

FORMAT_VERSION = 1
CONFIG_NAME, SYMBOLS_NAME = "config.json", "symbols.json"
BUNDLED_MODELS = Path(__file__).resolve().parent / "assets"  # <model type>-mini: the bundled releases
PathLike = Union[str, os.PathLike]


class ReleaseError(ValueError):
    """A directory that is not a usable token-model release; the message says what is wrong."""


@dataclass
class Release:
    model: TokenModel
    model_type: str
    symbols: SymbolTable
    codec: str  # "bundled", or the path of a codec release or official checkpoint
    codec_sha256: Optional[str]
    directory: Path
    codec_rates: Optional[tuple] = None  # (sample rate, frame rate) of the codes it was trained on; older: None
    codec_version: Optional[int] = None  # the codec release's own version (codec.read_release_version), if any
    # LanguageCodec.codes_sha256 of that codec: another codec with the same digest gives the same codes (a decoder
    # fine-tuned alone), so the model runs on it; None for releases written before it was recorded
    codec_codes_sha256: Optional[str] = None
    # the speaking-rate calibration of a model that sets its own pace (``TokenModel.supports_speed``): generation runs
    # at ``speed * pace``, so that speed 1.0 is the rate of real speech (config.json ``"pace"``; older: 1.0)
    pace: float = 1.0


def weights_sha256(codec_path: PathLike) -> Optional[str]:
    """SHA-256 of a codec's weights: of a checkpoint file, of a release directory's ``model.safetensors`` (as before
    sharding existed, so older releases still verify), or of a sharded release's ``model.safetensors.index.json``
    followed by its shards in file-name order (``model-00001-of-...`` first), hashed as one stream of bytes. None
    when there are no weights to hash; an ``InputError`` for a sharded release whose index is unreadable or whose
    shard is missing."""
    path = Path(codec_path)
    if path.is_dir():
        return sha256(*weight_files(path)) if has_weights(path) else None
    return sha256(path) if path.is_file() else None


def bundled_release(model_type: str) -> Path:
    """The folder of the bundled release of ``model_type`` (it may be missing from an installation)."""
    return BUNDLED_MODELS / f"{model_type}-mini"


def codec_source(codec: str, codec_files: Optional[PathLike] = None) -> Path:
    """Where the files of a token run's codec are: ``codec_files`` when given (a training pack's copy), the bundled
    codec's folder for ``"bundled"``, else ``codec`` itself (a release directory or an official checkpoint)."""
    from codec import BUNDLED_DIR

    return Path(codec_files) if codec_files else BUNDLED_DIR if codec == "bundled" else Path(codec)


def save_token_model(model: TokenModel, directory: PathLike, symbols: SymbolTable, codec: str,
                     copy_codec: bool = False, dtype: Optional[torch.dtype] = None,
                     max_shard_bytes: Optional[int] = None, codec_files: Optional[PathLike] = None,
                     pace: float = 1.0) -> Path:
    """Write a release of a registered token model; ``codec`` is what the training data was tokenized with (a codec
    release directory, an official checkpoint or ``"bundled"``). With ``max_shard_bytes`` the weights are shards of at
    most that many bytes of tensor data plus their index (``toolkit.weights.save_weights``); a copied codec keeps the
    layout it has. ``codec_files``: where that codec's files are when not at ``codec`` (a training pack's copy of
    the bundled codec, on a machine without the bundle); the release still names ``codec``. ``pace``: the
    release's speaking-rate calibration (``Release.pace``), for models that set their own pace."""
    from codec import BUNDLED_DIR, read_release_version

    pace = check_pace(pace, model)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    source = codec_source(codec, codec_files)
    from codec import load_codec

    rates = load_codec(None if source == BUNDLED_DIR else source)
    # A path that is the bundled codec is recorded as "bundled": an absolute checkout path does not travel.
    bundled = codec == "bundled" or Path(codec).resolve() == BUNDLED_DIR
    reference = {"path": "bundled" if bundled else str(Path(codec).resolve()),
                 "sha256": weights_sha256(source), "codes_sha256": rates.codes_sha256(),
                 "sample_rate": rates.sample_rate, "frame_rate": rates.frame_rate}
    version = read_release_version(source) if source.is_dir() else None
    if version is not None:
        reference["version"] = version
    if copy_codec:
        if not source.is_dir():
            raise ReleaseError(f"only a codec release directory can be copied into a release, not {source}")
        target = directory / "codec"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target)
        reference["path"] = "codec"
    state = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        state[name] = (tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor).clone()
    save_weights(state, directory, max_shard_bytes)
    symbols.save(directory / SYMBOLS_NAME)
    config = {"format_version": FORMAT_VERSION, "model_type": model.name, "stages": list(model.stages),
              "config": model.config.to_dict(), "phonemizer": symbols.frontend, "codec": reference}
    if pace != 1.0:
        config["pace"] = pace
    with atomic_path(directory / CONFIG_NAME) as tmp:
        tmp.write_text(json.dumps(config, indent=1) + "\n")
    return directory


PACE_RANGE = (0.25, 4.0)


def check_pace(pace, model: TokenModel) -> float:
    """``pace`` as a float; a ``ReleaseError`` unless it is a number in ``PACE_RANGE``, and 1.0 for a model that
    cannot set its own pace."""
    low, high = PACE_RANGE
    if isinstance(pace, bool) or not isinstance(pace, (int, float)) or not low <= pace <= high:
        raise ReleaseError(f"pace must be a number from {low} to {high}, got {pace!r}")
    if pace != 1.0 and not model.supports_speed:
        raise ReleaseError(f"this {model.name} model does not set its own pace, so its pace can only be 1.0")
    return float(pace)


def read_release_config(directory: PathLike) -> dict:
    directory = Path(directory)
    if not directory.is_dir():
        raise ReleaseError(f"{directory} is not a directory (a model release holds {CONFIG_NAME}, {WEIGHTS_NAME} "
                           f"or its shards, and {SYMBOLS_NAME})")
    for present, problem in (((directory / CONFIG_NAME).is_file(), f"{CONFIG_NAME} is missing"),
                             (has_weights(directory), NO_WEIGHTS),
                             ((directory / SYMBOLS_NAME).is_file(), f"{SYMBOLS_NAME} is missing")):
        if not present:
            raise ReleaseError(f"{directory} is not a model release: {problem}")
    try:
        data = json.loads((directory / CONFIG_NAME).read_text())
    except (OSError, ValueError) as err:
        raise ReleaseError(f"cannot read {directory / CONFIG_NAME}: {err}") from None
    if not isinstance(data, dict) or "model_type" not in data or "config" not in data:
        raise ReleaseError(f"{directory / CONFIG_NAME} does not describe a token model")
    if data.get("format_version", 0) > FORMAT_VERSION:
        raise ReleaseError(f"{directory} has format version {data['format_version']}; this version reads "
                           f"{FORMAT_VERSION}")
    return data


def load_token_model(directory: PathLike, map_location: Union[str, torch.device] = "cpu") -> Release:
    """Load a release written by ``save_token_model`` (strictly: every weight must fit); eval mode."""
    from tts.models.registry import model_class

    directory = Path(directory)
    data = read_release_config(directory)
    try:
        kind = model_class(data["model_type"])
    except ValueError as err:
        raise ReleaseError(f"{directory}: {err}") from None
    try:
        model = kind.build(kind.config_class.from_dict(data["config"]), data.get("stages"))
        load_strict_from(model, directory)
        symbols = SymbolTable.load(directory / SYMBOLS_NAME)
    except (InputError, ValueError, TypeError, KeyError, AttributeError) as err:
        raise ReleaseError(f"{directory}: {err}") from None
    if model.config.num_symbols != len(symbols):
        raise ReleaseError(f"{directory}: the model has {model.config.num_symbols} symbols, {SYMBOLS_NAME} "
                           f"{len(symbols)}")
    try:
        pace = check_pace(data.get("pace", 1.0), model)
    except ReleaseError as err:
        raise ReleaseError(f"{directory / CONFIG_NAME}: {err}") from None
    reference = data.get("codec", {})
    path = reference.get("path", "bundled")
    if path != "bundled" and not Path(path).is_absolute():
        path = str(directory / path)
    rates = (reference["sample_rate"], reference["frame_rate"]) if "sample_rate" in reference else None
    return Release(model.to(map_location).eval(), data["model_type"], symbols, path, reference.get("sha256"),
                   directory, rates, reference.get("version"), reference.get("codes_sha256"), pace)


def _checkpoints(run: Path, name: Optional[str] = None, average: int = 1) -> List[Path]:
    """The checkpoint ``name`` of ``run`` (default: its latest) and the ``average - 1`` checkpoints before it."""
    checkpoints = sorted(p for p in (run / "checkpoints").glob("step-*") if p.is_dir())
    if not checkpoints:
        raise ReleaseError(f"{run} has no checkpoints")
    path = run / "checkpoints" / name if name else checkpoints[-1]
    if not (path / "model.safetensors").is_file():
        raise ReleaseError(f"{path} has no model.safetensors")
    if average < 1:
        raise ReleaseError(f"cannot average {average} checkpoints")
    chosen = [p for p in checkpoints if p.name <= path.name][-average:]
    if len(chosen) < average:
        raise ReleaseError(f"{run} has {len(chosen)} checkpoint(s) up to {path.name}, not the {average} to average")
    missing = [p.name for p in chosen if not (p / "model.safetensors").is_file()]
    if missing:
        raise ReleaseError(f"{run / 'checkpoints'}: {', '.join(missing)} has no model.safetensors")
    return chosen


def _run_config(run: Path) -> dict:
    try:
        return json.loads((run / "train_config.json").read_text())
    except (OSError, ValueError) as err:
        raise ReleaseError(f"{run} is not a token-model run directory: {err}") from None


def _codec(run: Path) -> str:
    return json.loads((run / "codec.json").read_text())["codec"] if (run / "codec.json").exists() else "bundled"


def export_runs(runs: Sequence[PathLike], out: PathLike, checkpoint: Optional[str] = None,
                dtype: Optional[torch.dtype] = None, copy_codec: bool = False,
                max_shard_bytes: Optional[int] = None, average: int = 1, pace: float = 1.0) -> List[str]:
    """One release from the runs' checkpoints: the whole model of one run, or the stages of several runs of a model
    whose stages train separately (VALL-E's AR and NAR). Each run's latest checkpoint, or ``checkpoint`` (a
    ``step-*`` name) of each; ``average`` > 1 takes the mean of the weights of that checkpoint and the ``average - 1``
    before it (``toolkit.weights.average_states``); ``max_shard_bytes`` shards the release's weights; ``pace`` is
    the release's speaking-rate calibration (``Release.pace``). Returns a line per run saying what was taken from
    it."""
    from tts.models.registry import model_class

    runs, out, lines = [Path(r) for r in runs], Path(out), []
    first = _run_config(runs[0])
    kind = model_class(first.get("model_type", "valle"))  # runs written before model_type was recorded: VALL-E
    if len(runs) > 1 and not kind.separable_stages:
        raise ReleaseError(f"a {kind.name} release comes from exactly one run")
    state, stages, config = {}, set(), None
    for run in runs:
        train = _run_config(run)
        if train.get("model_type", "valle") != kind.name:
            raise ReleaseError(f"{run} trains {train.get('model_type', 'valle')}, not {kind.name} like {runs[0]}")
        run_config = kind.config_class.from_dict(train["model"])
        if config is not None and run_config != config:
            raise ReleaseError(f"{run} trains another model size than {runs[0]}")
        config = run_config
        paths = _checkpoints(run, checkpoint, average)
        weights = load_safetensors(paths[0] / "model.safetensors")
        if len(paths) > 1:
            weights = average_states([weights] + [load_safetensors(p / "model.safetensors") for p in paths[1:]],
                                     source=str(run / "checkpoints"))
        for stage in train["stages"]:
            if stage in stages:
                raise ReleaseError(f"stage {stage} is trained by more than one of the runs")
            stages.add(stage)
        if len(runs) == 1:
            state = weights
        else:
            state.update({k: v for k, v in weights.items() if k.split(".", 1)[0] in train["stages"]})
        taken = paths[-1].name if len(paths) == 1 else f"the mean of {', '.join(p.name for p in paths)}"
        lines.append(f"{run}: {kind.name} {', '.join(train['stages'])} from {taken}")
    model = kind.build(config, [s for s in kind.all_stages if s in stages])
    load_strict(model, state, source=", ".join(str(r) for r in runs))
    save_token_model(model, out, SymbolTable.load(runs[-1] / "symbols.json"), _codec(runs[-1]),
                     copy_codec=copy_codec, dtype=dtype, max_shard_bytes=max_shard_bytes, pace=pace)
    return lines
