"""The ``tts`` command line: ``tts synthesize`` and ``tts evaluate``.

Errors the user can fix (bad prompt, text, model or output path) end with one line on stderr and exit status 1; no
output file is left behind, because audio is written atomically and only after synthesis succeeded.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import List, Optional

from . import __version__

EXIT_ERROR = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tts", description="Zero-shot speech synthesis on Language-Codec.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    syn = commands.add_parser("synthesize", help="speak text in the voice of a short prompt",
                              description="Speak text in the voice of a ~3 s prompt (VALL-E or MobileSpeech). Writes "
                                          "24 kHz audio.")
    syn.add_argument("--prompt", type=Path, required=True, help="voice prompt (any format, rate and channel count)")
    syn.add_argument("--prompt-text", help="transcript of the part of the prompt that is used")
    syn.add_argument("--prompt-seconds", type=float, default=3.0, help="seconds of the prompt to use (default 3)")
    text = syn.add_mutually_exclusive_group(required=True)
    text.add_argument("--text", help="the text to speak (long text is split into sentences)")
    text.add_argument("--text-file", type=Path, help="one utterance per line, synthesized in batches")
    syn.add_argument("--model", help="model type, valle or mobilespeech (default: the checkpoint's; bundled: valle)")
    syn.add_argument("--checkpoint", type=Path, help="a release directory (default: the bundled model)")
    syn.add_argument("--out", type=Path, help="output file for --text (default: from the text), folder for "
                                              "--text-file (default: tts_out)")
    syn.add_argument("--seed", type=int, help="make sampling reproducible")
    syn.add_argument("--greedy", action="store_true", help="argmax decoding instead of sampling")
    syn.add_argument("--temperature", type=float, default=1.0)
    syn.add_argument("--top-k", type=int, default=25)
    syn.add_argument("--top-p", type=float, default=0.8)
    syn.add_argument("--steps", type=int, default=16, help="MobileSpeech: decoding rounds of the first layer")
    syn.add_argument("--speed", type=float, default=1.0, help="MobileSpeech: speaking rate (durations divided by it)")
    syn.add_argument("--batch-size", type=int, default=8, help="sentences decoded together")
    syn.add_argument("--device", default="cpu")

    ev = commands.add_parser("evaluate", help="score speech: WER, speaker similarity, DNSMOS, PESQ/STOI/V-UV",
                             description="Score generated speech offline. Either one file (--audio with --text, "
                                         "--speaker-reference, --reference as available) or a JSON-lines manifest "
                                         "with the fields audio, text, speaker_reference, reference, system.")
    source = ev.add_mutually_exclusive_group(required=True)
    source.add_argument("--manifest", type=Path, help="JSON lines, one item per line (relative paths: from its folder)")
    source.add_argument("--audio", type=Path, help="one generated file")
    ev.add_argument("--text", help="what --audio should say (WER)")
    ev.add_argument("--speaker-reference", type=Path, help="audio of the intended voice (speaker similarity)")
    ev.add_argument("--reference", type=Path, help="the original, when --audio is its codec resynthesis")
    ev.add_argument("--no-dnsmos", action="store_true")
    ev.add_argument("--asr-model", type=Path,
                    help="local HuggingFace CTC model folder for WER, e.g. HuBERT-Large (default: pocketsphinx)")
    ev.add_argument("--speaker-model", type=Path,
                    help="local HuggingFace x-vector model folder for similarity, e.g. WavLM-TDNN "
                         "(default: resemblyzer)")
    ev.add_argument("--plot", type=Path, help="write bar charts of the summary as PNG")
    ev.add_argument("--out", type=Path, help="write per-item scores and the summary as JSON")
    ev.add_argument("--markdown", type=Path, help="write the summary table as Markdown")
    return parser


def default_name(text: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", text.lower())[:6]
    return ("_".join(words) or "speech") + ".wav"


def _outputs(args: argparse.Namespace, texts: List[str]) -> List[Path]:
    """Where each text's audio goes; checked before any synthesis so a bad path fails fast."""
    from tts.synthesizer import SynthesisError

    if args.text is not None:
        paths = [args.out or Path(default_name(texts[0]))]
        folder = paths[0].parent
    else:
        folder = args.out or Path("tts_out")
        if folder.suffix or folder.is_file():
            raise SynthesisError(f"--out must be a folder with --text-file, got {folder}")
        paths = [folder / f"{i + 1:04d}.wav" for i in range(len(texts))]
    if not (folder.is_dir() or (args.text_file is not None and folder.parent.is_dir())):
        raise SynthesisError(f"cannot write to {folder}: the folder does not exist")
    for path in paths:
        if path.suffix.lower() not in (".wav", ".flac"):
            raise SynthesisError(f"output {path} must end in .wav or .flac")
        if path.is_dir():
            raise SynthesisError(f"cannot write {path}: it is a folder")
    return paths


