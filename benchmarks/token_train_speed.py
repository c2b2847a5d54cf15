"""Training throughput of the token models (VALL-E AR+NAR, MobileSpeech) on real bucketed batches of a corpus.

    python benchmarks/token_train_speed.py --cuts data/mini/cuts_train.phon.jsonl.gz      # both models, 1 and 2 threads
    python benchmarks/token_train_speed.py --cuts data/mini/cuts_train.phon.jsonl.gz --models valle --threads 2 \
        --steps 6 --set model.transformer.heads=8

The batches are the first ``--warmup + --steps`` that the training sampler (``make_sampler``, the config's
``max_duration`` and ``num_buckets``, seed 0) draws from ``--cuts``, collated by the training dataset, so their shapes
(durations, phoneme counts, padding) are the corpus's. Cuts that are phonemized but not tokenized get random codes of
the right length (ceil(duration x 75) frames, the codec's codebooks): the step's cost depends on shapes only.

For each model and thread count it prints:
- seconds per step and audio-seconds trained per wall-second of the real ``TokenTrainer.train_step`` (data = the
  dataset's collation, timed separately and added: with ``num_workers=0`` it runs in the training process);
- the padding fraction of the batches (phonemes, frames, and VALL-E's joint text+audio sequence);
- the step split into data, forward, backward and optimizer (an instrumented copy of the step on the same batches);
- forward time by module (hooks on attention, feed-forward, norms and the other top-level parts) and, with
  ``--profile``, the costliest operators of a forward and a backward pass.

``--compile`` compiles every transformer block first (``torch.compile``, dynamic shapes); the warm-up time printed then
holds the compilation, and the split and module times are not comparable (the timing hooks make dynamo recompile).
"""

from __future__ import annotations

import argparse
import math
import re
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from lhotse import CutSet
from lhotse.features.io import MemoryRawWriter

from tts.data.dataset import TokenDataset, make_sampler
from tts.models.registry import model_class
from tts.modules.transformer import Attention, Block, Norm
from tts.text import SymbolTable
from tts.training import TokenTrainer, codec_dimensions, load_token_train_config

ROOT = Path(__file__).resolve().parents[1]

CONFIGS = {"valle": ROOT / "recipes/valle/configs/mini.yaml",
           "mobilespeech": ROOT / "recipes/mobilespeech/configs/mini.yaml"}


def sample_batches(cuts: CutSet, max_duration: float, num_buckets: int, count: int, num_codebooks: int,
                   codebook_size: int, frame_rate: int) -> list:
    """The sampler's first ``count`` batches (CutSets); cuts without codes get random ones held in memory."""
    sampler = make_sampler(cuts, max_duration, shuffle=True, seed=0, num_buckets=num_buckets)
    writer, rng, batches = MemoryRawWriter(), np.random.default_rng(0), []
    for batch in sampler:
        filled = []
        for cut in batch:
            if not cut.has_custom("codes"):
                frames = math.ceil(cut.duration * frame_rate - 1e-6)
                codes = rng.integers(0, codebook_size, (frames, num_codebooks)).astype(np.int16)
                cut = cut.with_custom("codes", writer.store_array(cut.id, codes, frame_shift=1 / frame_rate,
                                                                  temporal_dim=0))
            filled.append(cut)
        batches.append(CutSet.from_cuts(filled))
        if len(batches) == count:
            break
    return batches


def padding(batch, joint: bool) -> dict:
    """Share of padded positions: phonemes, code frames, and, for a model that reads them as one sequence
    (``TokenModel.joint_sequence``: VALL-E), the joint text+audio sequence."""
    b = len(batch.phoneme_lens)
    p, t = int(batch.phoneme_lens.max()), int(batch.code_lens.max())
    out = {"phonemes": 1 - float(batch.phoneme_lens.sum()) / (b * p),
           "frames": 1 - float(batch.code_lens.sum()) / (b * t)}
    if joint:
        out["joint"] = 1 - float((batch.phoneme_lens + batch.code_lens).sum()) / (b * (p + t))
    return out


