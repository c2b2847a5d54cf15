"""Codec resynthesis quality on a folder of clips: PESQ (wideband), STOI, V/UV F1 and mel distance at each number of
codebooks, next to the paper's numbers for Language-Codec on LibriTTS test-clean.

    python recipes/codec/evaluate.py --codec path/to/release --clips ../shared/speech --out report.json

Needs the evaluation extras (``pip install -e ".[eval]"``). Prints a Markdown table.
"""

import argparse
import json
from pathlib import Path

import torch
from tqdm import tqdm

from codec import LanguageCodec, load_audio, load_codec
from codec.metrics import mean_scores, reconstruction_metrics

PAPER = {4: {"pesq": 3.27, "stoi": 0.949, "vuv_f1": 0.966}, 8: {"pesq": 3.88, "stoi": 0.972, "vuv_f1": 0.975}}


def evaluate(codec: LanguageCodec, clips, codebooks=(4, 8), vuv: bool = True) -> dict:
    results = {k: [] for k in codebooks}
    for path in tqdm(clips, desc="clips", unit="clip"):
        wav = load_audio(path, codec.sample_rate)
        codes = codec.encode(wav[None])
        for k in codebooks:
            out = codec.decode(codes[:, :k])[0, 0, : wav.numel()]
            results[k].append(reconstruction_metrics(wav, out, codec.sample_rate, vuv=vuv))
    return {k: mean_scores(rows) for k, rows in results.items()}


def table(scores: dict, name: str) -> str:
    lines = ["| codec | codebooks | kbps | PESQ | STOI | V/UV F1 | mel distance |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for k, s in scores.items():
        kbps = k * 10 * 75 / 1000
        nan = float("nan")
        lines.append(f"| {name} | {k} | {kbps:g} | {s.get('pesq', nan):.3f} | {s.get('stoi', nan):.3f} "
                     f"| {s.get('vuv_f1', nan):.3f} | {s['mel_distance']:.3f} |")
        if k in PAPER:
            p = PAPER[k]
            lines.append(f"| paper (LibriTTS test-clean) | {k} | {kbps:g} | {p['pesq']} | {p['stoi']} "
                         f"| {p['vuv_f1']} | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--codec", required=True, help="release directory or official checkpoint")
    parser.add_argument("--clips", type=Path, required=True, help="folder of audio clips (searched recursively)")
    parser.add_argument("--out", type=Path, help="write the scores as JSON")
    parser.add_argument("--no-vuv", action="store_true", help="skip V/UV F1 (pYIN is the slow part)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    codec = load_codec(args.codec)
    clips = sorted(p for p in args.clips.rglob("*") if p.suffix.lower() in (".wav", ".flac"))
    scores = evaluate(codec, clips, vuv=not args.no_vuv)
    print(f"{len(clips)} clips from {args.clips}")
    print(table(scores, Path(args.codec).name))
    if args.out:
        args.out.write_text(json.dumps({"codec": str(args.codec), "clips": len(clips), "scores": scores}, indent=1))


if __name__ == "__main__":
    main()
