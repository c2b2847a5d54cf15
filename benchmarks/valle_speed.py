"""VALL-E AR decoding speed with and without the key/value cache, for the same weights.

    python benchmarks/valle_speed.py                      # mini and paper sizes, 750 frames (10 s), 2 threads
    python benchmarks/valle_speed.py --configs mini --frames 100

Prints tokens per second and the real-time factor (seconds of compute per second of audio at 75 Hz) of greedy
decoding, and whether the cached and uncached codes are identical. Random weights; the end token is disabled so every
run generates exactly --frames frames after a --prompt-frames prompt and --phonemes phonemes.

Decoding without the cache re-runs the whole sequence at every step. Where that takes too long (the paper size on a
CPU), its time is integrated from the measured cost of single steps at --samples evenly spaced lengths, and codes are
compared over the first --check-frames steps; the output says so. --full runs every step instead.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from tts.models.sampling import SamplingConfig
from tts.models.valle import ValleAR, ValleConfig

PRESETS = {"mini": ValleConfig.mini, "paper": ValleConfig.paper}
FRAME_RATE = 75


def build(name: str, num_symbols: int = 100) -> ValleAR:
    torch.manual_seed(0)
    model = ValleAR(PRESETS[name](num_symbols)).eval()
    with torch.no_grad():
        model.head.bias[model.eos] = -1e4  # never ends: every run decodes the same number of frames
    return model


def decode(model: ValleAR, phonemes, prompt, frames: int, use_cache: bool):
    """Greedy codes of the model's decoding path (``ValleAR.generate``) and the seconds it took."""
    start = time.perf_counter()
    (codes,) = model.generate(phonemes, torch.tensor([phonemes.shape[1]]), prompt, [(frames, frames)],
                              SamplingConfig(greedy=True), use_cache=use_cache)
    return codes.tolist(), time.perf_counter() - start


@torch.no_grad()
def uncached_step_time(model: ValleAR, phonemes, prompt, generated: int) -> float:
    """Seconds of one uncached step after ``generated`` frames (a full forward over the sequence so far)."""
    tokens = torch.cat([prompt, torch.zeros(generated, dtype=torch.long)])
    return decode(model, phonemes, tokens, 1, use_cache=False)[1]


def run(name: str, args) -> dict:
    model = build(name)
    g = torch.Generator().manual_seed(1)
    phonemes = torch.randint(3, 100, (1, args.phonemes), generator=g)
    prompt = torch.randint(0, 1024, (args.prompt_frames,), generator=g)
    decode(model, phonemes, prompt, 5, True)  # warm-up
    cached, t_cached = decode(model, phonemes, prompt, args.frames, True)
    full = args.full or name == "mini"
    if full:
        uncached, t_uncached = decode(model, phonemes, prompt, args.frames, False)
        identical, how = cached == uncached, "measured"
    else:
        lengths = np.linspace(0, args.frames - 1, args.samples).round().astype(int)
        times = [uncached_step_time(model, phonemes, prompt, int(n)) for n in lengths]
        t_uncached = float(np.interp(np.arange(args.frames), lengths, times).sum())  # steps 0..frames-1
        check, _ = decode(model, phonemes, prompt, args.check_frames, False)
        identical, how = cached[: args.check_frames] == check, f"integrated from {args.samples} step lengths"
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return {"config": name, "params_m": params, "cached_s": t_cached, "uncached_s": t_uncached,
            "identical": identical, "how": how}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["mini", "paper"], choices=sorted(PRESETS))
    parser.add_argument("--frames", type=int, default=750)
    parser.add_argument("--prompt-frames", type=int, default=225)
    parser.add_argument("--phonemes", type=int, default=150)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--samples", type=int, default=6)
    parser.add_argument("--check-frames", type=int, default=20)
    parser.add_argument("--full", action="store_true", help="decode every uncached step, whatever the size")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seconds = args.frames / FRAME_RATE
    print(f"AR greedy decoding of {args.frames} frames ({seconds:.1f} s) after a {args.prompt_frames}-frame prompt "
          f"and {args.phonemes} phonemes; {args.threads} threads; torch {torch.__version__}\n")
    print("| config | params (M) | cache | tokens/s | RTF | speed-up | codes identical | uncached time |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.configs:
        r = run(name, args)
        speedup = r["uncached_s"] / r["cached_s"]
        print(f"| {name} | {r['params_m']:.1f} | yes | {args.frames / r['cached_s']:.1f} | "
              f"{r['cached_s'] / seconds:.3f} | {speedup:.1f}x | {'yes' if r['identical'] else 'NO'} | |")
        print(f"| {name} | {r['params_m']:.1f} | no | {args.frames / r['uncached_s']:.1f} | "
              f"{r['uncached_s'] / seconds:.3f} | 1.0x | | {r['how']} |", flush=True)


if __name__ == "__main__":
    main()
