"""Where a MobileSpeech model loses intelligibility: held-out cuts decoded with parts of the truth given.

For every cut of a tokenized manifest with stored durations (e.g. ``data/voice_bdl/cuts_valid.jsonl.gz``, or a
corpus manifest labelled by ``recipes/aligner/label.py``), prompted by the first 3 s of another cut of its speaker,
these systems speak its text:
- ``codec``: the cut's own codes through the codec (the ceiling), and ``codec, layer 1``: its first codebook alone;
- ``layer 1 given``: the true first layer and durations, the model decodes layers 2 to K (its acoustic detail);
- ``durations given``: the true durations, the model decodes every layer (its tokens, without its timing);
- ``model``: the model alone, as ``tts synthesize`` decodes (its predicted durations).
The ground truth is the cut's recording. WER (pocketsphinx) uses the cut's transcript and speaker similarity the
recording. A gap between two rows is what the part given in one and not the other costs.

    python recipes/eval/oracle.py --checkpoint runs/ms_mini/release --cuts data/voice_bdl/cuts_valid.jsonl.gz \\
        --prompt-cuts data/voice_bdl/cuts_train.jsonl.gz --out-dir runs/oracle_ms_mini --no-dnsmos

Writes ``<out-dir>/audio/``, ``manifest.jsonl``, ``scores.json``, ``table.md`` and ``scores.png``.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from toolkit.errors import InputError  # noqa: E402
from toolkit.runs import run_cli  # noqa: E402
from tts import evaluation  # noqa: E402
from tts.cli import add_decoding_options, sampling_config  # noqa: E402
from tts.data.dataset import PromptPool, cut_codes, stored_durations  # noqa: E402
from tts.synthesizer import Synthesizer  # noqa: E402

SYSTEMS = ("codec", "codec, layer 1", "layer 1 given", "durations given", "model")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="a MobileSpeech release (default: the bundled one)")
    parser.add_argument("--cuts", type=Path, required=True,
                        help="tokenized cuts with stored durations and recordings: the targets")
    parser.add_argument("--prompt-cuts", type=Path, help="cuts to take prompts from (default: --cuts)")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--limit", type=int, help="only the first N targets that have durations and a prompt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-dnsmos", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    add_decoding_options(parser.add_argument_group("decoding (as tts synthesize)"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from lhotse import load_manifest
    from tqdm import tqdm

    from toolkit.audio import save_audio
    from tts.evaluation import Item

    scorer = evaluation.Scorer(dnsmos=not args.no_dnsmos).check()
    synth = Synthesizer.from_pretrained(args.checkpoint, "mobilespeech" if args.checkpoint is None else None)
    model, symbols, codec = synth.release.model, synth.release.symbols, synth.codec
    if synth.release.model_type != "mobilespeech":
        parser.error(f"{args.checkpoint} is a {synth.release.model_type} release; the oracles need MobileSpeech")
    targets = load_manifest(args.cuts)
    pool = PromptPool(load_manifest(args.prompt_cuts) if args.prompt_cuts else targets)
    sampling = sampling_config(args)
    if sampling.guidance and not model.supports_guidance:
        parser.error(f"{args.checkpoint or 'the bundled model'} was trained without model.text_dropout: it cannot "
                     f"follow --guidance")
    temperature = 0.0 if sampling.greedy else sampling.temperature
    frames = int(round(3.0 * codec.frame_rate))
    rng = random.Random(args.seed)
    audio_dir = args.out_dir / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    items, used = [], 0
    for cut in tqdm(targets, desc="oracle decoding", unit="cut"):
        if args.limit is not None and used >= args.limit:
            break
        sup = cut.supervisions[0]
        phonemes = torch.tensor([symbols.encode(sup.custom["phonemes"].split(" "))])
        codes = torch.from_numpy(cut_codes(cut).astype("int64")).T  # [K, T]
        durations = stored_durations(cut, phonemes.shape[1], codes.shape[1])
        prompt = pool.draw(sup.speaker, cut, rng, frames)
        if durations is None or prompt is None:
            continue
        used += 1
        prompt = torch.from_numpy(prompt.astype("int64")).T
        lens = torch.tensor([phonemes.shape[1]])
        generator = torch.Generator().manual_seed(args.seed + used)

        def decode(**kw):
            return model.decode(phonemes, lens, prompt, args.steps, temperature=temperature, generator=generator,
                                top_k=sampling.top_k, top_p=sampling.top_p, guidance=sampling.guidance, **kw)[0]

        outputs = {
            "codec": codes,
            "codec, layer 1": codes[:1],
            "layer 1 given": decode(durations=durations[None], given=codes[None, :1]),
            "durations given": decode(durations=durations[None]),
            "model": decode(speed=args.speed * synth.release.pace),  # as the synthesizer asks for it
        }
        truth = audio_dir / f"{cut.id}.truth.wav"
        save_audio(truth, torch.from_numpy(cut.resample(synth.sample_rate).load_audio()[0]), synth.sample_rate)
        items.append(Item(audio=str(truth), text=sup.text, speaker_reference=str(truth), system="ground truth"))
        for i, (name, out) in enumerate(outputs.items()):
            path = audio_dir / f"{cut.id}.{i}.wav"
            save_audio(path, codec.decode(out[None])[0, 0], synth.sample_rate)
            items.append(Item(audio=str(path), text=sup.text, speaker_reference=str(truth), system=name))
    if not items:
        raise InputError(f"no cut of {args.cuts} has stored durations that fit and another cut of its speaker")
    table = evaluation.score_and_write(items, args.out_dir, scorer)
    print(f"{used} targets from {args.cuts}\n{table}", end="")
    return 0


if __name__ == "__main__":
    run_cli(main)
