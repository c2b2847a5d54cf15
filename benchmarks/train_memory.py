"""Resident memory of token-model training over many distinct real batches, with and without handing freed heap memory
back after each step (``toolkit.memory.release_memory``, which the training engine calls).

    python benchmarks/train_memory.py --cuts data/mini/cuts_train.phon.jsonl.gz --steps 60
    python benchmarks/train_memory.py --cuts data/mini/cuts_train.phon.jsonl.gz --models mobilespeech --steps 20

The batches are the first ``--steps`` that the training sampler draws from ``--cuts`` (as in
``token_train_speed.py``: the mini config's ``max_duration`` and buckets, seed 0; phonemized cuts get random codes of
the right length). Each model and mode runs in a fresh process, so one does not inherit the other's heap. It prints
the resident set size (RSS) after set-up, after the first step, its peak and its last value, the mean time of a
training step after the first (a release's cost shows there too: the pages it returns must be faulted in again), and
the mean time of a release call.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(args) -> dict:
    """One model, one mode, in this process: RSS after set-up and after every step."""
    import tempfile
    import time

    import psutil
    import torch
    from lhotse import CutSet

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from token_train_speed import CONFIGS, sample_batches
    from toolkit.memory import release_memory
    from tts.data.dataset import TokenDataset
    from tts.text import SymbolTable
    from tts.training import TokenTrainer, codec_dimensions, load_token_train_config

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    symbols = SymbolTable.load(args.symbols or args.cuts.parent / "symbols.json")
    dims = codec_dimensions(args.codec)
    batches = sample_batches(CutSet.from_file(args.cuts), args.max_duration, 10, args.steps, dims["num_codebooks"],
                             dims["codebook_size"], dims["frame_rate"])
    overrides = [f"train.frame_rate={dims['frame_rate']}", f"train.max_duration={args.max_duration}", *args.set]
    config = load_token_train_config(CONFIGS[args.model], len(symbols), dims["num_codebooks"], dims["codebook_size"],
                                     overrides)
    proc = psutil.Process()
    rss, release, steps = [], [], []
    with tempfile.TemporaryDirectory() as out:
        trainer = TokenTrainer(config, CutSet.from_cuts(c for b in batches for c in b), symbols, out)
        dataset = TokenDataset(symbols, frame_rate=config.frame_rate, prompt_seconds=config.prompt_seconds)
        setup = proc.memory_info().rss
        for cuts in batches:
            start = time.perf_counter()
            trainer.train_step([dataset[cuts]])
            steps.append(time.perf_counter() - start)
            if args.release:
                start = time.perf_counter()
                release_memory()
                release.append(time.perf_counter() - start)
            rss.append(proc.memory_info().rss)
    return {"setup": setup, "rss": rss, "release_ms": 1000 * sum(release) / len(release) if release else None,
            "step_s": sum(steps[1:]) / max(len(steps) - 1, 1)}  # the first step's one-off costs left out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cuts", type=Path, required=True, help="phonemized (or tokenized) training cuts")
    parser.add_argument("--symbols", type=Path, help="default: symbols.json beside --cuts")
    parser.add_argument("--codec", default="bundled", help="codec whose dimensions the codes have")
    parser.add_argument("--models", nargs="+", default=["valle"], choices=["valle", "mobilespeech"])
    parser.add_argument("--steps", type=int, default=60, help="distinct batches, one step each")
    parser.add_argument("--max-duration", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", nargs="*", action="extend", default=[],  # repeatable
                        help="config overrides, e.g. model.preset=tiny")
    parser.add_argument("--model", help=argparse.SUPPRESS)  # set in the child processes
    parser.add_argument("--release", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.cuts.is_file():
        parser.error(f"--cuts {args.cuts}: no such file")
    if args.model:  # a child: measure and print JSON
        print(json.dumps(measure(args)))
        return
    print(f"{args.steps} training steps on distinct batches of {args.cuts} (max_duration {args.max_duration}), "
          f"{args.threads} thread(s)\n")
    print("| model | freed memory returned | RSS after set-up (GB) | after step 1 | peak | last | step (s) | "
          "release call (ms) |")
    print("|---|---|---|---|---|---|---|---|")
    for model in args.models:
        for release in (0, 1):
            command = [sys.executable, __file__, "--cuts", str(args.cuts), "--codec", args.codec, "--steps",
                       str(args.steps), "--max-duration", str(args.max_duration), "--threads", str(args.threads),
                       "--model", model, "--release", str(release)]
            if args.symbols:
                command += ["--symbols", str(args.symbols)]
            if args.set:
                command += ["--set", *args.set]
            done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
            if done.returncode:
                sys.exit(f"error: the {model} run failed:\n{done.stderr[-2000:]}")
            r = json.loads(done.stdout.strip().splitlines()[-1])
            gb = [x / 1e9 for x in r["rss"]]
            ms = f"{r['release_ms']:.1f}" if r["release_ms"] is not None else ""
            print(f"| {model} | {'yes' if release else 'no'} | {r['setup'] / 1e9:.2f} | {gb[0]:.2f} | {max(gb):.2f} | "
                  f"{gb[-1]:.2f} | {r['step_s']:.2f} | {ms} |", flush=True)


if __name__ == "__main__":
    main()
