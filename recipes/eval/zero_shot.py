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
does when `--prompt-text` is missing. Writes ``<out-dir>/audio/``, ``manifest.jsonl``, ``scores.json``, ``table.md``
and ``scores.png``.

`--draws N` decodes every target N times with other seeds: the table has a row per draw and, under the model's name,
their mean; scores.json's ``spread`` has the standard deviation between draws, the chance variation that a difference
between two models must exceed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from toolkit.runs import run_cli  # noqa: E402
from tts import evaluation  # noqa: E402
from recipes.eval.protocol import draw_systems, read_clips, zero_shot_items, zero_shot_pairs  # noqa: E402
from tts.cli import add_decoding_options, sampling_config  # noqa: E402
from tts.synthesizer import Synthesizer  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="a release directory (default: the bundled model)")
    parser.add_argument("--model", help="valle or mobilespeech (default: the checkpoint's)")
    parser.add_argument("--clips", type=Path, required=True, help="folder with manifest.tsv and the clips")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--limit", type=int, help="evaluate only the first N targets")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--draws", type=int, default=1, help="decode each target N times (draw d of target i with "
                        "seed --seed + d * targets + i) and report their mean and spread (default 1)")
    parser.add_argument("--no-dnsmos", action="store_true")
    parser.add_argument("--asr-model", type=Path,
                        help="local HuggingFace CTC model folder for WER (default pocketsphinx)")
    parser.add_argument("--speaker-model", type=Path,
                        help="local HuggingFace x-vector model folder for similarity (default resemblyzer)")
    parser.add_argument("--threads", type=int, default=2)
    add_decoding_options(parser.add_argument_group("decoding (as tts synthesize)"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not 1 <= args.draws <= 100:
        parser.error(f"--draws must be from 1 to 100, got {args.draws}")

    try:
        scorer = evaluation.Scorer(args.asr_model, args.speaker_model, not args.no_dnsmos).check()
    except ValueError as err:
        parser.error(str(err))
    synth = Synthesizer.from_pretrained(args.checkpoint, args.model)
    jobs = zero_shot_pairs(read_clips(args.clips))[: args.limit]
    if not jobs:
        parser.error(f"no speaker in {args.clips} has a transcribed utterance and a second clip")
    label = synth.release.model_type
    items = zero_shot_items(synth, args.clips, jobs, args.out_dir / "audio", label, args.seed, sampling_config(args),
                            args.steps, args.speed, args.draws)
    draws = {label: draw_systems(label, args.draws)} if args.draws > 1 else None
    table = evaluation.score_and_write(items, args.out_dir, scorer, draws)
    print(f"{len(jobs)} targets from {args.clips}\n{table}", end="")
    if draws:
        spread = json.loads((args.out_dir / "scores.json").read_text())["spread"][label]
        print(f"between the {args.draws} draws, standard deviation: "
              + ", ".join(f"{metric} {value:.3f}" for metric, value in spread.items()))
    return 0


if __name__ == "__main__":
    run_cli(main)
