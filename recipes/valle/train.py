"""Train VALL-E (AR and NAR stages) on tokenized Lhotse cuts, on one process, several CPU processes or many GPUs.

    accelerate launch recipes/valle/train.py --config recipes/valle/configs/mini.yaml \
        --train-cuts data/mini/cuts_train.jsonl.gz --valid-cuts data/mini/cuts_test.jsonl.gz \
        --codec codec/assets/languagecodec-mini --out-dir runs/valle_mini --resume

The symbol table defaults to symbols.json beside the training cuts; --codec is what the cuts were tokenized with
(its sizes set the model's; the release records it). Stages one at a time: --set train.stages=[ar] (then [nar] in
another run directory) and merge them with export.py. Two CPU processes: ACCELERATE_USE_CPU=1 accelerate launch
--multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no recipes/valle/train.py ...
Checkpoints: <out-dir>/checkpoints/step-*/ (last N kept); --resume continues from the latest one exactly.
At the end the model is exported to <out-dir>/release.
"""

import argparse
import os
from pathlib import Path

import torch
from lhotse import CutSet

from codec.runs import run_cli
from tts.data.dataset import cut_codes
from tts.text import SymbolTable
from tts.training import TokenTrainer, codec_dimensions, load_token_train_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--set", nargs="*", default=[], metavar="SECTION.FIELD=VALUE", help="config overrides")
    parser.add_argument("--train-cuts", type=Path, required=True)
    parser.add_argument("--valid-cuts", type=Path)
    parser.add_argument("--symbols", type=Path, help="default: symbols.json beside --train-cuts")
    parser.add_argument("--codec", default="bundled", help="codec release directory, official checkpoint or bundled")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out-dir")
    parser.add_argument("--stop-after", type=int, help="stop (with a checkpoint) after this many steps")
    parser.add_argument("--wandb", choices=["online", "offline", "disabled"], default="offline")
    parser.add_argument("--export-dtype", choices=["float32", "float16"], default="float32")
    parser.add_argument("--copy-codec", action="store_true", help="copy the codec into the release")
    parser.add_argument("--threads", type=int, help="torch threads per process")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    symbols = SymbolTable.load(args.symbols or args.train_cuts.parent / "symbols.json")
    dims = codec_dimensions(args.codec)
    train_cuts = CutSet.from_file(args.train_cuts)
    stored = cut_codes(next(iter(train_cuts))).shape[1]
    if stored != dims["num_codebooks"]:
        raise SystemExit(f"error: the cuts hold {stored} codebooks, the codec {args.codec} has "
                         f"{dims['num_codebooks']}: they were tokenized with another codec")
    config = load_token_train_config(args.config, len(symbols), dims["num_codebooks"], dims["codebook_size"],
                                     args.set + [f"train.frame_rate={dims['frame_rate']}"])
    log_with = None
    if args.wandb != "disabled":
        os.environ.setdefault("WANDB_MODE", args.wandb)
        log_with = "wandb"
    trainer = TokenTrainer(config, train_cuts, symbols, args.out_dir,
                           valid_cuts=CutSet.from_file(args.valid_cuts) if args.valid_cuts else None,
                           codec=args.codec, log_with=log_with, tracker_kwargs={"wandb": {"dir": str(args.out_dir)}})
    if args.resume and trainer.resume():  # a checkpoint that cannot be restored: run_cli's one line
        trainer.acc.print(f"resumed at step {trainer.step}")
    trainer.train(stop_after=args.stop_after)
    release = trainer.export(dtype=getattr(torch, args.export_dtype), copy_codec=args.copy_codec)
    trainer.acc.print(f"release written to {release}")
    trainer.acc.end_training()


if __name__ == "__main__":
    run_cli(main)
