"""Measure the speaking rate of a token model that sets its own pace (MobileSpeech, VALL-E with durations as input)
against real speech, and the ``pace`` calibration that would make ``--speed 1.0`` match it.

Each target is a cut of a Lhotse manifest (e.g. the real speakers of the training manifest, so that no evaluation clip
is used); its text is synthesized in the voice of another cut of the same speaker, with the default decoding, and the
length of the speech is compared with the cut's. The ratio is that of the sums (seconds generated over seconds
spoken), so long utterances weigh as they sound.

    python recipes/eval/pace.py --checkpoint runs/valle_mini/release_fp16 \\
        --cuts data/mini/cuts_train.jsonl.gz --except-speakers 'espeak*' --limit 24 --seed 0
    python recipes/valle/export.py --run runs/valle_mini --pace 1.25 --out runs/valle_mini/release_paced

Prints one line per target and a summary with the pace to record (``export.py --pace``): the release's own pace times
the measured ratio. The prompt's transcript is transcribed offline (pocketsphinx) for models that read it, as
``recipes/eval/zero_shot.py`` does.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from toolkit.cuts import speaker_matches  # noqa: E402
from toolkit.runs import OneLineParser, run_cli  # noqa: E402
from tts.cli import add_decoding_options, sampling_config  # noqa: E402
from tts.synthesizer import Synthesizer  # noqa: E402


def whole_recordings(cuts, except_speakers: Sequence[str]):
    """(speaker, cut) of the cuts that are a whole single-file recording with a transcript, outside the speakers
    matching ``except_speakers`` (shell-style patterns; none: every speaker)."""
    out = []
    for cut in cuts:
        sup = cut.supervisions[0] if cut.supervisions else None
        rec = getattr(cut, "recording", None)
        if sup is None or not sup.text or rec is None or len(rec.sources) != 1 or rec.sources[0].type != "file":
            continue
        if cut.start > 0 or abs(cut.duration - rec.duration) > 0.01 or not Path(rec.sources[0].source).is_file():
            continue
        if speaker_matches(cut, except_speakers):
            continue
        out.append((sup.speaker or "", cut))
    return out


def pairs(cuts, except_speakers: Sequence[str], limit: int, seed: int):
    """Up to ``limit`` (target cut, prompt cut) of one speaker each, drawn with ``seed``, speakers in turn."""
    by_speaker = defaultdict(list)
    for speaker, cut in whole_recordings(cuts, except_speakers):
        by_speaker[speaker].append(cut)
    rng = random.Random(seed)
    pools = {s: rng.sample(c, len(c)) for s, c in sorted(by_speaker.items()) if len(c) >= 2}
    out = []
    while pools and len(out) < limit:
        for speaker in list(pools):
            pool = pools[speaker]
            if len(pool) < 2:
                del pools[speaker]
                continue
            out.append((pool.pop(), pool[-1]))  # the prompt stays in the pool, to prompt the next target too
            if len(out) == limit:
                break
    return out


def main() -> int:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="a release directory (default: the bundled model)")
    parser.add_argument("--model", help="valle or mobilespeech (default: the checkpoint's)")
    parser.add_argument("--cuts", type=Path, required=True, help="a Lhotse cut manifest with transcripts")
    parser.add_argument("--except-speakers", action="append", default=[], metavar="PATTERN",
                        help="leave out the speakers matching this shell-style pattern (e.g. 'espeak*'; repeatable)")
    parser.add_argument("--limit", type=int, default=24, help="targets to synthesize (default 24)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    add_decoding_options(parser.add_argument_group("decoding (as tts synthesize)"))
    args = parser.parse_args()
    if args.limit < 1:
        parser.error(f"--limit must be at least 1, got {args.limit}")
    torch.set_num_threads(args.threads)
    from lhotse import load_manifest_lazy

    if not args.cuts.is_file():
        parser.error(f"--cuts {args.cuts} does not exist")
    jobs = pairs(load_manifest_lazy(args.cuts), args.except_speakers, args.limit, args.seed)
    if not jobs:
        parser.error(f"no speaker in {args.cuts} has two whole recordings with transcripts")
    synth = Synthesizer.from_pretrained(args.checkpoint, args.model)
    if not synth.supports_speed:
        parser.error(f"this {synth.release.model_type} model does not set its own pace: there is nothing to calibrate")
    generated = spoken = 0.0
    ratios = []
    for i, (target, prompt) in enumerate(jobs):
        path = prompt.recording.sources[0].source
        prompt_text = synth.transcribe_prompt(path) if synth.needs_prompt_text else ""
        wav = synth.synthesize(path, target.supervisions[0].text, prompt_text=prompt_text,
                               sampling=sampling_config(args), seed=args.seed + i, steps=args.steps, speed=args.speed)
        seconds = len(wav) / synth.sample_rate
        generated, spoken = generated + seconds, spoken + target.duration
        ratios.append(seconds / target.duration)
        print(f"{target.id}\t{target.duration:.2f} s spoken\t{seconds:.2f} s generated\tratio {ratios[-1]:.3f}",
              flush=True)
    ratio = generated / spoken
    print(f"{len(jobs)} targets: {generated:.1f} s generated for {spoken:.1f} s spoken at speed {args.speed} and the "
          f"release's pace {synth.release.pace}: ratio {ratio:.3f} (median {statistics.median(ratios):.3f})")
    print(f"pace to record (export.py --pace): {synth.release.pace * args.speed * ratio:.3f}")
    return 0


if __name__ == "__main__":
    run_cli(main)
