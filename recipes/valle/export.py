"""Export a release from the checkpoints of token-model runs: one MobileSpeech run, or one or more VALL-E runs (e.g. an
AR run and a NAR run, merged).

    python recipes/valle/export.py --run runs/valle_mini --out path/to/release --dtype float16
    python recipes/valle/export.py --run runs/valle_ar --run runs/valle_nar --out path/to/release --copy-codec
    python recipes/valle/export.py --run runs/mobilespeech_mini --out path/to/release --dtype float16
    python recipes/valle/export.py --run runs/valle_mini --out path/to/release --shard-size-mb 100
    python recipes/valle/export.py --run runs/mobilespeech_mini --checkpoint step-00003000 --average 3 --out ...

Each run's latest checkpoint is used (or --checkpoint NAME, applied to every run). --average N takes the mean of the
weights of that checkpoint and the N - 1 checkpoints before it (checkpoint averaging, as fairseq and ESPnet offer;
docs/mobilespeech.md has what it measured on the mini runs). --pace P records a speaking-rate calibration in the release
(config.json "pace"): a model that sets its own pace (MobileSpeech, VALL-E with durations as input) then generates at
speed times P, so that speed 1.0 matches real speech (recipes/eval/pace.py measures it). Reads only safetensors and
JSON.
--shard-size-mb N writes the weights as Hugging Face shards (model-00001-of-0000K.safetensors ... with
model.safetensors.index.json) of at most N MB of tensor data each instead of one model.safetensors.
"""

import argparse
from pathlib import Path

import torch

from toolkit.runs import OneLineParser, run_cli
from toolkit.weights import add_shard_size_option
from tts.release import export_runs


def main() -> None:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, action="append", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--checkpoint", help="a step-* folder name (default: the latest of each run)")
    parser.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    parser.add_argument("--average", type=int, default=1, metavar="N",
                        help="average the weights of N consecutive checkpoints ending at --checkpoint (default: 1)")
    parser.add_argument("--pace", type=float, default=1.0,
                        help="speaking-rate calibration of a model that sets its own pace: generation runs at speed "
                             "times it (measure it with recipes/eval/pace.py; default 1.0)")
    parser.add_argument("--copy-codec", action="store_true")
    add_shard_size_option(parser)
    args = parser.parse_args()
    for line in export_runs(args.run, args.out, args.checkpoint, getattr(torch, args.dtype), args.copy_codec,
                            args.max_shard_bytes, average=args.average, pace=args.pace):
        print(line)
    print(f"release written to {args.out}")


if __name__ == "__main__":
    run_cli(main)
