"""AdamW step time on this machine for the project's mini models: the plain (single-tensor) kernel, foreach, fused.

    python benchmarks/adamw_speed.py --threads 1

Prints milliseconds per optimizer step (random gradients; the models' own parameters) and the parameter counts.
"""

import argparse
import time

import torch


def step_ms(model: torch.nn.Module, repeats: int, **kind) -> float:
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, **kind)
    optimizer.step()  # allocates the state
    start = time.perf_counter()
    for _ in range(repeats):
        optimizer.step()
    return (time.perf_counter() - start) / repeats * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from codec import CodecConfig, LanguageCodec
    from tts.models.mobilespeech import MobileSpeech, MobileSpeechConfig
    from tts.models.valle import Valle, ValleConfig

    models = {"VALL-E mini": Valle(ValleConfig.mini(80)),
              "MobileSpeech mini": MobileSpeech(MobileSpeechConfig.mini(80)),
              "codec mini": LanguageCodec(CodecConfig.mini())}
    print(f"AdamW, ms per step, {args.threads} thread(s)")
    print("| model | parameters | plain | foreach | fused |")
    print("| --- | --- | --- | --- | --- |")
    for name, model in models.items():
        times = [step_ms(model, args.repeats, **kind) for kind in ({"foreach": False}, {"foreach": True},
                                                                   {"fused": True})]
        count = sum(p.numel() for p in model.parameters())
        print(f"| {name} | {count / 1e6:.1f}M | " + " | ".join(f"{t:.1f}" for t in times) + " |")


if __name__ == "__main__":
    main()
