"""Offline evaluation of synthesized speech: WER (pocketsphinx + jiwer), speaker similarity (resemblyzer cosine),
DNSMOS (speechmos), and for codec resynthesis PESQ, STOI and V/UV F1 against the original.

Every default model ships inside its package (``pip install -e ".[eval]"``), so nothing downloads. These are not the
paper's models (HuBERT-Large CTC for WER, WavLM-TDNN for similarity): pocketsphinx is a weak ASR (0.32 mean WER on the
real clips of the development set), good for comparing systems on the same texts, not for absolute figures. A
``Scorer`` given local HuggingFace model folders uses them instead: a CTC model for WER (e.g. a downloaded copy of
``facebook/hubert-large-ls960-ft``, the paper's ASR) and an x-vector model for similarity (e.g.
``microsoft/wavlm-base-plus-sv``, WavLM with a TDNN x-vector head).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from toolkit.audio import load_audio, resample
from toolkit.files import atomic_path

PathLike = Union[str, os.PathLike]
ASR_RATE = 16000


def normalize_for_wer(text: str) -> str:
    """Lower case, numbers and symbols spelled out (the phonemizer's normalizer), punctuation removed; applied to
    reference and hypothesis alike so that "Dr. Smith paid $5" matches "doctor smith paid five dollars"."""
    from tts.text.normalize import normalize_text

    text = normalize_text(text).lower().replace("'", "")
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text).split())


def word_error_rate(reference: str, hypothesis: str) -> float:
    """WER of normalized texts; an empty reference gives 0 for an empty hypothesis and 1 otherwise."""
    import jiwer

    ref, hyp = normalize_for_wer(reference), normalize_for_wer(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return float(jiwer.wer(ref, hyp)) if hyp else 1.0


@lru_cache(maxsize=1)
def _sphinx_config():
    from pocketsphinx import Config

    return Config(samprate=ASR_RATE, loglevel="FATAL")


def transcribe(wav: np.ndarray, sample_rate: int) -> str:
    """English transcript of a mono waveform with pocketsphinx's bundled en-us model."""
    from pocketsphinx import Decoder

    audio = resample(np.asarray(wav, dtype=np.float32), sample_rate, ASR_RATE)
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    decoder = Decoder(_sphinx_config())
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return hyp.hypstr if hyp is not None else ""


@lru_cache(maxsize=1)
def _resemblyzer():
    """(VoiceEncoder on the CPU, preprocess_wav)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # resemblyzer's webrtcvad imports the deprecated pkg_resources
        from resemblyzer import VoiceEncoder, preprocess_wav

        return VoiceEncoder("cpu", verbose=False), preprocess_wav


def speaker_embedding(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    encoder, preprocess = _resemblyzer()
    audio = resample(np.asarray(wav, dtype=np.float32), sample_rate, ASR_RATE)
    trimmed = preprocess(audio, ASR_RATE)
    if trimmed.size >= ASR_RATE // 4:  # resemblyzer trims silence; keep something to embed
        audio = trimmed
    return encoder.embed_utterance(audio)


def speaker_similarity(a: np.ndarray, b: np.ndarray, sample_rate: int) -> float:
    """Cosine of resemblyzer d-vectors (same voice ~0.87, different voices ~0.56 on the development clips)."""
    return cosine(speaker_embedding(a, sample_rate), speaker_embedding(b, sample_rate))


def cosine(x: np.ndarray, y: np.ndarray) -> float:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return float(np.dot(x, y) / max(np.linalg.norm(x) * np.linalg.norm(y), 1e-30))


def dnsmos(wav: np.ndarray, sample_rate: int) -> Dict[str, float]:
    """DNSMOS P.835 (overall, signal, background) and P.808, from speechmos's bundled ONNX models."""
    from speechmos import dnsmos as _dnsmos

    audio = resample(np.asarray(wav, dtype=np.float32), sample_rate, ASR_RATE)
    peak = np.abs(audio).max()
    if peak > 1.0:
        audio = audio / peak
    scores = _dnsmos.run(audio, sr=ASR_RATE)
    return {"dnsmos_ovrl": float(scores["ovrl_mos"]), "dnsmos_sig": float(scores["sig_mos"]),
            "dnsmos_bak": float(scores["bak_mos"]), "dnsmos_p808": float(scores["p808_mos"])}


@lru_cache(maxsize=2)
def _hf_model(path: str, kind: str):
    """(feature extractor or processor, model in eval mode) from a local HuggingFace folder; ``kind`` is ``ctc``
    or ``xvector``. transformers reads safetensors, or ``.bin`` files with ``weights_only`` loading."""
    try:
        import transformers
    except ImportError:
        raise ValueError(f"{path}: local HuggingFace models need the transformers package "
                         "(pip install -e \".[eval]\")") from None
    if not (Path(path) / "config.json").is_file():
        raise ValueError(f"{path} is not a HuggingFace model folder (no config.json)")
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        if kind == "ctc":
            frontend = transformers.AutoProcessor.from_pretrained(path, local_files_only=True)
            model = transformers.AutoModelForCTC.from_pretrained(path, local_files_only=True)
        else:
            frontend = transformers.AutoFeatureExtractor.from_pretrained(path, local_files_only=True)
            model = transformers.AutoModelForAudioXVector.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path}: cannot load a {kind} model ({first})") from None
    return frontend, model.eval()


