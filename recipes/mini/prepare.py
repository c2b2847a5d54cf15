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

from toolkit.runs import run_cli
from tts.data.corpus import MINI_SIZES, build_mini_corpus
from tts.data.pipeline import PipelineConfig, run

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, help="<speaker>/<utt>.{wav,flac} + <utt>.txt")
    parser.add_argument("--sentences", type=Path, help="sentence list for synthetic espeak-ng speakers")
    parser.add_argument("--size", choices=sorted(MINI_SIZES), default="small")
    parser.add_argument("--work-dir", type=Path, default=Path("data/mini"))
    parser.add_argument("--codec", type=Path, help="codec release dir or official checkpoint")
    parser.add_argument("--frontend", default="espeak")
    parser.add_argument("--shar", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    corpus = args.work_dir / "corpus"
    for name, part in build_mini_corpus(args.folder, args.sentences, corpus, args.size).items():
        print(f"{name}: {part['summary']}")
    config = PipelineConfig(corpus_dir=corpus, work_dir=args.work_dir, parts=("train", "test"),
                            frontend=args.frontend)
    print(json.dumps(run(config, args.codec, shar=args.shar), indent=1))


if __name__ == "__main__":
    run_cli(main)
