"""The ``tts`` command line: ``tts synthesize``, ``tts evaluate`` and ``tts serve``.

Exit status: 0 done; 1 input the command cannot use (prompt, text, model, output path, manifest); 2 a bad command
line (unknown option, a value of the wrong type or out of its range); 130 interrupted (Ctrl-C). Every error is one
line on stderr. No output file is left behind on any of them: audio is written atomically, after synthesis succeeded.
``tts serve`` runs until stopped: 0 after SIGTERM (once the requests in flight are answered), 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import List, Optional

from . import __version__

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class OneLineParser(argparse.ArgumentParser):
    """argparse with its usage errors as one line (``tts synthesize: error: ...``) and exit status 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def ranged(name: str):
    """An argparse type for the synthesis option ``name``: parsed, finite and within ``tts.synthesizer.LIMITS``."""
    integer = name in ("batch_size", "steps", "top_k", "seed")

    def parse(text: str):
        from tts.synthesizer import SynthesisError, check_option

        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if integer else 'a number'}, got {text!r}")
        try:
            check_option(name, value)
        except SynthesisError as err:
            raise argparse.ArgumentTypeError(str(err).replace(f"{name} ", "", 1)) from None
        return value

    parse.__name__ = name
    return parse


def bounded(kind, low, high=None):
    """An argparse type: ``kind`` (int or float) parsed from the text and within [low, high] (no upper bound when
    ``high`` is None). The comparison also refuses nan."""
    noun = "an integer" if kind is int else "a number"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if high is None and not value >= low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {text}")
        if high is not None and not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {text}")
        return value

    parse.__name__ = "integer" if kind is int else "number"
    return parse


positive_int = bounded(int, 1)
port_number = bounded(int, 0, 65535)
milliseconds = bounded(float, 0, 10_000)


def add_serve_parser(commands) -> None:
    serve = commands.add_parser("serve", help="an HTTP API (OpenAI-compatible) and a web page for synthesis",
                                description="Serve the model over HTTP: POST /v1/audio/speech, /v1/voices, /health, "
                                            "and a page at /. Needs the serve extra (pip install -e '.[serve]').")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; any other than "
                                                           "loopback needs --api-key)")
    serve.add_argument("--port", type=port_number, default=8000, help="port (default 8000; 0: any free one)")
    serve.add_argument("--model", help="model type, valle or mobilespeech (default: the checkpoint's; "
                                       "bundled: mobilespeech)")
    serve.add_argument("--checkpoint", type=Path, help="a release directory (default: the bundled model)")
    serve.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps")
    serve.add_argument("--api-key", default=os.environ.get("LCTTS_API_KEY"),
                       help="bearer key that /v1 requires (default: $LCTTS_API_KEY; none on loopback)")
    serve.add_argument("--voices-dir", type=Path, help="where uploaded voices are kept (default: "
                                                       "~/.local/share/languagecodec-tts/voices)")
    serve.add_argument("--max-batch", type=ranged("batch_size"), default=8,
                       help="sentences decoded together at most (default 8; 1 to 256)")
    serve.add_argument("--max-wait-ms", type=milliseconds, default=50.0,
                       help="how long a batch waits for more requests to join it while others are in "
                            "flight (default 50)")
    serve.add_argument("--queue-size", type=positive_int, default=64,
                       help="sentences waiting at most; more are answered 503 with Retry-After (default 64)")
    serve.add_argument("--max-chars", type=positive_int, default=None, help="longest input text (default 2000)")
    serve.add_argument("--max-upload-mb", type=positive_int, default=10, help="largest voice upload (default 10)")


def add_decoding_options(parser) -> None:
    """The decoding options of ``tts synthesize`` (``--greedy``, ``--temperature``, ``--top-k``, ``--top-p``,
    ``--guidance``, ``--steps``, ``--speed``), shared with the evaluation recipes; ``sampling_config`` turns the first
    five into a ``SamplingConfig``."""
    parser.add_argument("--greedy", action="store_true", help="argmax decoding instead of sampling")
    parser.add_argument("--temperature", type=ranged("temperature"), default=1.0, help="above 0, at most 10")
    parser.add_argument("--top-k", type=ranged("top_k"), default=25, help="0 for no top-k filter")
    parser.add_argument("--top-p", type=ranged("top_p"), default=0.8, help="above 0, at most 1")
    parser.add_argument("--guidance", type=ranged("guidance"), default=0.0,
                        help="classifier-free guidance by the text (0 to 10; default 0: off), for a MobileSpeech "
                             "model trained with model.text_dropout")
    parser.add_argument("--steps", type=ranged("steps"), default=16,
                        help="MobileSpeech: decoding rounds of the first layer (1 to 256)")
    parser.add_argument("--speed", type=ranged("speed"), default=1.0,
                        help="speaking rate (0.25 to 4), for models that pace themselves: MobileSpeech divides its "
                             "durations by it, VALL-E with durations as input its time on each phoneme")


