"""Codec resynthesis quality on a folder of clips: PESQ (wideband), STOI, V/UV F1 and mel distance at each number of
codebooks, next to the paper's numbers for Language-Codec on LibriTTS test-clean.

    python recipes/codec/evaluate.py --codec path/to/release --clips ../shared/speech --out report.json
    python recipes/codec/evaluate.py --codec path/to/release --clips ../shared/speech --intelligibility

With --intelligibility it also transcribes the original and each resynthesis of every clip whose transcript
``<clips>/manifest.tsv`` gives (pocketsphinx, or --asr-model), and reports the WER of both and their gap, plus the
speaker similarity of each resynthesis to its original (resemblyzer, or --speaker-model) over all clips.
Needs the evaluation extras (``pip install -e ".[eval]"``). Prints a Markdown table.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, Optional

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: recipes.eval.protocol

from codec import LanguageCodec, load_audio, load_codec, reconstruction_metrics  # noqa: E402
from toolkit.metrics import mean_scores  # noqa: E402
from toolkit.runs import run_cli  # noqa: E402

PAPER = {4: {"pesq": 3.27, "stoi": 0.949, "vuv_f1": 0.966}, 8: {"pesq": 3.88, "stoi": 0.972, "vuv_f1": 0.975}}


def evaluate(codec: LanguageCodec, clips, codebooks=(4, 8), vuv: bool = True, scorer=None,
             transcripts: Optional[Dict[str, str]] = None, unquantized: bool = False) -> dict:
    """Mean scores per number of codebooks (and, with ``unquantized``, under ``"unquantized"`` those of the encoder's
    latent decoded without quantization: the autoencoder alone). With a ``tts.evaluation.Scorer``, also
    ``speaker_similarity`` (each clip) and, for clips in ``transcripts`` (file name -> text), ``wer`` of the
    resynthesis, ``wer_original`` and ``wer_gap``."""
    from tts.evaluation import word_error_rate

    results = {k: [] for k in (*codebooks, *(("unquantized",) if unquantized else ()))}
    sr = codec.sample_rate
    for path in tqdm(clips, desc="clips", unit="clip"):
        wav = load_audio(path, sr)
        codes, latent = codec.encode_with_latent(wav[None])
        text = (transcripts or {}).get(Path(path).name)
        original_wer = None
        if scorer is not None and text is not None:
            original_wer = word_error_rate(text, scorer.transcribe(wav.numpy(), sr))
        for k in results:
            decoded = codec.decode_latent(latent) if k == "unquantized" else codec.decode(codes[:, :k])
            out = decoded[0, 0, : wav.numel()]
            row = reconstruction_metrics(wav, out, sr, vuv=vuv)
            if scorer is not None:
                row["speaker_similarity"] = scorer.speaker_similarity(out.numpy(), wav.numpy(), sr)
                if original_wer is not None:
                    row["wer"] = word_error_rate(text, scorer.transcribe(out.numpy(), sr))
                    row["wer_original"] = original_wer
                    row["wer_gap"] = row["wer"] - original_wer
            results[k].append(row)
    return {k: mean_scores(rows) for k, rows in results.items()}


def read_transcripts(folder: Path) -> Dict[str, str]:
    """File name -> transcript from ``<folder>/manifest.tsv`` (the ``../shared/speech`` layout); {} without one."""
    from recipes.eval.protocol import read_clips

    if not (folder / "manifest.tsv").is_file():
        return {}
    return {row["file"]: row["transcript"] for row in read_clips(folder)
            if row.get("transcript", "unknown") != "unknown" and row.get("role", "full_utterance") == "full_utterance"}


def table(scores: dict, name: str) -> str:
    extra = any("speaker_similarity" in s for s in scores.values())
    wer = any("wer" in s for s in scores.values())
    head = "| codec | codebooks | kbps | PESQ | STOI | V/UV F1 | mel distance |"
    head += " WER (resynth / original / gap) |" * wer + " speaker similarity |" * extra
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    nan = float("nan")

    def cell(value) -> str:  # a metric that was not computed (--no-vuv, a missing package) is a blank, not nan
        return "" if value is None else f"{value:.3f}"

    for k, s in scores.items():
        kbps = "" if k == "unquantized" else f"{k * 10 * 75 / 1000:g}"
        row = (f"| {name} | {k} | {kbps} | {cell(s.get('pesq'))} | {cell(s.get('stoi'))} "
               f"| {cell(s.get('vuv_f1'))} | {s['mel_distance']:.3f} |")
        if wer:
            row += f" {s.get('wer', nan):.3f} / {s.get('wer_original', nan):.3f} / {s.get('wer_gap', nan):+.3f} |"
        if extra:
            row += f" {s.get('speaker_similarity', nan):.3f} |"
        lines.append(row)
        if k in PAPER:
            p = PAPER[k]
            lines.append(f"| paper (LibriTTS test-clean) | {k} | {kbps} | {p['pesq']} | {p['stoi']} "
                         f"| {p['vuv_f1']} | |" + " |" * wer + " |" * extra)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--codec", required=True, help="release directory or official checkpoint")
    parser.add_argument("--clips", type=Path, required=True, help="folder of audio clips (searched recursively)")
    parser.add_argument("--out", type=Path, help="write the scores as JSON")
    parser.add_argument("--no-vuv", action="store_true", help="skip V/UV F1 (pYIN is the slow part)")
    parser.add_argument("--intelligibility", action="store_true",
                        help="also WER (clips with a transcript in <clips>/manifest.tsv) and speaker similarity")
    parser.add_argument("--asr-model", help="local HuggingFace CTC model folder instead of pocketsphinx")
    parser.add_argument("--speaker-model", help="local HuggingFace x-vector model folder instead of resemblyzer")
    parser.add_argument("--unquantized", action="store_true", help="also score the encoder's latent decoded without "
                        "quantization (the autoencoder alone: what quantization costs is the difference)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scorer = None
    if args.intelligibility:
        from tts.evaluation import Scorer

        scorer = Scorer(asr_model=args.asr_model, speaker_model=args.speaker_model, dnsmos=False).check()
    codec = load_codec(args.codec)
    clips = sorted(p for p in args.clips.rglob("*") if p.suffix.lower() in (".wav", ".flac"))
    scores = evaluate(codec, clips, vuv=not args.no_vuv, scorer=scorer,
                      transcripts=read_transcripts(args.clips) if scorer else None, unquantized=args.unquantized)
    print(f"{len(clips)} clips from {args.clips}")
    print(table(scores, Path(args.codec).name))
    if args.out:
        args.out.write_text(json.dumps({"codec": str(args.codec), "clips": len(clips), "scores": scores}, indent=1))


if __name__ == "__main__":
    run_cli(main)
