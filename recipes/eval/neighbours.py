"""How near a token must be to count: codec resynthesis with one layer's tokens swapped for near codewords, and where
a MobileSpeech model's first-layer guesses fall among the true tokens' neighbours.

For every cut of a tokenized manifest (e.g. ``data/voice_bdl/cuts_valid.jsonl.gz``), each token of codec layer
``--layer`` is replaced by the r-th nearest codeword of its own (Euclidean, in the codec's latent space) for every r
of ``--ranks``, and the codes are decoded; pocketsphinx scores each against the cut's transcript, beside the cut's own
codes and beside tokens drawn at random. A token whose replacement leaves the WER where it was is as good as the
true one: a model that predicts it has not erred.

With ``--checkpoint`` (a MobileSpeech release), the model predicts the first layer wholly masked in one pass (as
validation's ``smd_first``; durations and prefix prompts as training's), and the recipe prints how often its argmax
is the true token or among its r nearest codewords. ``--guidance G [G ...]`` (a model trained with
``model.text_dropout``) ranks the argmax of the guided logits ``c + G (c - u)`` too, c with the text and u without.
``--prompt-free`` prompts each cut with another utterance of its speaker instead, nothing of the cut visible (the
condition of inference's first round, which reads no prompt transcript), and also ranks the opening frames that a
prefix prompt would have held apart from the rest.

    python recipes/eval/neighbours.py --cuts data/voice_bdl/cuts_valid.jsonl.gz --checkpoint runs/ms_mini/release
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from toolkit.errors import InputError  # noqa: E402
from toolkit.runs import run_cli  # noqa: E402
from tts.cli import ranged  # noqa: E402
from tts.models.mobilespeech import nearest_codewords  # noqa: E402


def resynthesis_wer(codec, cuts, layer: int, ranks, seed: int) -> dict:
    """Mean WER per condition: the cut's codes, each rank's neighbour swap, random tokens."""
    from tqdm import tqdm

    from tts import evaluation
    from tts.data.dataset import cut_codes

    codewords = codec.quantizer.layers[layer].codebook.embed
    order = nearest_codewords(codewords, codewords.shape[0])  # order[a, r]: a's r-th nearest codeword
    generator = torch.Generator().manual_seed(seed)
    scorer = evaluation.Scorer(dnsmos=False)
    names = ["the cut's codes"] + [f"each token's nearest codeword no. {r}" for r in ranks] + ["random tokens"]
    scores = {name: [] for name in names}
    for cut in tqdm(cuts, desc="resynthesis", unit="cut"):
        codes = torch.from_numpy(cut_codes(cut).astype(np.int64)).T  # [K, T]
        variants = [codes]
        for r in ranks:
            swapped = codes.clone()
            swapped[layer] = order[codes[layer], r]
            variants.append(swapped)
        drawn = codes.clone()
        drawn[layer] = torch.randint(0, codewords.shape[0], (codes.shape[1],), generator=generator)
        variants.append(drawn)
        for name, variant in zip(names, variants):
            wav = codec.decode(variant[None])[0, 0].numpy()
            scores[name].append(evaluation.word_error_rate(cut.supervisions[0].text,
                                                           scorer.transcribe(wav, codec.sample_rate)))
    return {name: float(np.mean(v)) for name, v in scores.items()}


def model_ranks(release, cuts, codewords: torch.Tensor, max_duration: float = 60.0, guidance=(0.0,),
                prompt_free: bool = False) -> Tuple[Dict[float, torch.Tensor], torch.Tensor]:
    """Per guidance scale, per scored frame: the rank of the model's one-pass first-layer argmax (of the guided
    logits) among the true token's neighbours; and per scored frame, whether a prefix prompt would have held it.

    With ``prompt_free``, each item is prompted by another utterance of its speaker among ``cuts`` (items without
    one are skipped) and every frame is scored, as in inference's first round; otherwise by a prefix of itself."""
    from tts.data.dataset import PromptPool, TokenDataset, make_sampler
    from tts.models.base import IGNORE

    model = release.model.float().eval()
    ranks_of = nearest_codewords(codewords, codewords.shape[0]).argsort(1)  # [a, b]: b's place among a's nearest
    prefixed = TokenDataset(release.symbols)
    dataset = TokenDataset(release.symbols, other_utterance_prob=1.0, prompt_pool=PromptPool(cuts)) if (
        prompt_free) else prefixed
    out: Dict[float, list] = {g: [] for g in guidance}
    opening = []
    with torch.no_grad():
        for batch_cuts in make_sampler(cuts, max_duration, shuffle=False, num_buckets=1):
            batch = dataset[batch_cuts]
            cond, target = model.first_layer_logits(batch)
            if prompt_free:
                target = torch.where(batch.prompt_is_prefix[:, None], torch.full_like(target, IGNORE), target)
            uncond = model.first_layer_logits(batch, without_text=True)[0] if any(guidance) else None
            scored = target >= 0
            # the prefix lengths (the same cuts and seed draw the same) that the prompt-free batch does not hold
            held = prefixed[batch_cuts].prompt_lens if prompt_free else batch.prompt_lens
            opening.append((torch.arange(target.shape[1])[None] < held[:, None])[scored])
            for g in guidance:
                logits = cond + g * (cond - uncond) if g else cond
                out[g].append(ranks_of[target[scored], logits.argmax(-1)[scored]])
    return {g: torch.cat(ranks) for g, ranks in out.items()}, torch.cat(opening)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cuts", type=Path, required=True, help="tokenized cuts with transcripts")
    parser.add_argument("--checkpoint", type=Path, help="a MobileSpeech release: where its guesses fall")
    parser.add_argument("--codec", type=Path, help="the codec of the cuts' codes (default: the bundled one)")
    parser.add_argument("--layer", type=int, default=1, help="codec layer to swap, 1-based (default 1)")
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 5, 20, 50, 100, 200, 400])
    parser.add_argument("--limit", type=int, help="only the first N cuts")
    parser.add_argument("--no-resynthesis", action="store_true", help="only the model's ranks")
    parser.add_argument("--guidance", type=ranged("guidance"), nargs="+", default=[0.0],
                        help="guidance scales of the ranked guesses, 0 to 10 as tts synthesize's (default 0; above 0 "
                             "needs model.text_dropout)")
    parser.add_argument("--prompt-free", action="store_true",
                        help="prompt each cut with another utterance of its speaker among --cuts, nothing of it "
                             "visible (inference's condition); the ranks are also given apart for its opening frames "
                             "(those a prefix prompt would hold) and the rest")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from lhotse import load_manifest

    from codec import load_codec
    from tts.release import load_token_model

    codec = load_codec(args.codec)
    k, c = codec.num_codebooks, codec.codebook_size
    if not 1 <= args.layer <= k:
        parser.error(f"--layer must be 1 to {k}, got {args.layer}")
    if not all(1 <= r < c for r in args.ranks):
        parser.error(f"--ranks must be 1 to {c - 1}")
    release = None
    if args.checkpoint is not None:
        release = load_token_model(args.checkpoint)
        if release.model_type != "mobilespeech":
            parser.error(f"{args.checkpoint} is a {release.model_type} release; the ranks need MobileSpeech")
        if any(args.guidance) and not release.model.supports_guidance:
            parser.error(f"{args.checkpoint} was trained without model.text_dropout: it cannot follow --guidance")
    cuts = load_manifest(args.cuts)
    if args.limit is not None:
        cuts = cuts.subset(first=min(args.limit, len(cuts)))
    if not len(cuts):
        raise InputError(f"{args.cuts} holds no cuts")
    if not args.no_resynthesis:
        print(f"layer {args.layer} swapped, {len(cuts)} cuts, WER of the resynthesis:")
        for name, wer in resynthesis_wer(codec, cuts, args.layer - 1, args.ranks, args.seed).items():
            print(f"  {name}\t{wer:.3f}")
    if release is not None:
        by_scale, opening = model_ranks(release, cuts, codec.quantizer.layers[0].codebook.embed,
                                        guidance=args.guidance, prompt_free=args.prompt_free)
        if not len(opening):
            raise InputError(f"no speaker of {args.cuts} has two utterances: --prompt-free has nothing to score")
        parts = {"": None}
        if args.prompt_free:
            parts.update({" (opening frames)": opening, " (the rest)": ~opening})
        for g, ranks in by_scale.items():
            for part, keep in parts.items():
                kept = ranks if keep is None else ranks[keep]
                shares = ", ".join(f"<= {r}: {(kept <= r).float().mean():.3f}" for r in [0] + list(args.ranks))
                scale = f" (guidance {g:g})" if len(by_scale) > 1 or g else ""
                print(f"{args.checkpoint}{scale}{part}: {len(kept)} frames, first-layer argmax among the true "
                      f"token's nearest: {shares}; median rank {int(kept.float().median())}")
    return 0


if __name__ == "__main__":
    run_cli(main)