def sampling_config(args, **extra):
    """The ``SamplingConfig`` of the options ``add_decoding_options`` added (``extra``: its other fields)."""
    from tts.models.sampling import SamplingConfig

    return SamplingConfig(greedy=args.greedy, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                          guidance=args.guidance, **extra)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="tts", description="Zero-shot speech synthesis on Language-Codec.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    syn = commands.add_parser("synthesize", help="speak text in the voice of a short prompt",
                              description="Speak text in the voice of a ~3 s prompt (VALL-E or MobileSpeech). Writes "
                                          "24 kHz audio.")
    syn.add_argument("--prompt", type=Path, required=True, help="voice prompt (any format, rate and channel count)")
    syn.add_argument("--prompt-text", help="transcript of the part of the prompt that is used")
    syn.add_argument("--prompt-seconds", type=ranged("prompt_seconds"), default=3.0,
                     help="seconds of the prompt to use (default 3; 1 to 60)")
    text = syn.add_mutually_exclusive_group(required=True)
    text.add_argument("--text", help="the text to speak (long text is split into sentences)")
    text.add_argument("--text-file", type=Path, help="one utterance per line, synthesized in batches; line N is "
                                                      "written to NNNN.wav (blank lines are skipped)")
    syn.add_argument("--max-chars", type=positive_int, default=None,
                     help="longest text accepted per call, all lines together (default 2000)")
    syn.add_argument("--model", help="model type, valle or mobilespeech (default: the checkpoint's; "
                                     "bundled: mobilespeech)")
    syn.add_argument("--checkpoint", type=Path, help="a release directory (default: the bundled model)")
    syn.add_argument("--out", type=Path, help="output file for --text (default: from the text), folder for "
                                              "--text-file (default: tts_out)")
    syn.add_argument("--seed", type=ranged("seed"), help="make sampling reproducible (0 to 2^63-1)")
    add_decoding_options(syn)
    syn.add_argument("--free-alignment", action="store_true",
                     help="VALL-E with a guided alignment head: decode without its monotonic constraint")
    syn.add_argument("--batch-size", type=ranged("batch_size"), default=8,
                     help="sentences decoded together (1 to 256)")
    syn.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps")

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
    add_serve_parser(commands)
    return parser