def synthesize(args: argparse.Namespace) -> int:
    from codec.audio import save_audio
    from tts.models.sampling import SamplingConfig
    from tts.synthesizer import Synthesizer, SynthesisError

    if args.text is not None:
        texts = [args.text]
    else:
        try:
            lines = args.text_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise SynthesisError(f"cannot read {args.text_file}: {err}") from None
        texts = [line.strip() for line in lines if line.strip()]
        if not texts:
            raise SynthesisError(f"{args.text_file} has no text")
    if not texts[0].strip():
        raise SynthesisError("the text is empty")
    outputs = _outputs(args, texts)
    synthesizer = Synthesizer.from_pretrained(args.checkpoint, args.model, args.device)
    sampling = SamplingConfig(greedy=args.greedy, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    prompt_text = args.prompt_text
    if not prompt_text and synthesizer.needs_prompt_text:
        prompt_text = synthesizer.transcribe_prompt(args.prompt, args.prompt_seconds)
        print(f"no --prompt-text: the prompt was transcribed offline (pocketsphinx, often wrong) as "
              f"{prompt_text!r}; pass --prompt-text for better results", file=sys.stderr)
    prompt = synthesizer.prepare_prompt(args.prompt, prompt_text, args.prompt_seconds)
    audio = synthesizer.synthesize(prompt, texts, sampling=sampling, seed=args.seed, batch_size=args.batch_size,
                                   progress=True, steps=args.steps, speed=args.speed)
    outputs[0].parent.mkdir(exist_ok=True)  # the --text-file folder, made once there is audio to put in it
    for path, wav in zip(outputs, audio):
        save_audio(path, wav, synthesizer.sample_rate)
        print(f"{path} ({wav.size / synthesizer.sample_rate:.2f} s)")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    import json

    from tts import evaluation
    from tts.synthesizer import SynthesisError

    for path in (args.out, args.markdown, args.plot):
        if path is not None and not path.parent.is_dir():
            raise SynthesisError(f"cannot write {path}: folder {path.parent} does not exist")
    if args.manifest is not None:
        try:
            items = evaluation.read_manifest(args.manifest)
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise SynthesisError(f"manifest: {err}") from None
    else:
        def text_or_none(path: Optional[Path]) -> Optional[str]:
            return None if path is None else str(path)

        items = [evaluation.Item(audio=str(args.audio), text=args.text, system=args.audio.stem,
                                 speaker_reference=text_or_none(args.speaker_reference),
                                 reference=text_or_none(args.reference))]
    try:
        scorer = evaluation.Scorer(args.asr_model, args.speaker_model, not args.no_dnsmos).check()
    except ValueError as err:
        raise SynthesisError(str(err)) from None
    results = evaluation.score_items(items, scorer)
    table = evaluation.markdown_table(results["summary"])
    print(table, end="")
    if args.out is not None:
        evaluation.write_text(args.out, json.dumps(results, indent=1) + "\n")
    if args.markdown is not None:
        evaluation.write_text(args.markdown, table)
    if args.plot is not None and not evaluation.plot_summary(results["summary"], args.plot):
        raise SynthesisError("--plot needs matplotlib (pip install -e \".[eval]\")")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    from codec.errors import CodecError
    from tts.synthesizer import SynthesisError

    try:
        return synthesize(args) if args.command == "synthesize" else evaluate(args)
    except (SynthesisError, CodecError) as err:
        print(f"tts: error: {err}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
