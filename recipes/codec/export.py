"""Export the generator of a training run's checkpoint as a release directory (config.json + model.safetensors).

    python recipes/codec/export.py --run runs/codec_mini --out path/to/release --dtype float16
    python recipes/codec/export.py --run runs/codec_mini --checkpoint step-00006000 --out path/to/release
    python recipes/codec/export.py --run runs/codec_mini --out path/to/release --with-discriminators
    python recipes/codec/export.py --run runs/codec_mini --out path/to/release --shard-size-mb 100
    python recipes/codec/export.py --run runs/codec_mini --out path/to/release --dtype float16 --version 2
    python recipes/codec/export.py --run runs/codec_a --out path/to/release \
        --average-with runs/codec_b/checkpoints/step-00009000

--shard-size-mb N writes the weights as Hugging Face shards (model-00001-of-0000K.safetensors ... with
model.safetensors.index.json) of at most N MB of tensor data each instead of one model.safetensors.

--version N gives the release a version number of its own ("version" in config.json): a frozen codec that token
models are trained on carries one, and the token models' releases record it.

--average-with CHECKPOINT ... averages the generator's weights uniformly with those of more checkpoint folders
(step-* folders of this run or of other runs of the same codec config, e.g. two fine-tunings of one release): every
floating-point tensor is the mean, every other (the codebooks' init flags) must agree. Runs of the decoder alone from
one release share its encoder and codebooks exactly, so their average keeps the release's codes (codes_sha256).

--with-discriminators writes discriminators.safetensors and discriminators.json beside the generator, so that a run
started from the release (recipes/codec/train.py --init-from) continues the adversarial phase with them.

Reads only safetensors and JSON: no training code or optimizer state is needed.
"""

import argparse
import json
from pathlib import Path
from typing import Sequence

import torch

from codec import CodecConfig, LanguageCodec
from toolkit.weights import add_shard_size_option, average_states, load_safetensors, load_strict
from codec.discriminators import Discriminators
from toolkit.runs import OneLineParser, run_cli
from codec.training import discriminator_config, save_discriminators


def export(run: Path, out: Path, checkpoint: str = None, dtype: torch.dtype = None,
           discriminators: bool = False, max_shard_bytes: int = None, version: int = None,
           average_with: Sequence[Path] = ()) -> Path:
    train_config = json.loads((run / "train_config.json").read_text())
    config = CodecConfig.from_dict(train_config["codec"])
    checkpoints = sorted(p for p in (run / "checkpoints").glob("step-*") if p.is_dir())
    if not checkpoints:
        raise SystemExit(f"error: {run} has no checkpoints")
    path = run / "checkpoints" / checkpoint if checkpoint else checkpoints[-1]
    model = LanguageCodec(config)
    state = load_safetensors(path / "model.safetensors")  # the generator's weights
    if average_with:
        for other in average_with:
            other_config = json.loads((Path(other).parents[1] / "train_config.json").read_text())["codec"]
            if CodecConfig.from_dict(other_config) != config:
                raise SystemExit(f"error: {other} is a checkpoint of another codec config than {path}")
        sources = [path, *average_with]
        states = [load_safetensors(Path(p) / "model.safetensors") for p in sources]
        state = average_states(states, source=f"averaging {', '.join(map(str, sources))}")
    load_strict(model, state, source=str(path))
    model.save_pretrained(out, dtype=dtype, max_shard_bytes=max_shard_bytes, version=version)
    if discriminators:  # Accelerate saves the prepared models in order: the generator, then the discriminators
        disc_config = discriminator_config(train_config["discriminators"])
        discs = Discriminators(disc_config)
        load_strict(discs, load_safetensors(path / "model_1.safetensors"), source=str(path / "model_1.safetensors"))
        save_discriminators(discs, disc_config, out)
    averaged = "".join(f", averaged with {Path(p).name} of {Path(p).parents[1].name}" for p in average_with)
    (out / "SOURCE.txt").write_text(f"exported from {path.name} of {run.name}{averaged}\n")
    return path


def main() -> None:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--checkpoint", help="a step-* folder name (default: the latest)")
    parser.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    parser.add_argument("--with-discriminators", action="store_true", help="write the discriminators too")
    parser.add_argument("--version", type=int, help="the release's own version number (a frozen codec)")
    parser.add_argument("--average-with", type=Path, nargs="+", default=[], metavar="CHECKPOINT",
                        help="more step-* checkpoint folders whose generator weights are averaged in")
    add_shard_size_option(parser)
    args = parser.parse_args()
    if args.version is not None and args.version < 1:
        parser.error(f"--version must be a positive integer, not {args.version}")
    args.average_with = [other.resolve() for other in args.average_with]  # its run folder is two levels up
    for other in args.average_with:
        if not (other / "model.safetensors").is_file() or not (other.parents[1] / "train_config.json").is_file():
            parser.error(f"--average-with {other} is not a checkpoint folder of a run (runs/X/checkpoints/step-*)")
    if args.average_with and args.with_discriminators:
        parser.error("--with-discriminators exports one checkpoint's discriminators: not with --average-with")
    used = export(args.run, args.out, args.checkpoint, getattr(torch, args.dtype), args.with_discriminators,
                  args.max_shard_bytes, args.version, args.average_with)
    print(f"{used} -> {args.out}")


if __name__ == "__main__":
    run_cli(main)
