"""Store a trained aligner's durations with the cuts that have none, and measure it where the truth is known.

    python recipes/aligner/label.py --release runs/aligner_mini/release --cuts data/mini/cuts_train.jsonl.gz \
        --out data/mini/cuts_train.dur.jsonl.gz

``--release bundled`` is the aligner bundled with the package (``tts/assets/aligner-mini``, trained on the mini
corpus's codes of the bundled codec): it labels cuts tokenized with that codec without an aligner of one's own.

Cuts with stored durations (the exact timings of synthetic espeak-ng speech) keep them; the aligner's hard alignment
of each such cut is compared with them, and the mean boundary error in frames (where each phone ends) is reported,
beside that of uniform durations (each phone of an utterance as long as the others), the baseline it is read against.
The other cuts get the aligner's durations in ``supervision.custom["durations"]`` with ``durations_source: aligner``.

With ``--durations-from`` instead of ``--release``, the durations come from a labelled manifest of the same utterances
tokenized with another codec (durations are of the audio, in frames at the codec's 75 Hz), matched by cut id. So an
aligner trained on one codec's codes labels a corpus once, and the durations follow it to every later codec::

    python recipes/aligner/label.py --durations-from data/mini/cuts_train.dur.jsonl.gz \
        --cuts data/mini_v2/cuts_train.jsonl.gz --out data/mini_v2/cuts_train.dur.jsonl.gz

A copied duration list must fit the cut (one per phoneme token, summing to its frames); cuts it does not fit, or that
the other manifest lacks, stay without and are counted.

Prints a JSON summary; the output manifest is written whole or not at all.
"""

import argparse
import json
from pathlib import Path

import torch
from lhotse import CutSet, load_manifest_lazy

from toolkit.files import atomic_path
from toolkit.runs import run_cli
from tts.data.dataset import cut_codes, fitting_durations, stored_durations
from tts.models.aligner import boundary_error, uniform_durations
from tts.release import bundled_release, load_token_model
from tts.text import is_phone


def label(release_dir: Path, cuts_path: Path, out: Path, batch_size: int = 16) -> dict:
    release = load_token_model(release_dir)
    if release.model_type != "aligner":
        raise ValueError(f"{release_dir} is a {release.model_type} release, not an aligner")
    aligner, symbols = release.model.aligner, release.symbols
    errors, uniform_errors, compared, labelled, kept = [], [], 0, 0, 0
    batch = []

    def flush(writer):
        nonlocal compared, labelled, kept
        tokens = [c.supervisions[0].custom["phonemes"].split(" ") for c in batch]
        phonemes = torch.nn.utils.rnn.pad_sequence([torch.tensor(symbols.encode(t)) for t in tokens],
                                                   batch_first=True, padding_value=symbols.pad_id)
        arrays = [torch.from_numpy(cut_codes(c).astype("int64")).T for c in batch]  # [K, T] each
        lens = torch.tensor([a.shape[1] for a in arrays])
        codes = torch.full((len(batch), arrays[0].shape[0], int(lens.max())), -1, dtype=torch.long)
        for i, a in enumerate(arrays):
            codes[i, :, : a.shape[1]] = a
        with torch.no_grad():
            predicted = aligner.durations(phonemes, torch.tensor([len(t) for t in tokens]), codes, lens)
        for i, (cut, toks) in enumerate(zip(batch, tokens)):
            exact = stored_durations(cut, len(toks), int(lens[i]))
            mine = predicted[i, : len(toks)]
            if exact is not None:
                phones = torch.tensor([is_phone(t) for t in toks])
                count = int(phones.sum())
                errors.append(float(boundary_error(mine[None], exact[None], phones[None])) * count)
                uniform = uniform_durations(phones, int(lens[i]))
                uniform_errors.append(float(boundary_error(uniform[None], exact[None], phones[None])) * count)
                compared += count
                kept += 1
            else:
                cut.supervisions[0].custom.update(durations=" ".join(map(str, mine.tolist())),
                                                  durations_source="aligner")
                labelled += 1
            writer.write(cut)
        batch.clear()

    # Streamed: a batch of cuts in memory at a time, the manifest written as it goes (renamed when complete).
    with atomic_path(out) as tmp, CutSet.open_writer(str(tmp)) as writer:
        for cut in load_manifest_lazy(cuts_path):
            batch.append(cut)
            if len(batch) == batch_size:
                flush(writer)
        if batch:
            flush(writer)
    return {"labelled": labelled, "kept_exact": kept,
            "boundary_error_frames": sum(errors) / compared if compared else None,
            "boundary_error_uniform_frames": sum(uniform_errors) / compared if compared else None,
            "phones_compared": compared}


def transfer(source: Path, cuts_path: Path, out: Path) -> dict:
    """Copy ``source``'s stored durations to the cuts of ``cuts_path`` that have none, by cut id (see the module's
    docstring). Only the durations of the cuts that need them are held in memory, as their text."""
    needed = set()
    for cut in load_manifest_lazy(cuts_path):
        if not (cut.supervisions[0].custom or {}).get("durations"):
            needed.add(cut.id)
    found = {}
    for cut in load_manifest_lazy(source):
        custom = cut.supervisions[0].custom or {}
        if cut.id in needed and custom.get("durations"):
            found[cut.id] = (custom["durations"], custom.get("durations_source"))
    copied, kept, missing, misfit = 0, 0, 0, 0
    with atomic_path(out) as tmp, CutSet.open_writer(str(tmp)) as writer:
        for cut in load_manifest_lazy(cuts_path):
            sup = cut.supervisions[0]
            if cut.id not in needed:
                kept += 1
            elif cut.id not in found:
                missing += 1
            else:
                durations, origin = found[cut.id]
                tokens = len(sup.custom["phonemes"].split(" "))
                if fitting_durations(durations, tokens, cut_codes(cut).shape[0]) is None:
                    misfit += 1
                else:
                    sup.custom.update(durations=durations, **({"durations_source": origin} if origin else {}))
                    copied += 1
            writer.write(cut)
    return {"copied": copied, "kept_own": kept, "missing": missing, "misfit": misfit}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--release", help="an aligner release (recipes/aligner/train.py), or 'bundled' for the one "
                        "bundled with the package (for codes of the bundled codec)")
    source.add_argument("--durations-from", type=Path, help="a labelled manifest of the same utterances (another "
                        "codec's codes): copy its durations by cut id instead of running an aligner")
    parser.add_argument("--cuts", type=Path, required=True, help="tokenized cuts")
    parser.add_argument("--out", type=Path, required=True, help="the labelled manifest")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    if not args.cuts.is_file():
        raise ValueError(f"no cuts at {args.cuts}")
    if args.durations_from is not None:
        if not args.durations_from.is_file():
            raise ValueError(f"no cuts at {args.durations_from}")
        print(json.dumps(transfer(args.durations_from, args.cuts, args.out), indent=1))
    else:
        release = bundled_release("aligner") if args.release == "bundled" else Path(args.release)
        print(json.dumps(label(release, args.cuts, args.out, args.batch_size), indent=1))


if __name__ == "__main__":
    run_cli(main)