def default_name(text: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", text.lower())[:6]
    return ("_".join(words) or "speech") + ".wav"


def _outputs(args: argparse.Namespace, texts: List[str], lines: List[int]) -> List[Path]:
    """Where each text's audio goes; checked before any synthesis so a bad path fails fast."""
    from tts.synthesizer import SynthesisError

    if args.text is not None:
        paths = [args.out or Path(default_name(texts[0]))]
        folder = paths[0].parent
    else:
        folder = args.out or Path("tts_out")
        if folder.suffix or folder.is_file():
            raise SynthesisError(f"--out must be a folder with --text-file, got {folder}")
        paths = [folder / f"{line:04d}.wav" for line in lines]
    if not (folder.is_dir() or (args.text_file is not None and folder.parent.is_dir())):
        raise SynthesisError(f"cannot write to {folder}: the folder does not exist")
    inputs = {p.resolve() for p in (args.prompt, args.text_file) if p is not None}
    for path in paths:
        if path.suffix.lower() not in (".wav", ".flac"):
            raise SynthesisError(f"output {path} must end in .wav or .flac")
        if path.is_dir():
            raise SynthesisError(f"cannot write {path}: it is a folder")
        if path.resolve() in inputs:
            raise SynthesisError(f"output {path} is one of the inputs; choose another --out")
    return paths


def _device(name: str) -> str:
    """A device this machine has, by torch's name for it."""
    import torch

    from tts.synthesizer import SynthesisError

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise SynthesisError(f"--device {name!r} is not a device name (cpu, cuda, cuda:N, mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SynthesisError(f"--device {name}: this machine has no CUDA device")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise SynthesisError(f"--device {name}: there are {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise SynthesisError(f"--device {name}: MPS is not available here")
    if device.type not in ("cpu", "cuda", "mps"):
        raise SynthesisError(f"--device {name}: only cpu, cuda and mps are supported")
    return str(device)


def synthesize(args: argparse.Namespace) -> int:
    from toolkit.audio import save_audio
    from tts.synthesizer import MAX_TEXT_CHARS, Synthesizer, SynthesisError, check_text

    if args.text is not None:
        texts, lines = [args.text], [1]
    else:
        try:
            raw = args.text_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise SynthesisError(f"cannot read {args.text_file}: {err}") from None
        numbered = [(n + 1, line.strip()) for n, line in enumerate(raw) if line.strip()]
        if not numbered:
            raise SynthesisError(f"{args.text_file} has no text")
        lines, texts = [n for n, _ in numbered], [t for _, t in numbered]
    if not texts[0].strip():
        raise SynthesisError("the text is empty")
    max_chars = args.max_chars or MAX_TEXT_CHARS
    check_text(texts, max_chars)
    outputs = _outputs(args, texts, lines)
    device = _device(args.device)
    synthesizer = Synthesizer.from_pretrained(args.checkpoint, args.model, device)
    sampling = sampling_config(args, constrain_alignment=not args.free_alignment)
    prompt_text = args.prompt_text
    if not prompt_text and synthesizer.needs_prompt_text:
        prompt_text = synthesizer.transcribe_prompt(args.prompt, args.prompt_seconds)
        print(f"no --prompt-text: the prompt was transcribed offline (pocketsphinx, often wrong) as "
              f"{prompt_text!r}; pass --prompt-text for better results", file=sys.stderr)
    prompt = synthesizer.prepare_prompt(args.prompt, prompt_text, args.prompt_seconds)
    audio = synthesizer.synthesize(prompt, texts, sampling=sampling, seed=args.seed, batch_size=args.batch_size,
                                   progress=True, steps=args.steps, speed=args.speed, max_chars=max_chars)
    outputs[0].parent.mkdir(exist_ok=True)  # the --text-file folder, made once there is audio to put in it
    for path, wav in zip(outputs, audio):
        save_audio(path, wav, synthesizer.sample_rate)
        print(f"{path} ({wav.size / synthesizer.sample_rate:.2f} s)")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    import json

    from tts import evaluation
    from tts.synthesizer import SynthesisError

    for path in (args.out, args.markdown, args.plot):  # checked before the (slow) scoring
        if path is None:
            continue
        if not path.parent.is_dir():
            raise SynthesisError(f"cannot write {path}: folder {path.parent} does not exist")
        if path.is_dir() or not os.access(path.parent, os.W_OK):
            raise SynthesisError(f"cannot write {path}: {'it is a folder' if path.is_dir() else 'no permission'}")
    if args.audio is not None and not args.audio.is_file():
        raise SynthesisError(f"--audio {args.audio} does not exist")
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


def serve(args: argparse.Namespace) -> int:
    from tts.serve.config import ServeConfig, default_voices_dir
    from tts.serve.server import run
    from tts.synthesizer import MAX_TEXT_CHARS

    config = ServeConfig(checkpoint=args.checkpoint, model=args.model, device=_device(args.device), host=args.host,
                         port=args.port, api_key=args.api_key, voices_dir=args.voices_dir or default_voices_dir(),
                         max_batch=args.max_batch, max_wait=args.max_wait_ms / 1000, queue_size=args.queue_size,
                         max_chars=args.max_chars or MAX_TEXT_CHARS, max_upload_bytes=args.max_upload_mb * 2 ** 20)
    try:
        config.check()  # option combinations (--host off loopback without --api-key, ...): a bad command line
    except ValueError as err:
        print(f"tts serve: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    return run(config)


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    from toolkit.errors import InputError
    from tts.synthesizer import SynthesisError

    try:
        command = {"synthesize": synthesize, "evaluate": evaluate, "serve": serve}[args.command]  # looked up per call
        return command(args)
    except (SynthesisError, InputError) as err:
        print(f"tts: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("tts: interrupted; no output was written for the unfinished work", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
