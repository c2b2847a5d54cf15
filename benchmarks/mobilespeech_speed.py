"""MobileSpeech parallel decoding against VALL-E of the same width and depth, for 10 s of speech.

    python benchmarks/mobilespeech_speed.py                  # mini and paper sizes, 750 frames, 2 threads
    python benchmarks/mobilespeech_speed.py --configs mini --frames 300

Random weights. MobileSpeech decodes layer 1 in --steps confidence-based rounds and each later layer in one, with
durations fixed so that the output has exactly --frames frames (--phonemes phonemes). VALL-E (AR with the KV cache,
then the NAR, greedy) generates the same number of frames after a --prompt-frames prompt, its end token disabled.
Both get the same prompt. Prints seconds, the real-time factor (compute seconds per second of audio at 75 Hz), the
decoder passes each made, and the speed-up.
"""

from __future__ import annotations

import argparse
import time

import torch

from tts.models.mobilespeech import MobileSpeech, MobileSpeechConfig
from tts.models.sampling import SamplingConfig
from tts.models.valle import Valle, ValleConfig

PRESETS = {"mini": MobileSpeechConfig.mini, "paper": MobileSpeechConfig.paper}
FRAME_RATE = 75
NUM_SYMBOLS = 100


def valle_like(config: MobileSpeechConfig) -> Valle:
    """VALL-E whose two stages each have the MobileSpeech decoder's width, heads, depth and FFN."""
    d = config.decoder
    transformer = type(d)(d.dim, d.heads, d.layers, d.ffn_dim, 0.0)
    model = Valle(ValleConfig(NUM_SYMBOLS, config.num_codebooks, config.codebook_size, transformer)).eval()
    with torch.no_grad():
        model.ar.head.bias[model.ar.eos] = -1e4  # never ends: exactly --frames frames
    return model


@torch.no_grad()
def run(name: str, args) -> dict:
    torch.manual_seed(0)
    config = PRESETS[name](NUM_SYMBOLS)
    mobile = MobileSpeech(config).eval()
    valle = valle_like(config)
    g = torch.Generator().manual_seed(1)
    phonemes = torch.randint(3, NUM_SYMBOLS, (1, args.phonemes), generator=g)
    prompt = torch.randint(0, config.codebook_size, (config.num_codebooks, args.prompt_frames), generator=g)
    per = args.frames // args.phonemes
    durations = torch.full((1, args.phonemes), per)
    durations[0, : args.frames - per * args.phonemes] += 1
    lens = torch.tensor([args.phonemes])
    mobile.decode(phonemes[:, :10], torch.tensor([10]), prompt, steps=2, durations=durations[:, :10])  # warm-up
    start = time.perf_counter()
    codes = mobile.decode(phonemes, lens, prompt, steps=args.steps, temperature=0.0, durations=durations)[0]
    t_mobile = time.perf_counter() - start
    assert codes.shape == (config.num_codebooks, args.frames)
    start = time.perf_counter()
    first = valle.ar.generate(phonemes, lens, prompt[0], [(args.frames, args.frames)], SamplingConfig())
    out = valle.nar.generate(phonemes, lens, prompt, first)[0]
    t_valle = time.perf_counter() - start
    assert out.shape[1] == args.frames, out.shape
    params = sum(p.numel() for p in mobile.parameters()) / 1e6
    valle_params = sum(p.numel() for p in valle.parameters()) / 1e6
    return {"mobile_s": t_mobile, "valle_s": t_valle, "params": params, "valle_params": valle_params,
            "mobile_passes": args.steps + config.num_codebooks - 1, "valle_passes": args.frames + config.num_codebooks
            - 1, "layers": config.decoder.layers, "dim": config.decoder.dim}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["mini", "paper"], choices=sorted(PRESETS))
    parser.add_argument("--frames", type=int, default=750)
    parser.add_argument("--phonemes", type=int, default=150)
    parser.add_argument("--prompt-frames", type=int, default=225)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seconds = args.frames / FRAME_RATE
    print(f"{args.frames} frames ({seconds:.1f} s) for {args.phonemes} phonemes after a {args.prompt_frames}-frame "
          f"prompt; MobileSpeech with {args.steps} rounds for layer 1; {args.threads} threads; torch "
          f"{torch.__version__}\n")
    print("| config | model | params (M) | decoder passes | seconds | RTF | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for name in args.configs:
        r = run(name, args)
        size = f"{name} (d={r['dim']}, {r['layers']} layers)"
        print(f"| {size} | MobileSpeech | {r['params']:.1f} | {r['mobile_passes']} | {r['mobile_s']:.2f} | "
              f"{r['mobile_s'] / seconds:.3f} | {r['valle_s'] / r['mobile_s']:.1f}x |")
        print(f"| {size} | VALL-E (AR cached + NAR) | {r['valle_params']:.1f} | {r['valle_passes']} | "
              f"{r['valle_s']:.2f} | {r['valle_s'] / seconds:.3f} | 1.0x |", flush=True)


if __name__ == "__main__":
    main()
