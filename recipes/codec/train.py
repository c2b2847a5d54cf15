"""Train Language-Codec on Lhotse cuts with audio, on one process, several CPU processes or many GPUs.

    accelerate launch recipes/codec/train.py --config recipes/codec/configs/mini.yaml \
        --train-cuts data/mini/cuts_train.raw.jsonl.gz --valid-cuts data/mini/cuts_test.raw.jsonl.gz \
        --out-dir runs/codec_mini --resume

Two CPU processes: ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 --num_machines 1 \
    --mixed_precision no --dynamo_backend no recipes/codec/train.py ...
Checkpoints: <out-dir>/checkpoints/step-*/ (last N kept); --resume continues from the latest one exactly.
At the end the generator is exported to <out-dir>/release (config.json + model.safetensors).

Data: --train-cuts is a manifest (read lazily) or a Lhotse Shar directory (each process reads its own shards); --pack
reads a training pack (recipes/gpu/pack.py) instead.

Fine-tuning: --init-from starts a new run from a release directory, the bundled codec ("bundled") or an official
Language-Codec checkpoint, codebooks and their EMA state included (and the discriminators when the release holds
them); the optimizers start anew with the config's warm-up. With --resume, an existing checkpoint wins over it.
"""

import argparse

import torch

from toolkit.cuts import open_cuts
from toolkit.engine import add_run_arguments, open_pack, process_rank, run_budget, start_run
from toolkit.runs import run_cli
from codec.training import CodecTrainer, load_train_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    parser.add_argument("--init-from", metavar="RELEASE", help="start from a release directory, 'bundled' or an "
                        "official checkpoint (ignored when --resume finds a checkpoint)")
    parser.add_argument("--export-discriminators", action="store_true",
                        help="write the discriminators beside the exported generator")
    args = parser.parse_args()
    trackers = start_run(args)
    config = load_train_config(args.config, args.set)
    if args.pack:
        pack = open_pack(args)
        train, valid = pack.audio_clips("train"), pack.audio_clips("valid") if pack.has("audio", "valid") else None
        per_rank = False
    else:
        opened = open_cuts(args.train_cuts, *process_rank())
        train, per_rank = opened.cuts, opened.per_rank
        valid = open_cuts(args.valid_cuts).cuts if args.valid_cuts else None
    trainer = CodecTrainer(config, train, args.out_dir, valid_cuts=valid, per_rank=per_rank, **trackers)
    if args.resume and trainer.resume():  # a checkpoint that cannot be restored: run_cli's one line
        trainer.acc.print(f"resumed at step {trainer.step}")
    elif args.init_from:
        info = trainer.init_from(args.init_from)
        trainer.acc.print(f"started from {info['source']}" + (" with its discriminators" if info["discriminators"]
                                                               else ""))
    trainer.train(**run_budget(args))
    release = trainer.export(dtype=getattr(torch, args.export_dtype), discriminators=args.export_discriminators,
                             max_shard_bytes=args.max_shard_bytes)
    trainer.acc.print(f"release written to {release}")
    trainer.acc.end_training()


if __name__ == "__main__":
    run_cli(main)
