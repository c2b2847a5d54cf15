"""Writing a training pack (the format and its readers: ``toolkit.pack``) from a prepared corpus.

The writer runs where the corpus was prepared (Lhotse, the audio libraries); the pack it writes trains without them.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import random
import shutil
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from toolkit.pack import DATA_FILE, EXTRA_REQUIREMENTS, FORMAT, VERSION, PackError
from tts.data.dataset import cut_codes

MB = 1_000_000  # decimal, as the budget is stated: 40 MB is what `du -sh` shows as 39M (38.1 MiB)
# gzip with byte shuffling: lossless, readable by any h5py. Measured on the mini corpus: codes of a 1,024-entry
# codebook take about 10.3 bits each (int16 would be 16), 24 kHz speech about 0.85-0.95 of its int16 size.
COMPRESSION = {"compression": "gzip", "compression_opts": 6, "shuffle": True}
CODE_BITS_SLACK = 1.06
AUDIO_RATIO = 0.95


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def pick(costs: List[float], budget: float, seed: int) -> List[int]:
    """A seeded random subset of item indexes whose costs fit ``budget`` (every speaker in proportion, as the
    order is random), sorted."""
    order = list(range(len(costs)))
    random.Random(seed).shuffle(order)
    chosen, spent = [], 0.0
    for i in order:
        if spent + costs[i] <= budget:
            chosen.append(i)
            spent += costs[i]
    return sorted(chosen)


def write_pack(out: os.PathLike, codec: os.PathLike, symbols: os.PathLike,
               token_cuts: Optional[Dict[str, os.PathLike]] = None,
               audio_cuts: Optional[Dict[str, os.PathLike]] = None, max_mb: float = 40.0, audio_mb: float = 0.0,
               clip_seconds: float = 5.0, max_valid: int = 64, max_valid_clips: int = 8, seed: int = 0,
               source: str = "", codec_reference: str = "") -> dict:
    """Write a training pack to ``out`` (atomically: the complete folder appears, or nothing) and return its
    ``pack.json``.

    Args:
        codec: the codec release directory the cuts were tokenized with (copied whole).
        symbols: the corpus's ``symbols.json``.
        token_cuts: Lhotse manifests of tokenized cuts by split (``train``, ``valid``).
        audio_cuts: Lhotse manifests with recordings by split, for codec training. Their audio is resampled to the
            codec's rate; each cut gives one clip of at most ``clip_seconds`` (a seeded random crop).
        max_mb: the budget of the whole folder in MB. ``audio_mb`` of it goes to audio; what the codec, the
            symbols, the indexes and the validation splits leave goes to training codes.
        max_valid: tokenized cuts kept of each split other than ``train``; ``max_valid_clips``: audio clips (the
            codec trainer validates on 4 by default, and audio is dear in the budget).
        source: where the corpus came from, recorded in ``pack.json``.
        codec_reference: how releases trained on the pack name the codec (``bundled``; default: ``codec``'s
            absolute path).
    """
    import h5py
    from lhotse import CutSet

    out, codec = Path(out), Path(codec)
    token_cuts, audio_cuts = dict(token_cuts or {}), dict(audio_cuts or {})
    if out.exists():
        raise PackError(f"{out} exists: choose a new folder")
    if not (codec / "config.json").is_file():
        raise PackError(f"{codec} is not a codec release directory (no config.json)")
    if not token_cuts and not audio_cuts:
        raise PackError("a pack needs tokenized cuts, audio cuts or both")
    for path in [symbols, *token_cuts.values(), *audio_cuts.values()]:
        if not Path(path).is_file():
            raise PackError(f"{path} does not exist")
    config = json.loads((codec / "config.json").read_text())
    rate = int(config.get("sample_rate", 24000))
    quantizer = config.get("quantizer", {})
    frame_rate = rate / math.prod(config.get("encoder", {}).get("ratios", [320]))
    cost = {"tokens": quantizer.get("num_quantizers", 8) * math.log2(quantizer.get("codebook_size", 1024)) / 8
            * frame_rate * CODE_BITS_SLACK, "audio": 2 * rate * AUDIO_RATIO}  # bytes per second, about
    seconds = {kind: {split: [min(c.duration, clip_seconds) if kind == "audio" else c.duration
                              for c in CutSet.from_jsonl_lazy(path)] for split, path in splits.items()}
               for kind, splits in (("tokens", token_cuts), ("audio", audio_cuts))}
    if "train" in audio_cuts and "train" in token_cuts and not audio_mb > 0:
        raise PackError("a pack with tokens and audio needs an audio budget (audio_mb)")
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        shutil.copytree(codec, tmp / "codec")
        shutil.copy(symbols, tmp / "symbols.json")
        fixed = folder_bytes(tmp) + 16 * 1024  # pack.json and the indexes, about
        budget = max_mb * MB
        if fixed >= budget:
            raise PackError(f"the codec and symbols alone take {fixed / MB:.2f} MB, over the budget of {max_mb:g} MB")
        choice, held = {}, 0.0
        for kind, splits in seconds.items():
            for split, lengths in splits.items():
                if split != "train":
                    most = max_valid if kind == "tokens" else max_valid_clips
                    choice[kind, split] = pick([1.0] * len(lengths), float(most), seed)
                    held += sum(lengths[i] for i in choice[kind, split]) * cost[kind]
        audio_share = audio_mb * MB if "train" in token_cuts else budget - fixed - held
        shares = {"audio": audio_share, "tokens": budget - fixed - held - (audio_share if "train" in audio_cuts else 0)}
        # Costs are estimates (gzip's ratio shows once written): the data is written and measured, and written again
        # with the training shares scaled by what the measure says, until it fills 97-100 % of the budget (or the
        # corpus runs out); the largest that fitted is what stays.
        def attempt(scale: float):
            for kind, splits in seconds.items():
                if "train" in splits:  # beside tokens, audio keeps to the share it was given: tokens fill the rest
                    grow = min(scale, 1.0) if kind == "audio" and "train" in token_cuts else scale
                    choice[kind, "train"] = pick([x * cost[kind] for x in splits["train"]],
                                                 max(0.0, shares[kind] * grow), seed)
            info = write_data(tmp, h5py, CutSet, token_cuts, audio_cuts, choice, clip_seconds, seed, rate)
            return info, folder_bytes(tmp) + 4096

        scale, best = 1.0, None
        for _ in range(5):
            info, total = attempt(scale)
            if total <= budget and (best is None or scale > best):
                best = scale
            if 0.97 * budget <= total <= budget:
                break
            scale *= 0.99 * (budget - fixed) / max(1.0, total - fixed)
        if best is None:
            raise PackError(f"cannot fit the pack in {max_mb:g} MB")
        if total > budget or scale != best and total < 0.97 * budget:
            info, total = attempt(best)
        for kind, splits in (("tokens", token_cuts), ("audio", audio_cuts)):
            for split in splits:
                if not info[kind]["splits"][split]["items"]:
                    raise PackError(f"nothing of {splits[split]} fits in {max_mb:g} MB: raise the budget")
        info.update(format=FORMAT, version=VERSION, source=source, requires=list(EXTRA_REQUIREMENTS), seed=seed,
                    budget_mb=max_mb, codec={"reference": codec_reference or str(codec.resolve()),
                                             "sample_rate": rate, "frame_rate": frame_rate,
                                             "mb": round(folder_bytes(tmp / "codec") / MB, 2)})
        (tmp / "pack.json").write_text(json.dumps(info, indent=1) + "\n")
        info["mb"] = round(folder_bytes(tmp) / MB, 2)
        (tmp / "pack.json").write_text(json.dumps(info, indent=1) + "\n")
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info


def write_data(tmp: Path, h5py, CutSet, token_cuts: dict, audio_cuts: dict, choice: dict, clip_seconds: float,
               seed: int, rate: int) -> dict:
    """``data.h5`` and the indexes of the chosen cuts (``choice[kind, split]``: indexes into the manifest)."""
    info: dict = {"tokens": {"splits": {}}, "audio": {"splits": {}, "sample_rate": rate, "clip_seconds": clip_seconds}}
    with h5py.File(tmp / DATA_FILE, "w") as h5:
        for kind, manifests in (("tokens", token_cuts), ("audio", audio_cuts)):
            for split, path in manifests.items():
                chosen = set(choice[kind, split])
                rows, arrays, start = [], [], 0
                rng = np.random.default_rng(seed)
                for i, cut in enumerate(CutSet.from_jsonl_lazy(path)):
                    if i not in chosen:
                        continue
                    row, array = (token_row(cut, path) if kind == "tokens"
                                  else audio_row(cut, rate, clip_seconds, rng))
                    rows.append({**row, "start": start})
                    arrays.append(array)
                    start += array.shape[0]
                summary = {"items": len(rows), "speakers": len({r["speaker"] for r in rows})}
                if rows:
                    data = np.concatenate(arrays)
                    name = "codes" if kind == "tokens" else "samples"
                    chunk = (min(len(data), 8192),) + data.shape[1:] if kind == "tokens" else (min(len(data), 65536),)
                    h5.create_dataset(f"{kind}/{split}/{name}", data=data, chunks=chunk, **COMPRESSION)
                    seconds = sum(r["duration"] for r in rows) if kind == "tokens" else len(data) / rate
                    summary["hours"] = round(seconds / 3600, 3)
                    if kind == "tokens":
                        summary["with_durations"] = sum("durations" in r for r in rows)
                        summary["num_codebooks"] = int(data.shape[1])
                with gzip.open(tmp / f"{kind}_{split}.jsonl.gz", "wt") as f:
                    f.writelines(json.dumps(r) + "\n" for r in rows)
                info[kind]["splits"][split] = summary
    return {kind: value for kind, value in info.items() if value["splits"]}


def token_row(cut, path) -> tuple:
    sup = cut.supervisions[0]
    custom = sup.custom or {}
    if "phonemes" not in custom or cut.custom is None or "codes" not in cut.custom:
        raise PackError(f"{path}: cut {cut.id} has no phonemes or codes: pack a phonemized and tokenized corpus")
    codes = np.asarray(cut_codes(cut), dtype=np.int16)
    row = {"id": cut.id, "speaker": sup.speaker or "", "duration": cut.duration, "phonemes": custom["phonemes"],
           "frames": int(codes.shape[0])}
    for key in ("durations", "durations_exact"):
        if custom.get(key) is not None:
            row[key] = custom[key]
    return row, codes


def audio_row(cut, rate: int, clip_seconds: float, rng: np.random.Generator) -> tuple:
    if cut.sampling_rate != rate:
        cut = cut.resample(rate)
    if cut.duration > clip_seconds:
        cut = cut.truncate(offset=float(rng.uniform(0, cut.duration - clip_seconds)), duration=clip_seconds,
                           preserve_id=True)
    wav = cut.load_audio().mean(axis=0)
    pcm = np.clip(np.round(wav * 32768.0), -32768, 32767).astype(np.int16)
    speaker = cut.supervisions[0].speaker if cut.supervisions else ""
    return {"id": cut.id, "speaker": speaker or "", "samples": int(pcm.shape[0])}, pcm
