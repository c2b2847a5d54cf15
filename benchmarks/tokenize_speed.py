"""Data preparation throughput: codec tokenization (seconds of audio per second) and phonemization (sentences/s).

    python benchmarks/tokenize_speed.py                       # release-size codec, 2 threads
    python benchmarks/tokenize_speed.py --audio-seconds 20 --sentences 500   # a quick look

Audio: the clips in ../shared/speech when present, else noise; sentences: ../shared/text/all_sentences.tsv when
present, else generated ones. The codec has random weights (speed does not depend on them).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from codec import CodecConfig, LanguageCodec, load_audio
from tts.text import build_phonemizer

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def audio_clips(total_seconds: float):
    files = sorted((SHARED / "speech").glob("*.wav"))
    clips, seconds = [], 0.0
    for f in files:
        if seconds >= total_seconds:
            break
        wav = load_audio(f, 24000)
        clips.append(wav)
        seconds += wav.numel() / 24000
    gen = torch.Generator().manual_seed(0)
    while seconds < total_seconds:
        clips.append(torch.randn(24000 * 5, generator=gen) * 0.1)
        seconds += 5
    return clips, seconds


def sentences(count: int):
    path = SHARED / "text" / "all_sentences.tsv"
    if path.exists():
        rows = [r.split("\t", 1)[1] for r in path.read_text(encoding="utf-8").splitlines()[1:count + 1]]
        if len(rows) >= count:
            return rows
    return [f"Sentence {i} has 23 words, some numbers like {i * 7}, and punctuation; doesn't it?" for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audio-seconds", type=float, default=120.0)
    parser.add_argument("--sentences", type=int, default=10000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    codec = LanguageCodec(CodecConfig.release()).eval()
    clips, seconds = audio_clips(args.audio_seconds)
    codec.encode(clips[0][None])  # warm-up
    start = time.perf_counter()
    codes = codec.encode_batch(clips)
    elapsed = time.perf_counter() - start
    frames = sum(c.shape[-1] for c in codes)
    print(f"tokenization: {len(clips)} utterances, {seconds:.0f} s of audio in {elapsed:.1f} s: "
          f"{seconds / elapsed:.1f} s of audio per second ({frames} frames), release codec, {args.threads} threads")

    texts = sentences(args.sentences)
    for name in ("espeak", "arpabet"):
        frontend = build_phonemizer(name)
        frontend(texts[:10])  # warm-up: backend start, g2p model load
        n = len(texts) if name == "espeak" else min(len(texts), 2000)
        start = time.perf_counter()
        frontend(texts[:n])
        elapsed = time.perf_counter() - start
        print(f"phonemization ({frontend.name}): {n} sentences in {elapsed:.2f} s: {n / elapsed:.0f} sentences/s")


if __name__ == "__main__":
    main()
