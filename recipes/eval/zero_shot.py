"""The zero-shot protocol on a folder of real clips with a manifest (``../shared/speech`` layout).

For every speaker with two or more clips, each full utterance with a transcript is a target, and the prompt is 3 s of
speech from another clip of the same speaker (a prompt crop when there is one). Three systems are scored:
- ground truth: the target recording itself;
- codec resynthesis: the target through the model's codec (PESQ, STOI and V/UV F1 against it);
- the model: the target text spoken in the prompt's voice.
WER uses the target transcript, and speaker similarity uses the prompt.

    python recipes/eval/zero_shot.py --checkpoint runs/valle_mini/release_fp16 --clips ../shared/speech \\
        --out-dir runs/eval_valle_mini --seed 0

The prompt's transcript is not known for crops, so it is transcribed offline (pocketsphinx), as `tts synthesize`
does when `--prompt-text` is missing. Writes ``<out-dir>/audio/``, ``manifest.jsonl``, ``scores.json`` and
``table.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Dict, List

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from codec.audio import load_audio, save_audio  # noqa: E402
from tts import evaluation  # noqa: E402
from tts.models.sampling import SamplingConfig  # noqa: E402
from tts.synthesizer import Synthesizer  # noqa: E402


def read_clips(folder: Path) -> List[Dict[str, str]]:
    with open(folder / "manifest.tsv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [row for row in rows if (folder / row["file"]).is_file()]


def pairs(rows: List[Dict[str, str]]) -> List[Dict[str, str]]:
    """(target, prompt) per full utterance with a transcript, the prompt from the same speaker's other clips."""
    by_speaker = defaultdict(list)
    for row in rows:
        by_speaker[row["speaker_id"]].append(row)
    out = []
    for clips in by_speaker.values():
        for target in clips:
            if target["role"] != "full_utterance" or target["transcript"] == "unknown":
                continue
            others = [c for c in clips if c is not target]
            if not others:
                continue
            prompt = next((c for c in others if c["role"] == "prompt_crop_3s"), others[0])
            out.append({"target": target["file"], "text": target["transcript"], "prompt": prompt["file"]})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="a release directory (default: the bundled model)")
    parser.add_argument("--model", default="valle")
    parser.add_argument("--clips", type=Path, required=True, help="folder with manifest.tsv and the clips")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--limit", type=int, help="evaluate only the first N targets")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-dnsmos", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    synth = Synthesizer.from_pretrained(args.checkpoint, args.model)
    jobs = pairs(read_clips(args.clips))[: args.limit]
    if not jobs:
        parser.error(f"no speaker in {args.clips} has a transcribed utterance and a second clip")
    audio_dir = args.out_dir / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    items: List[evaluation.Item] = []
    from tqdm import tqdm

    for i, job in enumerate(tqdm(jobs, desc="zero-shot", unit="target")):
        target, prompt = args.clips / job["target"], args.clips / job["prompt"]
        stem = Path(job["target"]).stem
        wav = load_audio(target, synth.sample_rate)
        resynthesis = synth.codec.decode(synth.codec.encode(wav[None, None]))[0, 0, : wav.numel()]
        save_audio(audio_dir / f"{stem}.codec.wav", resynthesis, synth.sample_rate)
        prompt_text = synth.transcribe_prompt(prompt)
        generated = synth.synthesize(prompt, job["text"], prompt_text=prompt_text, sampling=SamplingConfig(),
                                     seed=args.seed + i)
        save_audio(audio_dir / f"{stem}.{args.model}.wav", generated, synth.sample_rate)
        items += [
            evaluation.Item(audio=str(target), text=job["text"], speaker_reference=str(prompt), system="ground truth"),
            evaluation.Item(audio=str(audio_dir / f"{stem}.codec.wav"), text=job["text"], speaker_reference=str(prompt),
                            reference=str(target), system="codec resynthesis"),
            evaluation.Item(audio=str(audio_dir / f"{stem}.{args.model}.wav"), text=job["text"],
                            speaker_reference=str(prompt), system=args.model, extra={"prompt_text": prompt_text}),
        ]
    evaluation.write_text(args.out_dir / "manifest.jsonl", "".join(json.dumps(vars(item)) + "\n" for item in items))
    scores = [evaluation.score_item(item, dnsmos_on=not args.no_dnsmos)
              for item in tqdm(items, desc="evaluate", unit="item")]
    summary = evaluation.summarize(items, scores)
    rows = [{"audio": item.audio, "system": item.system, **s} for item, s in zip(items, scores)]
    evaluation.write_text(args.out_dir / "scores.json", json.dumps({"summary": summary, "items": rows}, indent=1))
    table = evaluation.markdown_table(summary)
    evaluation.write_text(args.out_dir / "table.md", table)
    print(f"{len(jobs)} targets from {args.clips}\n{table}", end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
