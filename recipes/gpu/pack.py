"""Write a training pack: a prepared corpus as one folder of at most --max-mb MB that trains without Lhotse, audio
libraries or the text frontend (toolkit/pack.py has the layout), for a GPU box with only the sprint's packages.

    python recipes/gpu/pack.py --corpus data/mini --codec bundled --out packs/mini
    python recipes/gpu/pack.py --corpus data/mini --codec bundled --audio-mb 18 --no-tokens --out packs/mini-audio

--corpus is a folder prepared by recipes/mini or recipes/libritts: cuts_train.jsonl.gz and cuts_test.jsonl.gz
(tokenized with --codec), symbols.json, and cuts_*.raw.jsonl.gz for the audio. The pack takes a seeded random subset
of the training cuts that fits the budget, and at most --max-valid validation cuts.
"""

import argparse
import json
from pathlib import Path

from toolkit.runs import run_cli


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True, help="a prepared corpus folder")
    parser.add_argument("--codec", default="bundled", help="the codec release the cuts were tokenized with, or bundled")
    parser.add_argument("--out", type=Path, required=True, help="the pack folder to write (must not exist)")
    parser.add_argument("--max-mb", type=float, default=40.0,
                        help="budget of the whole pack in MB of 1,000,000 bytes (default 40)")
    parser.add_argument("--audio-mb", type=float, default=0.0,
                        help="MB of 24 kHz audio for codec training (default 0: none; with --no-tokens, the rest)")
    parser.add_argument("--no-tokens", action="store_true", help="audio only (a codec-training pack)")
    parser.add_argument("--clip-seconds", type=float, default=5.0, help="longest audio clip per cut (default 5)")
    parser.add_argument("--max-valid", type=int, default=64, help="validation cuts kept (default 64)")
    parser.add_argument("--max-valid-clips", type=int, default=8, help="validation audio clips kept (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from codec import BUNDLED_DIR
    from toolkit.pack import PackError
    from tts.data.pack import write_pack

    for name in ("max_mb", "clip_seconds"):
        if not getattr(args, name) > 0:
            raise PackError(f"--{name.replace('_', '-')} must be positive")
    if args.audio_mb < 0 or args.max_valid < 1 or args.max_valid_clips < 1:
        raise PackError("--audio-mb must be >= 0, --max-valid and --max-valid-clips >= 1")
    corpus = args.corpus
    tokens = {} if args.no_tokens else {"train": corpus / "cuts_train.jsonl.gz", "valid": corpus / "cuts_test.jsonl.gz"}
    audio = ({"train": corpus / "cuts_train.raw.jsonl.gz", "valid": corpus / "cuts_test.raw.jsonl.gz"}
             if args.audio_mb > 0 or args.no_tokens else {})
    for path in [*tokens.values(), *audio.values()]:
        if not path.is_file():
            raise PackError(f"{path} does not exist: prepare (and tokenize) the corpus first")
    codec = BUNDLED_DIR if args.codec == "bundled" else Path(args.codec)
    info = write_pack(args.out, codec, corpus / "symbols.json", tokens, audio, max_mb=args.max_mb,
                      audio_mb=args.audio_mb, clip_seconds=args.clip_seconds, max_valid=args.max_valid,
                      max_valid_clips=args.max_valid_clips,
                      seed=args.seed, source=str(corpus.resolve()),
                      codec_reference="bundled" if args.codec == "bundled" else "")
    print(json.dumps({k: info[k] for k in ("tokens", "audio", "mb") if k in info}, indent=1))


if __name__ == "__main__":
    run_cli(main)
