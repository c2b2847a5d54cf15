"""Codec training throughput: audio-seconds trained per wall-second, with the step split into its parts.

    python benchmarks/codec_train_speed.py --cuts data/mini/cuts_train.raw.jsonl.gz          # 1 and 2 threads
    python benchmarks/codec_train_speed.py --synthetic --threads 1 --steps 10                # no corpus needed

It builds the real ``CodecTrainer`` from a run config (default: ``recipes/codec/configs/mini.yaml``), starts it from
the bundled codec's weights (``--start``) and times ``--steps`` training steps after ``--warmup`` untimed ones, in
the reconstruction-only phase and in the adversarial phase (``--phases``). The parts:

- data: waiting for the next batch (reading, resampling and cropping audio);
- encoder, quantizer, decoder: the generator's forward pass (backbone and ISTFT head are the decoder);
- losses: the mel loss (and the commitment loss inside the quantizer's time);
- discriminators: their forward passes (the discriminator update's and the generator's adversarial one);
- backward: generator and discriminator backward passes;
- optimizer: gradient clipping and the AdamW steps;
- other: the rest of the step (schedulers, finiteness checks, logging).

Times are wall-clock (the CPU runs one op at a time, so parts add up to the step). ``--synthetic`` trains on
generated harmonic audio written at 22.05 kHz (so resampling is exercised as with a real corpus).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Dict

import numpy as np
import soundfile as sf
import torch

from codec.training import CodecTrainer, load_train_config

ROOT = Path(__file__).resolve().parents[1]
PARTS = ["data", "encoder", "quantizer", "decoder", "losses", "discriminators", "backward", "optimizer", "other"]


class Clock:
    """Wall time per part; nested parts are charged to the innermost one only."""

    def __init__(self):
        self.totals: Dict[str, float] = defaultdict(float)
        self.stack = []

    @contextlib.contextmanager
    def part(self, name: str):
        now = time.perf_counter()
        if self.stack:  # pause the enclosing part
            outer, started = self.stack[-1]
            self.totals[outer] += now - started
        self.stack.append((name, now))
        try:
            yield
        finally:
            end = time.perf_counter()
            name, started = self.stack.pop()
            self.totals[name] += end - started
            if self.stack:
                outer, _ = self.stack[-1]
                self.stack[-1] = (outer, end)


def instrument(trainer: CodecTrainer, clock: Clock) -> None:
    """Wrap the trainer's modules and calls so that each part's time lands in ``clock``."""
    codec = trainer.codec

    def wrap_module(module: torch.nn.Module, name: str) -> None:
        forward = module.forward
        module.forward = lambda *a, **k: _timed(clock, name, forward, *a, **k)

    wrap_module(codec.encoder, "encoder")
    wrap_module(codec.quantizer, "quantizer")
    wrap_module(codec.backbone, "decoder")
    wrap_module(codec.head, "decoder")
    wrap_module(trainer.mel, "losses")
    wrap_module(trainer.acc.unwrap_model(trainer.discs), "discriminators")
    backward = trainer.acc.backward
    trainer.acc.backward = lambda *a, **k: _timed(clock, "backward", backward, *a, **k)
    clip = trainer.acc.clip_grad_norm_
    trainer.acc.clip_grad_norm_ = lambda *a, **k: _timed(clock, "optimizer", clip, *a, **k)
    for opt in (trainer.opt_g, trainer.opt_d):
        step = opt.step
        opt.step = (lambda s: lambda *a, **k: _timed(clock, "optimizer", s, *a, **k))(step)


def _timed(clock: Clock, name: str, fn, *args, **kwargs):
    with clock.part(name):
        return fn(*args, **kwargs)


def synthetic_cuts(folder: Path, count: int = 24, seconds: float = 6.0, rate: int = 22050):
    """Speech-like harmonic bursts with pitch glides and noise, one file per cut."""
    from lhotse import CutSet, Recording

    rng = np.random.default_rng(0)
    recordings = []
    for i in range(count):
        t = np.arange(int(seconds * rate)) / rate
        f0 = 100 + 80 * rng.random() + 30 * np.sin(2 * np.pi * rng.uniform(0.3, 1.5) * t)
        phase = 2 * np.pi * np.cumsum(f0) / rate
        envelope = np.clip(3 * np.sin(2 * np.pi * rng.uniform(2, 5) * t + rng.uniform(0, 6)), 0, 1)
        wav = sum(np.sin(k * phase) / k for k in range(1, 12)) * envelope
        wav = (0.2 * wav + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
        sf.write(folder / f"s{i:03d}.wav", wav, rate)
        recordings.append(Recording.from_file(folder / f"s{i:03d}.wav"))
    return CutSet.from_manifests(recordings=recordings).to_eager()


def measure(config, cuts, out: Path, threads: int, steps: int, warmup: int, adversarial: bool,
            start: str) -> dict:
    torch.set_num_threads(threads)
    trainer = CodecTrainer(config, cuts, out)
    if start == "bundled":  # trained codebooks: no k-means in the timed steps, as in a long run
        from codec import LanguageCodec

        trainer.codec.load_state_dict(LanguageCodec.bundled().state_dict())
    if adversarial:
        trainer.step = config.reconstruction_only_steps  # the schedule's adversarial phase
    clock = Clock()
    instrument(trainer, clock)
    batches = trainer.batches()
    for _ in range(warmup):
        trainer.train_step(next(batches))
    clock.totals.clear()
    start = time.perf_counter()
    for _ in range(steps):
        with clock.part("other"):
            with clock.part("data"):
                wav = next(batches)
            trainer.train_step(wav)
    wall = time.perf_counter() - start
    audio = steps * config.batch_size * config.segment_seconds
    parts = {name: clock.totals.get(name, 0.0) / steps for name in PARTS}
    return {"threads": threads, "phase": "adversarial" if adversarial else "reconstruction",
            "seconds_per_step": wall / steps, "audio_seconds_per_second": audio / wall, "parts": parts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "recipes" / "codec" / "configs" / "mini.yaml")
    parser.add_argument("--set", nargs="*", action="extend", default=[],  # repeatable
                        metavar="SECTION.FIELD=VALUE", help="config overrides")
    parser.add_argument("--cuts", type=Path, default=ROOT / "data" / "mini" / "cuts_train.raw.jsonl.gz")
    parser.add_argument("--synthetic", action="store_true", help="train on generated audio instead of --cuts")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--phases", nargs="+", choices=["reconstruction", "adversarial"],
                        default=["reconstruction", "adversarial"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--start", choices=["bundled", "random"], default="bundled",
                        help="generator weights to time from: the bundled codec (as a long run) or a fresh init "
                             "(its first steps run k-means)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    from lhotse import CutSet

    config = load_train_config(args.config, args.set)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.synthetic:
            cuts = synthetic_cuts(tmp)
        elif args.cuts.is_file():
            cuts = CutSet.from_file(args.cuts)
        else:
            raise SystemExit(f"error: {args.cuts} does not exist; prepare the mini corpus (README) or pass --synthetic")
        results = []
        for threads in args.threads:
            for phase in args.phases:
                r = measure(config, cuts, tmp / f"run_{threads}_{phase}", threads, args.steps, args.warmup,
                            phase == "adversarial", args.start)
                results.append(r)
                print(f"{phase:>14} | {threads} thread(s) | {r['seconds_per_step']:.3f} s/step | "
                      f"{r['audio_seconds_per_second']:.2f} audio-s/s", flush=True)
    print(f"\nconfig {args.config.name}, batch {config.batch_size} x {config.segment_seconds:g} s, "
          f"{args.steps} steps after {args.warmup}; seconds per step by part:\n")
    print("| phase | threads | " + " | ".join(PARTS) + " | total | audio-s/s |")
    print("| --- | --- | " + " | ".join("---" for _ in PARTS) + " | --- | --- |")
    for r in results:
        print(f"| {r['phase']} | {r['threads']} | " + " | ".join(f"{r['parts'][p]:.3f}" for p in PARTS)
              + f" | {r['seconds_per_step']:.3f} | {r['audio_seconds_per_second']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
