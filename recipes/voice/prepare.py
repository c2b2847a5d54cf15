"""One voice of a prepared corpus, for the single-voice proof: its training cuts, and held-out sentences as clips.

    python recipes/voice/prepare.py --cuts data/mini/cuts_train.phon.jsonl.gz --speaker cmu-arctic-bdl \\
        --held-out 30 --codec codec/assets/languagecodec-mini --out-dir data/voice_bdl

Takes the cuts of one voice (``--speaker`` may be given several times, for one person under several ids) from a
phonemized or tokenized manifest and holds out ``--held-out`` of its sentences, drawn with ``--seed``. With
``--codec`` the voice's cuts are tokenized with that codec (resumable, as the corpus pipeline does), else their codes
are kept. Writes to ``--out-dir``:
- ``cuts_train.jsonl.gz``: the voice's other cuts, none of which says a held-out sentence (compared without case and
  punctuation); train a token model on them as on any corpus (``symbols.json``, the corpus's table, is beside it);
- ``cuts_valid.jsonl.gz``: the held-out cuts (validation losses on sentences never trained on);
- ``clips/``: the held-out utterances as WAV with a ``manifest.tsv`` in the ``../shared/speech`` layout, and a
  ``--prompt-seconds`` crop of a training utterance as every target's acoustic prompt, so that
  ``recipes/eval/zero_shot.py --clips <out-dir>/clips`` scores the model on sentences that voice never said in
  training, beside the recordings and their codec resynthesis;
- ``summary.json``: counts and minutes.
Every file is written whole or not at all.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import shutil
import sys
from pathlib import Path
from typing import Dict, List, Sequence

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from lhotse import CutSet, load_manifest_lazy  # noqa: E402

from toolkit.audio import save_audio  # noqa: E402
from toolkit.errors import InputError  # noqa: E402
from toolkit.files import atomic_path  # noqa: E402
from toolkit.cuts import beside  # noqa: E402
from toolkit.runs import run_cli  # noqa: E402
from tts.data.pipeline import Pipeline, PipelineConfig, codec_loader  # noqa: E402

SPEAKER_ID = "voice"  # every clip's speaker in clips/manifest.tsv: one voice, so every target's prompt is the crop


def sentence_key(text: str) -> str:
    """The words of a sentence without case or punctuation: how two cuts are found to say the same sentence."""
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def split_voice(cuts: Sequence, held_out: int, seed: int) -> Dict[str, List]:
    """``train`` and ``held_out`` cuts: ``held_out`` distinct sentences drawn with ``seed``, with every cut that says
    one of them left out of training."""
    by_sentence: Dict[str, List] = {}
    for cut in cuts:
        by_sentence.setdefault(sentence_key(cut.supervisions[0].text), []).append(cut)
    sentences = sorted(key for key in by_sentence if key)
    if held_out >= len(sentences):
        raise InputError(f"the voice says {len(sentences)} distinct sentences; --held-out {held_out} leaves none to "
                         f"train on")
    chosen = set(random.Random(seed).sample(sentences, held_out))
    train = [c for key, group in by_sentence.items() if key not in chosen for c in group]
    held = [by_sentence[key][0] for key in sorted(chosen)]
    return {"train": sorted(train, key=lambda c: c.id), "held_out": sorted(held, key=lambda c: c.id)}


def write_clips(held_out: Sequence, prompt_cut, prompt_seconds: float, folder: Path) -> int:
    """The held-out cuts as ``full_utterance`` clips and a crop of ``prompt_cut`` as ``prompt_crop_3s``, with a
    ``manifest.tsv`` (``file``, ``speaker_id``, ``role``, ``transcript``, ``duration_s``); the sample rate is the
    cuts'. Returns the number of clips."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for cut in held_out:
        name = f"{cut.id}.wav"
        save_audio(folder / name, cut.load_audio(), cut.sampling_rate)
        rows.append({"file": name, "speaker_id": SPEAKER_ID, "role": "full_utterance",
                     "transcript": cut.supervisions[0].text, "duration_s": f"{cut.duration:.3f}"})
    name = f"{prompt_cut.id}-crop.wav"
    crop = prompt_cut.truncate(duration=prompt_seconds)
    save_audio(folder / name, crop.load_audio(), crop.sampling_rate)
    rows.append({"file": name, "speaker_id": SPEAKER_ID, "role": "prompt_crop_3s", "transcript": "unknown",
                 "duration_s": f"{crop.duration:.3f}"})
    with atomic_path(folder / "manifest.tsv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t", quoting=csv.QUOTE_NONE,
                                escapechar="\\", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cuts", type=Path, required=True,
                        help="a phonemized cut manifest (with --codec) or a tokenized one")
    parser.add_argument("--speaker", action="append", required=True, help="the voice's speaker id (repeatable)")
    parser.add_argument("--held-out", type=int, default=30, help="sentences held out (default 30)")
    parser.add_argument("--prompt-seconds", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--codec", type=Path, help="tokenize the voice's cuts with this codec (release or official)")
    parser.add_argument("--symbols", type=Path, help="default: symbols.json beside --cuts (or up to two folders up)")
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args()
    if not args.cuts.is_file():
        parser.error(f"no cut manifest at {args.cuts}")
    if args.held_out < 1 or args.prompt_seconds <= 0:
        parser.error("--held-out must be at least 1 and --prompt-seconds positive")
    speakers = set(args.speaker)
    cuts = [c for c in load_manifest_lazy(args.cuts) if c.supervisions and c.supervisions[0].speaker in speakers]
    if not cuts:
        parser.error(f"no cut of {', '.join(sorted(speakers))} in {args.cuts}")
    if args.codec is None and not all(c.has_custom("codes") for c in cuts):
        parser.error(f"the cuts in {args.cuts} have no codes: give --codec to tokenize them")
    parts = split_voice(cuts, args.held_out, args.seed)
    long_enough = [c for c in parts["train"] if c.duration >= args.prompt_seconds]
    if not long_enough:
        parser.error(f"no training cut of the voice is {args.prompt_seconds} s long, for the prompt")
    prompt = min(long_enough, key=lambda c: (abs(c.duration - 5.0), c.id))  # a whole sentence, not too long
    symbols = args.symbols or beside(args.cuts, "symbols.json")
    if not symbols.is_file():
        parser.error(f"no symbol table at {symbols} (--symbols)")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out_dir / "symbols.json") as tmp:
        tmp.write_bytes(symbols.read_bytes())
    # The tokenization resumes from its chunk markers only for the same split and codec: another one starts over.
    split = {"train": [c.id for c in parts["train"]], "valid": [c.id for c in parts["held_out"]],
             "codec": str(args.codec.resolve()) if args.codec else None}
    if (args.out_dir / "split.json").is_file() and json.loads((args.out_dir / "split.json").read_text()) != split:
        for stale in (args.out_dir / ".done", args.out_dir / "codes"):
            shutil.rmtree(stale, ignore_errors=True)
    with atomic_path(args.out_dir / "split.json") as tmp:
        tmp.write_text(json.dumps(split) + "\n")
    pipeline = Pipeline(PipelineConfig(corpus_dir=args.out_dir, work_dir=args.out_dir, parts=("train", "valid")))
    for name, part in (("train", parts["train"]), ("valid", parts["held_out"])):
        path = pipeline.cuts_path(name, "phon") if args.codec else pipeline.tokenized_path(name)
        with atomic_path(path) as tmp:
            CutSet.from_cuts(part).to_file(tmp)
    if args.codec:
        pipeline.tokenize(codec_loader(args.codec))
    shutil.rmtree(args.out_dir / "clips", ignore_errors=True)  # the clips of an earlier split
    clips = write_clips(parts["held_out"], prompt, args.prompt_seconds, args.out_dir / "clips")
    summary = {"speakers": sorted(speakers), "train_cuts": len(parts["train"]),
               "train_minutes": round(sum(c.duration for c in parts["train"]) / 60, 2),
               "held_out": len(parts["held_out"]),
               "held_out_minutes": round(sum(c.duration for c in parts["held_out"]) / 60, 2),
               "prompt": prompt.id, "clips": clips}
    with atomic_path(args.out_dir / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    run_cli(main)
