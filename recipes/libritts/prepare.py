"""LibriTTS for the token models: download (online) -> manifests -> 24 kHz -> phonemes -> codec tokens (-> Shar).

    python recipes/libritts/prepare.py --corpus-dir data/LibriTTS --download \
        --parts train-clean-100 dev-clean test-clean --codec path/to/codec_release --work-dir data/libritts

Re-running skips finished stages; a killed tokenization resumes at its first unfinished chunk.
"""

import argparse
import json
import logging
from pathlib import Path

from toolkit.runs import run_cli
from tts.data.pipeline import PipelineConfig, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus-dir", type=Path, required=True, help="LibriTTS root (holds the part folders)")
    parser.add_argument("--work-dir", type=Path, default=Path("data/libritts"))
    parser.add_argument("--parts", nargs="+", default=["train-clean-100", "dev-clean", "test-clean"])
    parser.add_argument("--download", action="store_true", help="download the parts first (needs network)")
    parser.add_argument("--codec", type=Path, help="codec release dir or official checkpoint; omit to stop before "
                                                   "tokenization")
    parser.add_argument("--frontend", default="espeak", help="espeak (IPA) or arpabet")
    parser.add_argument("--symbols", type=Path, help="an existing model's symbols.json that the data must fit")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shar", action="store_true", help="also export Lhotse Shar shards")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    if args.download:
        from lhotse.recipes import download_libritts

        download_libritts(args.corpus_dir.parent, dataset_parts=args.parts)
    config = PipelineConfig(corpus_dir=args.corpus_dir, work_dir=args.work_dir, parts=tuple(args.parts),
                            frontend=args.frontend, symbols=args.symbols)
    print(json.dumps(run(config, args.codec, shar=args.shar, device=args.device), indent=1))


if __name__ == "__main__":
    run_cli(main)
