"""Export a release from the checkpoints of token-model runs: one MobileSpeech run, or one or more VALL-E runs (e.g. an
AR run and a NAR run, merged).

    python recipes/valle/export.py --run runs/valle_mini --out path/to/release --dtype float16
    python recipes/valle/export.py --run runs/valle_ar --run runs/valle_nar --out path/to/release --copy-codec
    python recipes/valle/export.py --run runs/mobilespeech_mini --out path/to/release --dtype float16

Each run's latest checkpoint is used (or --checkpoint NAME, applied to every run). Reads only safetensors and JSON.
"""

import argparse
from pathlib import Path

import torch

from toolkit.runs import run_cli
from tts.release import export_runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, action="append", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--checkpoint", help="a step-* folder name (default: the latest of each run)")
    parser.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    parser.add_argument("--copy-codec", action="store_true")
    args = parser.parse_args()
    for line in export_runs(args.run, args.out, args.checkpoint, getattr(torch, args.dtype), args.copy_codec):
        print(line)
    print(f"release written to {args.out}")


if __name__ == "__main__":
    run_cli(main)