def module_roles(model: torch.nn.Module) -> dict:
    """Modules to time, by role, none inside another: attention, feed-forward and norms of every transformer block
    (named by their transformer: ``ar.transformer attn``), and every other part that holds no transformer."""
    roles = {}

    def role(path: str) -> str:
        path = re.sub(r"\.blocks\.\d+", "", path.removeprefix("module."))
        return re.sub(r"\.\d+", "", path)

    def visit(module, path):
        holds = any(isinstance(m, (Attention, Norm)) for m in module.modules())
        if isinstance(module, (Attention, Norm)):
            roles[module] = role(path)
        elif isinstance(module, Block):
            roles[module.ffn] = role(f"{path}.ffn")
            for name, child in module.named_children():
                if child is not module.ffn:
                    visit(child, f"{path}.{name}")
        elif holds or not path or isinstance(module, (torch.nn.ModuleList, torch.nn.ModuleDict)):
            for name, child in module.named_children():
                visit(child, f"{path}.{name}" if path else name)
        else:
            roles[module] = role(path)

    visit(model, "")
    return roles


class ForwardTimer:
    """Forward seconds per role, from pre/post hooks (the roles do not nest, so they add up)."""

    def __init__(self, model: torch.nn.Module):
        self.seconds = defaultdict(float)
        self.handles, self.starts = [], {}
        for module, name in module_roles(model).items():
            self.handles.append(module.register_forward_pre_hook(self._pre))
            self.handles.append(module.register_forward_hook(lambda m, i, o, name=name: self._post(m, name)))

    def _pre(self, module, inputs):
        self.starts[module] = time.perf_counter()

    def _post(self, module, name):
        self.seconds[name] += time.perf_counter() - self.starts.pop(module)

    def remove(self):
        for handle in self.handles:
            handle.remove()


def instrumented_step(trainer: TokenTrainer, batch, timer: dict):
    """The training step's work (forward, backward, clipping and AdamW), each part timed."""
    model, opt = trainer.model, trainer.optimizer
    t0 = time.perf_counter()
    outputs = model(batch, generator=trainer._step_generator(0))
    loss = sum(o.loss for o in outputs.values())
    t1 = time.perf_counter()
    loss.backward()
    t2 = time.perf_counter()
    torch.nn.utils.clip_grad_norm_(model.parameters(), trainer.config.grad_clip)
    opt.step()
    opt.zero_grad(set_to_none=True)
    t3 = time.perf_counter()
    for key, value in (("forward", t1 - t0), ("backward", t2 - t1), ("optimizer", t3 - t2)):
        timer[key] += value


def costliest_ops(trainer: TokenTrainer, batch, top: int) -> dict:
    """The costliest operators (self CPU seconds) of one profiled forward and backward pass, each listed."""
    from torch.profiler import ProfilerActivity, profile

    result = {}
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        outputs = trainer.model(batch, generator=trainer._step_generator(0))
        loss = sum(o.loss for o in outputs.values())
    result["forward"] = prof
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        loss.backward()
    result["backward"] = prof
    trainer.optimizer.zero_grad(set_to_none=True)
    for name, prof in result.items():
        # the kernels themselves (aten::), not the autograd wrappers around them
        events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
        events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
        result[name] = [(e.key.removeprefix("aten::"), e.self_cpu_time_total / 1e6) for e in events[:top]]
    return result