def _hf_run(path: PathLike, kind: str, wav: np.ndarray, sample_rate: int):
    """(frontend, model output) of a local HuggingFace model on one waveform, at 16 kHz."""
    import torch

    frontend, model = _hf_model(str(path), kind)
    audio = resample(np.asarray(wav, dtype=np.float32), sample_rate, ASR_RATE)
    inputs = frontend(audio, sampling_rate=ASR_RATE, return_tensors="pt")
    with torch.inference_mode():
        return frontend, model(**inputs)


@dataclass(frozen=True)
class Scorer:
    """Which models score speech. Defaults are the bundled offline ones (pocketsphinx, resemblyzer, DNSMOS).

    Attributes:
        asr_model: a local HuggingFace CTC model folder (e.g. HuBERT-Large fine-tuned on LibriSpeech) for WER.
        speaker_model: a local HuggingFace x-vector model folder (e.g. WavLM + TDNN) for speaker similarity.
        dnsmos: whether to compute DNSMOS.
    """

    asr_model: Optional[str] = None
    speaker_model: Optional[str] = None
    dnsmos: bool = True

    def check(self) -> "Scorer":
        """Load the local models now, so that a bad folder fails before any work; returns self."""
        if self.asr_model is not None:
            _hf_model(str(self.asr_model), "ctc")
        if self.speaker_model is not None:
            _hf_model(str(self.speaker_model), "xvector")
        return self

    def describe(self) -> Dict[str, str]:
        return {"asr": str(self.asr_model or "pocketsphinx en-us"),
                "speaker": str(self.speaker_model or "resemblyzer"), "dnsmos": "speechmos" if self.dnsmos else "off"}

    def transcribe(self, wav: np.ndarray, sample_rate: int) -> str:
        if self.asr_model is None:
            return transcribe(wav, sample_rate)
        processor, out = _hf_run(self.asr_model, "ctc", wav, sample_rate)
        return processor.batch_decode(out.logits.argmax(-1), skip_special_tokens=True)[0]

    def embed(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        if self.speaker_model is None:
            return speaker_embedding(wav, sample_rate)
        return _hf_run(self.speaker_model, "xvector", wav, sample_rate)[1].embeddings[0].numpy()

    def speaker_similarity(self, a: np.ndarray, b: np.ndarray, sample_rate: int) -> float:
        return cosine(self.embed(a, sample_rate), self.embed(b, sample_rate))

    def score(self, item: "Item", sample_rate: int = 24000) -> Dict[str, float]:
        """Every metric the item's fields allow."""
        from toolkit.metrics import pesq_wb, stoi, vuv_f1

        audio = load_audio(item.audio, sample_rate).numpy()
        scores: Dict[str, float] = {"seconds": audio.size / sample_rate}
        if item.text is not None:
            scores["wer"] = word_error_rate(item.text, self.transcribe(audio, sample_rate))
        if item.speaker_reference is not None:
            reference = load_audio(item.speaker_reference, sample_rate).numpy()
            scores["speaker_similarity"] = self.speaker_similarity(audio, reference, sample_rate)
        if self.dnsmos:
            scores.update(dnsmos(audio, sample_rate))
        if item.reference is not None:
            reference = load_audio(item.reference, sample_rate).numpy()
            n = min(reference.size, audio.size)
            scores.update(pesq=pesq_wb(reference[:n], audio[:n], sample_rate),
                          stoi=stoi(reference[:n], audio[:n], sample_rate),
                          vuv_f1=vuv_f1(reference[:n], audio[:n], sample_rate))
        return scores


@dataclass
class Item:
    """One row of an evaluation manifest.

    Attributes:
        audio: the speech to score.
        text: what it should say (WER); optional.
        speaker_reference: audio of the intended voice, e.g. the prompt (speaker similarity); optional.
        reference: the original when ``audio`` is a resynthesis of it (PESQ, STOI, V/UV F1); optional.
        system: a label to group rows by in the table.
    """

    audio: str
    text: Optional[str] = None
    speaker_reference: Optional[str] = None
    reference: Optional[str] = None
    system: str = "system"
    extra: Dict[str, str] = field(default_factory=dict)


def read_manifest(path: PathLike) -> List[Item]:
    """JSON lines with the fields of ``Item``; relative audio paths are taken from the manifest's folder."""
    path = Path(path)
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise TypeError(f"a row is a JSON object, got {type(row).__name__}")
            item = Item(**row)
        except (json.JSONDecodeError, TypeError) as err:
            raise ValueError(f"{path}:{number}: not a manifest row ({err})") from None
        for name in ("audio", "text", "speaker_reference", "reference", "system"):
            value = getattr(item, name)
            if not (isinstance(value, str) or (value is None and name != "audio")):
                raise ValueError(f"{path}:{number}: {name} must be a string, got {value!r}")
        if not isinstance(item.extra, dict):
            raise ValueError(f"{path}:{number}: extra must be an object, got {item.extra!r}")
        for name in ("audio", "speaker_reference", "reference"):
            value = getattr(item, name)
            if value is not None and not Path(value).is_absolute():
                setattr(item, name, str(path.parent / value))
            value = getattr(item, name)
            if value is not None and not Path(value).is_file():
                raise ValueError(f"{path}:{number}: {name} {value} does not exist")
        items.append(item)
    if not items:
        raise ValueError(f"{path} has no rows")
    return items


METRICS = ("wer", "speaker_similarity", "dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808", "pesq", "stoi",
           "vuv_f1", "seconds")


def summarize(items: Sequence[Item], scores: Sequence[Dict[str, float]]) -> Dict[str, Dict[str, float]]:
    """Mean of each metric per system (NaN scores are left out, their count reported)."""
    out: Dict[str, Dict[str, float]] = {}
    for system in dict.fromkeys(item.system for item in items):
        rows = [s for item, s in zip(items, scores) if item.system == system]
        summary: Dict[str, float] = {"items": float(len(rows))}
        for metric in METRICS:
            values = [r[metric] for r in rows if metric in r and not math.isnan(r[metric])]
            if values:
                summary[metric] = float(np.mean(values))
        out[system] = summary
    return out


def markdown_table(summary: Dict[str, Dict[str, float]]) -> str:
    metrics = [m for m in METRICS if any(m in s for s in summary.values())]
    lines = ["| system | items | " + " | ".join(metrics) + " |", "| --- | --- |" + " --- |" * len(metrics)]
    for system, s in summary.items():
        cells = [f"{s[m]:.3f}" if m in s else "" for m in metrics]
        lines.append(f"| {system} | {int(s['items'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


PLOTTED = (("wer", "WER (lower is better)"), ("speaker_similarity", "speaker similarity"),
           ("dnsmos_ovrl", "DNSMOS overall"), ("pesq", "PESQ"), ("stoi", "STOI"), ("vuv_f1", "V/UV F1"))


def plot_bars(groups: Dict[str, Dict[str, float]], panels: Sequence[tuple], path: PathLike, title: str = "") -> bool:
    """One bar panel per ``(metric, label)`` with a bar per group, saved atomically as PNG. Panels no group has are
    left out; returns False (and writes nothing) when matplotlib is not installed or nothing is left to plot."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = [(m, label) for m, label in panels if any(m in g for g in groups.values())]
    if not panels:
        return False
    names = list(groups)
    fig, axes = plt.subplots(1, len(panels), figsize=(2.2 + 0.55 * len(names) * len(panels), 3.4), squeeze=False)
    colors = plt.get_cmap("tab10").colors
    for ax, (metric, label) in zip(axes[0], panels):
        values = [groups[n].get(metric, float("nan")) for n in names]
        ax.bar(range(len(names)), values, color=[colors[i % len(colors)] for i in range(len(names))])
        ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
        ax.set_title(label, fontsize=9)
        for i, v in enumerate(values):
            if not math.isnan(v):
                ax.annotate(f"{v:.2f}", (i, v), ha="center", va="bottom", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return True


def plot_summary(summary: Dict[str, Dict[str, float]], path: PathLike) -> bool:
    """Bar charts of the per-system means (see ``plot_bars``)."""
    return plot_bars(summary, PLOTTED, path)


def write_text(path: PathLike, text: str) -> None:
    with atomic_path(Path(path)) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def score_items(items: Sequence[Item], scorer: Scorer = Scorer()) -> dict:
    """Score every item; returns ``{"summary": per-system means, "items": per-item rows, "models": what scored}``
    (what scores.json holds)."""
    from tqdm import tqdm

    scores = [scorer.score(item) for item in tqdm(items, desc="evaluate", unit="item", delay=1.0)]
    rows = [{"audio": item.audio, "system": item.system, **s} for item, s in zip(items, scores)]
    return {"summary": summarize(items, scores), "items": rows, "models": scorer.describe()}


def pool_draws(results: dict, draws: Dict[str, Sequence[str]]) -> None:
    """For each ``name: systems`` of ``draws`` (the rows of one model decoded several times, e.g. with other seeds),
    add a summary row ``name``, the mean of their figures (each row over the same targets), and
    ``results["spread"][name]``, the sample standard deviation of each figure between the rows: how far one draw's
    figure moves by chance."""
    summary = results["summary"]
    for name, systems in draws.items():
        rows = [summary[s] for s in systems]
        pooled: Dict[str, float] = {"items": float(sum(r["items"] for r in rows))}
        spread: Dict[str, float] = {}
        for metric in METRICS:
            values = [r[metric] for r in rows if metric in r]
            if len(values) == len(rows):
                pooled[metric] = float(np.mean(values))
                spread[metric] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        summary[name] = pooled
        results.setdefault("spread", {})[name] = spread


def score_and_write(items: Sequence[Item], out_dir: PathLike, scorer: Scorer = Scorer(),
                    draws: Optional[Dict[str, Sequence[str]]] = None) -> str:
    """Score the items; write ``manifest.jsonl``, ``scores.json``, ``table.md`` and ``scores.png`` under ``out_dir``;
    return the table. ``draws``: rows to pool (``pool_draws``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "manifest.jsonl", "".join(json.dumps(vars(item)) + "\n" for item in items))
    results = score_items(items, scorer)
    if draws:
        pool_draws(results, draws)
    plot_summary(results["summary"], out_dir / "scores.png")
    write_text(out_dir / "scores.json", json.dumps(results, indent=1) + "\n")
    table = markdown_table(results["summary"])
    write_text(out_dir / "table.md", table)
    return table


def codebook_entropy(code_arrays: Sequence[np.ndarray], codebook_size: int, codebook: int = 0) -> Dict[str, float]:
    """Entropy (bits) and perplexity of one codebook's tokens over ``[T, K]`` code arrays, plus the share of entries
    used. A first codebook that carries less information has lower entropy (the paper's argument for MCRVQ)."""
    counts = np.zeros(codebook_size, dtype=np.int64)
    for codes in code_arrays:
        counts += np.bincount(np.asarray(codes)[:, codebook].astype(np.int64), minlength=codebook_size)
    total = counts.sum()
    if total == 0:
        raise ValueError("no codes to measure")
    p = counts[counts > 0] / total
    entropy = float(-(p * np.log2(p)).sum())
    return {"entropy_bits": entropy, "perplexity": float(2 ** entropy), "used": float((counts > 0).mean()),
            "tokens": float(total)}
