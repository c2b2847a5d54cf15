"""Repeat the cuts of some speakers in a training manifest, so that they weigh more in every epoch.

    python recipes/mini/oversample.py --cuts data/mini/cuts_train.dur.jsonl.gz --times 4 --except-speakers 'espeak*' \
        --out data/mini/cuts_train.dur.real4.jsonl.gz

The mini corpus is 11.1 h of synthetic espeak-ng voices and 2.1 h of real speech, and its models are judged on real
voices; this writes each cut whose speaker does not match ``--except-speakers`` (shell-style patterns, repeatable)
``--times`` times. The first copy keeps its id and the others get ids in the style of Lhotse's ``CutSet.repeat``
(``<id>_repeat<k>``); all share the stored codes. The manifest is written shuffled with ``--seed`` so that no batch is
made of one utterance's copies; it is held in memory to be shuffled (a few kilobytes a cut). The prompt of a training
item is taken from its own utterance (``train.other_utterance_prob`` 0), so a copy adds no prompt it could copy from.

Prints a JSON summary (cuts and hours, before and after); the output is written whole or not at all.
"""

import argparse
import json
import random
from pathlib import Path

from lhotse import CutSet, load_manifest_lazy

from toolkit.cuts import speaker_matches
from toolkit.files import atomic_path
from toolkit.runs import run_cli


def oversample(cuts, times: int, except_speakers=(), seed: int = 0) -> CutSet:
    """``cuts`` with each cut whose first supervision's speaker matches none of ``except_speakers`` ``times`` times
    (the first copy keeps its id), shuffled with ``seed``."""
    if times < 1:
        raise ValueError(f"--times must be at least 1, got {times}")
    kept, repeated = [], []
    for cut in cuts:
        if speaker_matches(cut, except_speakers):
            kept.append(cut)
        else:
            repeated.append(cut)
    # Not CutSet.repeat: it repeats every cut and renames the first copy too, while only some speakers are repeated
    # here and the original ids stay (so that labels matched by id, e.g. recipes/aligner/label.py, still apply).
    copies = [cut if k == 0 else cut.with_id(f"{cut.id}_repeat{k}") for cut in repeated for k in range(times)]
    out = kept + copies
    random.Random(seed).shuffle(out)
    return CutSet.from_cuts(out)


def summary(cuts) -> dict:
    return {"cuts": len(cuts), "hours": round(sum(c.duration for c in cuts) / 3600, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cuts", type=Path, required=True, help="a tokenized training manifest")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--times", type=int, required=True, help="copies of each cut to oversample (>= 1)")
    parser.add_argument("--except-speakers", action="append", default=[], metavar="PATTERN",
                        help="speakers kept once (shell-style pattern, e.g. 'espeak*'; repeatable)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not args.cuts.is_file():
        raise SystemExit(f"error: no such manifest: {args.cuts}")
    if args.out.resolve() == args.cuts.resolve():
        raise SystemExit("error: --out must differ from --cuts")
    source = CutSet.from_cuts(load_manifest_lazy(args.cuts))
    try:
        result = oversample(source, args.times, args.except_speakers, args.seed)
    except ValueError as err:
        raise SystemExit(f"error: {err}")
    with atomic_path(args.out) as tmp:  # keeps the ".gz" suffix, so Lhotse compresses as the final file
        result.to_file(str(tmp))
    print(json.dumps({"in": summary(source), "out": summary(result)}))


if __name__ == "__main__":
    run_cli(main)
