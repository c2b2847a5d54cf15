"""Codec speed: real-time factors of Language-Codec and of EnCodec 24 kHz (same machine, same threads, same audio).

    python benchmarks/codec_speed.py                 # 10 s of audio, batch 1, 2 threads, best of 5
    python benchmarks/codec_speed.py --seconds 2 --repeats 1 --batch-utterances 4   # a quick look

Both codecs have random weights (no download). EnCodec is the architecture of the ``encodec`` PyPI package
(``pip install --no-deps encodec``). For ours it prints the fast inference path (``LanguageCodec.encode``) next to the
plain module path and checks that both give identical codes. RTF = processing seconds / audio seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
import types
import warnings
from typing import Callable, Optional

import torch

from codec import CodecConfig, LanguageCodec


def best_of(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: first-call allocations, folded weights
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def build_ours(config: CodecConfig) -> LanguageCodec:
    """Random weights, calibrated as the official fixture was: a random encoder maps every frame to nearly the same
    latent, so k-means codewords would all be near-ties. The last conv is rescaled to zero-mean, unit-variance
    latents, then the codebooks are k-means-initialized on 20 s (1500 frames) of other audio."""
    model = LanguageCodec(config).eval()
    calibration = torch.randn(1, 20 * 24000, generator=torch.Generator().manual_seed(7)) * 0.1
    with torch.no_grad():
        latent = model.encoder(calibration.unsqueeze(1))[0]
        mean, std = latent.mean(1), latent.std(1)
        proj = model.encoder.proj.conv
        proj.weight_g.div_(std[:, None, None])
        proj.bias.sub_(mean).div_(std)
        model.train()(calibration, num_quantizers=model.num_codebooks)
    return model.eval()


def build_encodec() -> Optional[torch.nn.Module]:
    try:
        # encodec imports torchaudio at module level, only for file helpers the model never calls; torchaudio has no
        # CPU wheel here, so an empty module stands in for it.
        sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))
        from encodec import EncodecModel
    except ImportError:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # encodec uses the deprecated torch weight_norm
        model = EncodecModel.encodec_model_24khz(pretrained=False)
    model.set_target_bandwidth(6.0)  # 8 codebooks, as ours
    return model.eval()


def measure_ours(name: str, config: CodecConfig, wav: torch.Tensor, repeats: int, seconds: float) -> dict:
    model = build_ours(config)
    with torch.inference_mode():
        codes = model.encode(wav)
        reference = model.quantizer(model.encoder(wav.unsqueeze(1))).codes
        enc = best_of(lambda: model.encode(wav), repeats)
        enc_ref = best_of(lambda: model.quantizer(model.encoder(wav.unsqueeze(1))), repeats)
        dec = best_of(lambda: model.decode(codes), repeats)
    same = (codes == reference).float().mean().item()
    return {"name": name, "encode": enc / seconds, "decode": dec / seconds, "encode_module_path": enc_ref / seconds,
            "identical": same, "model": model}


def measure_encodec(model: torch.nn.Module, wav: torch.Tensor, repeats: int, seconds: float) -> dict:
    x = wav.unsqueeze(1)
    with torch.inference_mode():
        frames = model.encode(x)
        enc = best_of(lambda: model.encode(x), repeats)
        dec = best_of(lambda: model.decode(frames), repeats)
    return {"name": "EnCodec 24 kHz (6 kbps, 8 codebooks)", "encode": enc / seconds, "decode": dec / seconds}


def measure_batched(model: LanguageCodec, count: int, repeats: int) -> str:
    gen = torch.Generator().manual_seed(1)
    lengths = torch.randint(2 * 24000, 8 * 24000, (count,), generator=gen).tolist()
    wavs = [torch.randn(n, generator=gen) * 0.1 for n in lengths]
    audio = sum(lengths) / 24000
    one = best_of(lambda: [model.encode(w[None]) for w in wavs], repeats)
    batched = best_of(lambda: model.encode_batch(wavs, max_batch_samples=4 * 24000 * 8), repeats)
    return (f"tokenization of {count} utterances of 2-8 s ({audio:.0f} s of audio): one by one {audio / one:.0f} s/s, "
            f"length-sorted padded batches of up to 4 {audio / batched:.0f} s/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-utterances", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    wav = torch.randn(1, int(args.seconds * 24000)) * 0.1
    print(f"audio {args.seconds:g} s, batch 1, {args.threads} threads, best of {args.repeats}; RTF (lower is faster)")

    rows = [measure_ours("Language-Codec release (attention block)", CodecConfig.release(), wav, args.repeats,
                         args.seconds),
            measure_ours("Language-Codec official v2 architecture", CodecConfig.official(), wav, args.repeats,
                         args.seconds)]
    encodec = build_encodec()
    ref = measure_encodec(encodec, wav, args.repeats, args.seconds) if encodec is not None else None

    print(f"{'codec':44s} {'encode':>8s} {'decode':>8s} {'total':>8s} {'vs EnCodec':>10s}")
    for row in rows + ([ref] if ref else []):
        total = row["encode"] + row["decode"]
        ratio = f"{total / (ref['encode'] + ref['decode']):.2f}x" if ref else "n/a"
        print(f"{row['name']:44s} {row['encode']:8.4f} {row['decode']:8.4f} {total:8.4f} {ratio:>10s}")
    for row in rows:
        print(f"{row['name']}: encode through the module path {row['encode_module_path']:.4f} RTF; "
              f"fast path speed-up {row['encode_module_path'] / row['encode']:.2f}x; "
              f"codes identical {100 * row['identical']:.2f}%")
    if ref is None:
        print("EnCodec not installed (pip install --no-deps encodec): no reference row")
    if args.batch_utterances:
        print(measure_batched(rows[1]["model"], args.batch_utterances, max(1, args.repeats // 2)))


if __name__ == "__main__":
    main()
