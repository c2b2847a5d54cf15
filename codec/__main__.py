"""Command line: ``python -m codec encode IN.wav OUT.npy`` and ``python -m codec decode IN.npy OUT.wav``.

Exit status, as for ``tts`` and the recipes: 0 done; 1 input it cannot use (audio, codes, checkpoint, output path),
2 a bad command line, 130 interrupted. Errors are one line on stderr, and no output file is left behind.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

from toolkit.audio import load_audio, save_audio
from toolkit.files import atomic_path

from .errors import CodecError
from .model import load_codec


def _read_codes(path: Path) -> torch.Tensor:
    if not path.is_file():
        raise CodecError(f"codes file {path} does not exist")
    try:
        codes = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise CodecError(f"cannot read codes {path}: {err}") from None
    if not np.issubdtype(codes.dtype, np.integer):
        raise CodecError(f"codes in {path} are {codes.dtype}, expected integers")
    return torch.from_numpy(codes.astype(np.int64))


def _check_output(args: argparse.Namespace) -> None:
    out = Path(args.output)
    if out.exists() and out.resolve() == Path(args.input).resolve():
        raise CodecError(f"output {out} is the input; choose another path")
    if out.is_dir():
        raise CodecError(f"cannot write {out}: it is a folder")


def encode(args: argparse.Namespace) -> None:
    _check_output(args)
    codec = load_codec(args.checkpoint, args.official_config)
    wav = load_audio(args.input, codec.sample_rate)
    codes = codec.encode(wav[None], args.num_quantizers)[0].numpy()
    dtype = np.int16 if codec.codebook_size <= np.iinfo(np.int16).max else np.int32
    out = Path(args.output)
    if out.suffix != ".npy":
        raise CodecError(f"codes are written as .npy, got {out.name}")
    if not out.parent.is_dir():
        raise CodecError(f"cannot write {out}: directory {out.parent} does not exist")
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, codes.astype(dtype))
    print(f"{args.input} -> {out}: {codes.shape[0]} codebooks x {codes.shape[1]} frames "
          f"({codes.shape[1] / codec.frame_rate:.2f} s at {codec.frame_rate} Hz)", file=sys.stderr)


def decode(args: argparse.Namespace) -> None:
    _check_output(args)
    codec = load_codec(args.checkpoint, args.official_config)
    codes = _read_codes(Path(args.input))
    wav = codec.decode(codes, bandwidth_id=args.bandwidth_id)
    if wav.shape[0] != 1:
        raise CodecError(f"codes hold a batch of {wav.shape[0]}; decode one utterance [K, T] per file")
    save_audio(args.output, wav[0, 0], codec.sample_rate)
    print(f"{args.input} -> {args.output}: {wav.shape[-1] / codec.sample_rate:.2f} s at {codec.sample_rate} Hz",
          file=sys.stderr)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m codec", description="Language-Codec: audio <-> codes.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn, inp, out in (("encode", encode, "audio file (any rate and channel count)", "codes .npy [K, T]"),
                               ("decode", decode, "codes .npy [K, T]", "audio file (.wav, .flac)")):
        p = sub.add_parser(name, help=f"{inp} -> {out}")
        p.add_argument("input", help=inp)
        p.add_argument("output", help=out)
        p.add_argument("--checkpoint", help="release directory or official checkpoint file (default: bundled codec)")
        p.add_argument("--official-config", help="official config yaml for an official checkpoint")
        p.set_defaults(fn=fn)
        if name == "encode":
            p.add_argument("--num-quantizers", type=int, help="codebooks to keep (default: all)")
        else:
            p.add_argument("--bandwidth-id", type=int, default=0, help="decoder AdaLayerNorm row (default 0)")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except (CodecError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