def run(model_type: str, threads: int, cut_batches: list, symbols: SymbolTable, dims: dict, args) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    overrides = [f"train.frame_rate={dims['frame_rate']}", f"train.max_duration={args.max_duration}",
                 f"train.num_buckets={args.num_buckets}", *args.set]
    config = load_token_train_config(CONFIGS[model_type], len(symbols), dims["num_codebooks"],
                                     dims["codebook_size"], overrides)
    with tempfile.TemporaryDirectory() as out:
        trainer = TokenTrainer(config, CutSet.from_cuts(c for b in cut_batches for c in b), symbols, out)
        dataset = TokenDataset(symbols, frame_rate=config.frame_rate, prompt_seconds=config.prompt_seconds)
        data_seconds, batches = [], []
        for cuts in cut_batches:
            start = time.perf_counter()
            batches.append(dataset[cuts])
            data_seconds.append(time.perf_counter() - start)
        timed = batches[args.warmup:]
        if args.compile:  # each transformer block, where the elementwise work around the matrix products can fuse
            torch._dynamo.config.recompile_limit = 64  # one graph per block instance and shape class
            for module in trainer.model.modules():
                if isinstance(module, Block):
                    module.compile(dynamic=True)
        start = time.perf_counter()
        for batch in batches[: args.warmup]:
            trainer.train_step([batch])
        warmup = time.perf_counter() - start
        start = time.perf_counter()
        for batch in timed:
            trainer.train_step([batch])
        step = (time.perf_counter() - start) / len(timed)
        data = sum(data_seconds[args.warmup:]) / len(timed)
        audio = sum(float(b.code_lens.sum()) for b in timed) / config.frame_rate / len(timed)
        parts, forward = defaultdict(float), ForwardTimer(trainer.model)
        for batch in timed:
            instrumented_step(trainer, batch, parts)
        forward.remove()
        ops = costliest_ops(trainer, timed[0], args.top) if args.profile else {}
    pads = [padding(b, model_class(model_type).joint_sequence) for b in timed]
    return {
        "model": model_type, "threads": threads, "step": step + data, "data": data, "warmup": warmup,
        "audio_per_second": audio / (step + data), "audio_per_batch": audio,
        "batch_size": sum(len(b.phoneme_lens) for b in timed) / len(timed),
        "padding": {k: sum(p[k] for p in pads) / len(pads) for k in pads[0]},
        "parts": {k: v / len(timed) for k, v in parts.items()},
        "modules": {k: v / len(timed) for k, v in sorted(forward.seconds.items(), key=lambda kv: -kv[1])},
        "ops": ops,
    }


def report(r: dict) -> None:
    pad = ", ".join(f"{k} {v:.1%}" for k, v in r["padding"].items())
    print(f"\n{r['model']}, {r['threads']} thread(s): {r['warmup']:.1f} s of warm-up steps (compilation included), "
          f"then {r['step']:.3f} s/step, {r['audio_per_second']:.2f} audio-s/s "
          f"({r['audio_per_batch']:.1f} s of audio in {r['batch_size']:.1f} cuts per batch; padding: {pad})")
    parts = r["parts"]
    print("  split (s/step): " + ", ".join(f"{k} {v:.3f}" for k, v in
                                           [("data", r["data"]), *parts.items()]))
    known = sum(r["modules"].values())
    rows = [*r["modules"].items(), ("other (losses, masks, glue)", parts["forward"] - known)]
    print("  forward by module (s/step): " + ", ".join(f"{k} {v:.3f}" for k, v in rows))
    for name, ops in r["ops"].items():
        print(f"  {name}, costliest ops (s): " + ", ".join(f"{k} {v:.3f}" for k, v in ops))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cuts", type=Path, required=True, help="phonemized (or tokenized) training cuts")
    parser.add_argument("--symbols", type=Path, help="default: symbols.json beside --cuts")
    parser.add_argument("--codec", default="bundled", help="codec whose dimensions the codes have")
    parser.add_argument("--models", nargs="+", default=["valle", "mobilespeech"], choices=sorted(CONFIGS))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--steps", type=int, default=8, help="timed steps (distinct batches)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--max-duration", type=float, default=60.0, help="seconds of audio per batch (mini: 60)")
    parser.add_argument("--num-buckets", type=int, default=30, help="duration buckets (mini: 30)")
    parser.add_argument("--set", nargs="*", action="extend", default=[],  # repeatable
                        help="config overrides, e.g. model.transformer.heads=8")
    parser.add_argument("--profile", action="store_true",
                        help="also list the costliest operators of a forward and a backward pass")
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--compile", action="store_true", help="torch.compile every transformer block (dynamic "
                        "shapes); the warm-up time then holds the compilation")
    args = parser.parse_args(argv)
    if not args.cuts.is_file():
        parser.error(f"--cuts {args.cuts}: no such file")
    symbols = SymbolTable.load(args.symbols or args.cuts.parent / "symbols.json")
    dims = codec_dimensions(args.codec)
    cut_batches = sample_batches(CutSet.from_file(args.cuts), args.max_duration, args.num_buckets,
                                 args.warmup + args.steps, dims["num_codebooks"], dims["codebook_size"],
                                 dims["frame_rate"])
    print(f"torch {torch.__version__}; {len(cut_batches)} batches of {args.cuts} (max_duration "
          f"{args.max_duration}, {args.num_buckets} buckets); warm-up {args.warmup}, timed {args.steps}")
    for model_type in args.models:
        for threads in args.threads:
            report(run(model_type, threads, cut_batches, symbols, dims, args))


if __name__ == "__main__":
    main()
