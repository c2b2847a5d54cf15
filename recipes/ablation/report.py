"""The MCRVQ ablation's measurements and report: codec reconstruction at several codebook counts, how much the first
codebook carries, and downstream zero-shot TTS, for a codec with MCRVQ and one with plain RVQ.

The stages that produce the codecs, tokens and models are in ``recipes/ablation/run.py``, which imports this file.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from toolkit.audio import load_audio
from tts import evaluation

CODEC_KS = (1, 3, 4, 8)  # codebooks decoded: the first alone, the three parallel MCRVQ groups, and the bitrates


@torch.no_grad()
def codec_scores(codec, clips: Path, rows: Sequence[Dict[str, str]],
                 scorer: Optional[evaluation.Scorer] = None) -> Dict[int, dict]:
    """Mean scores per number of decoded codebooks (``CODEC_KS`` up to the codec's count) over transcribed clips:
    PESQ, STOI, V/UV F1 and mel distance always; WER (the scorer's ASR on the decoded audio against the transcript);
    DNSMOS and speaker similarity to the original at 4 and 8 codebooks."""
    from codec import reconstruction_metrics

    scorer = scorer or evaluation.Scorer()
    per_k: Dict[int, List[dict]] = {k: [] for k in CODEC_KS if k <= codec.num_codebooks}
    for row in rows:
        wav = load_audio(clips / row["file"], codec.sample_rate)
        codes = codec.encode(wav[None, None])
        for k in per_k:
            decoded = codec.decode(codes[:, :k])[0, 0, : wav.numel()].float()
            scores = reconstruction_metrics(wav, decoded, codec.sample_rate, vuv=True)
            audio = decoded.numpy()
            scores["wer"] = evaluation.word_error_rate(row["transcript"], scorer.transcribe(audio, codec.sample_rate))
            if k >= 4:
                scores["speaker_similarity"] = scorer.speaker_similarity(audio, wav.numpy(), codec.sample_rate)
                if scorer.dnsmos:
                    scores.update(evaluation.dnsmos(audio, codec.sample_rate))
            per_k[k].append(scores)
    return {k: {name: float(np.nanmean([r[name] for r in rows_k if name in r]))
                for name in sorted({n for r in rows_k for n in r})} | {"clips": float(len(rows_k))}
            for k, rows_k in per_k.items()}


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def plot_results(results: dict, folder: Path) -> Dict[str, str]:
    """Bar charts beside the report: ``codec.png`` (each quantizer at each k) and ``tts.png`` (each model on each
    quantizer). Returns {section: file name} for the charts written (none without matplotlib)."""
    written = {}
    codec = {f"{kind} k={k}": s for kind, per_k in results.get("codec", {}).items()
             for k, s in sorted(per_k.items(), key=lambda item: int(item[0]))}
    panels = (("pesq", "PESQ"), ("stoi", "STOI"), ("vuv_f1", "V/UV F1"), ("wer", "WER (lower is better)"))
    if codec and evaluation.plot_bars(codec, panels, folder / "codec.png", "codec reconstruction from k codebooks"):
        written["codec"] = "codec.png"
    tts = {**results.get("tts_reference", {}), **results.get("tts", {})}
    panels = (("wer", "WER (lower is better)"), ("speaker_similarity", "speaker similarity"),
              ("dnsmos_ovrl", "DNSMOS overall"))
    if tts and evaluation.plot_bars(tts, panels, folder / "tts.png", "zero-shot TTS"):
        written["tts"] = "tts.png"
    return written


def report(results: dict, setup: str, plots: Optional[Dict[str, str]] = None) -> str:
    """The Markdown report from the results of ``recipes/ablation/run.py`` (``results.json``); ``plots`` maps a
    section (``codec``, ``tts``) to an image beside the report."""
    plots = plots or {}
    lines = ["# MCRVQ ablation", "", setup.strip(), ""]
    kinds = list(results.get("codec", {}))
    if kinds:
        lines += ["## Codec reconstruction", "",
                  "Decoded from the first k codebooks, on real clips none of which were in training. WER is "
                  "pocketsphinx on the decoded audio against the transcript (weak ASR: compare rows, not with "
                  "the paper).", "",
                  "| quantizer | k | PESQ | STOI | V/UV F1 | mel distance | WER | speaker sim. | DNSMOS |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for kind in kinds:
            for k, s in sorted(results["codec"][kind].items(), key=lambda item: int(item[0])):
                lines.append(f"| {kind} | {k} | {_cell(s.get('pesq'))} | {_cell(s.get('stoi'))} | "
                             f"{_cell(s.get('vuv_f1'))} | {_cell(s.get('mel_distance'))} | {_cell(s.get('wer'))} | "
                             f"{_cell(s.get('speaker_similarity'))} | {_cell(s.get('dnsmos_ovrl'))} |")
        lines.append("")
        if "codec" in plots:
            lines += [f"![codec reconstruction]({plots['codec']})", ""]
    if results.get("entropy"):
        lines += ["## How much the first codebook carries", "",
                  "Codebook-1 tokens over the tokenized training corpus; rows k = 1 and 3 of the table above show "
                  "what decoding from them alone gives.", "",
                  "| quantizer | entropy (bits) | perplexity | entries used |", "| --- | --- | --- | --- |"]
        for kind, s in results["entropy"].items():
            lines.append(f"| {kind} | {_cell(s['entropy_bits'])} | {_cell(s['perplexity'])} | {_cell(s['used'])} |")
        lines.append("")
    if results.get("tts"):
        lines += ["## Zero-shot TTS", "",
                  "3 s prompts from another clip of the same speaker; targets are transcribed utterances.", "",
                  "| model | quantizer | WER | speaker sim. | DNSMOS | items |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for name, s in results.get("tts_reference", {}).items():
            lines.append(f"| {name} | | {_cell(s.get('wer'))} | {_cell(s.get('speaker_similarity'))} | "
                         f"{_cell(s.get('dnsmos_ovrl'))} | {int(s.get('items', 0))} |")
        for name, s in results["tts"].items():
            model, kind = name.rsplit("_", 1)
            lines.append(f"| {model} | {kind} | {_cell(s.get('wer'))} | {_cell(s.get('speaker_similarity'))} | "
                         f"{_cell(s.get('dnsmos_ovrl'))} | {int(s.get('items', 0))} |")
        lines.append("")
        if "tts" in plots:
            lines += [f"![zero-shot TTS]({plots['tts']})", ""]
    return "\n".join(lines) + "\n"
