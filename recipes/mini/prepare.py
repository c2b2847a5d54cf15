"""A mini corpus that runs everything on a CPU, in the LibriTTS layout, then the LibriTTS stages unchanged.

    python recipes/mini/prepare.py --folder ../shared/corpus --sentences ../shared/text/all_sentences.tsv \
        --size small --codec path/to/codec_release --work-dir data/mini

Sizes: smoke (seconds; tests), small (~15 min of speech), full (every folder utterance plus ~2 h of espeak voices).
The "train" part takes real speech from --folder and synthetic espeak-ng speakers; "test" has other espeak speakers.
"""

import argparse
import json
import logging
from pathlib import Path

from codec.runs import run_cli
from tts.data.corpus import from_folder, read_sentences, synthesize_espeak
from tts.data.pipeline import PipelineConfig, run

SIZES = {  # folder utterances (max, per speaker), espeak train speakers x utterances, espeak test speakers x utterances
    "smoke": ((12, 3), (2, 3), (2, 2)),
    "small": ((300, 10), (20, 15), (6, 5)),
    "full": ((None, None), (60, 120), (10, 10)),
}


def build(folder: Path, sentences: Path, root: Path, size: str, seed: int = 0) -> dict:
    """The corpus under ``root`` (skipped when ``root/.built`` exists); returns what was written and skipped."""
    marker = root / ".built"
    if marker.exists():
        return json.loads(marker.read_text())
    (max_utts, per_spk), (train_spk, train_utts), (test_spk, test_utts) = SIZES[size]
    report = {}
    texts = read_sentences(sentences) if sentences else []
    if folder:
        r = from_folder(folder, root, "train", max_utterances=max_utts, max_per_speaker=per_spk)
        report["folder"] = {"summary": r.summary(), "skipped": r.skipped}
    if texts:
        half = len(texts) // 2  # test speakers read sentences the train speakers never read
        r = synthesize_espeak(texts[:half], root, "train", train_spk, train_utts, seed=seed)
        report["espeak_train"] = {"summary": r.summary(), "skipped": r.skipped}
        r = synthesize_espeak(texts[half:], root, "test", test_spk, test_utts, seed=seed + 1000 + train_spk)
        report["espeak_test"] = {"summary": r.summary(), "skipped": r.skipped}
    root.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(report, indent=1))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, help="<speaker>/<utt>.{wav,flac} + <utt>.txt")
    parser.add_argument("--sentences", type=Path, help="sentence list for synthetic espeak-ng speakers")
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--work-dir", type=Path, default=Path("data/mini"))
    parser.add_argument("--codec", type=Path, help="codec release dir or official checkpoint")
    parser.add_argument("--frontend", default="espeak")
    parser.add_argument("--shar", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    corpus = args.work_dir / "corpus"
    for name, part in build(args.folder, args.sentences, corpus, args.size).items():
        print(f"{name}: {part['summary']}")
    config = PipelineConfig(corpus_dir=corpus, work_dir=args.work_dir, parts=("train", "test"),
                            frontend=args.frontend)
    print(json.dumps(run(config, args.codec, shar=args.shar), indent=1))


if __name__ == "__main__":
    run_cli(main)
