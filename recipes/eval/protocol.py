"""The zero-shot evaluation protocol over a folder of real clips with a ``manifest.tsv`` (the ``../shared/speech``
layout: ``file``, ``speaker_id``, ``role``, ``transcript`` columns), shared by the evaluation recipes
(``recipes/eval/zero_shot.py``, ``recipes/codec/evaluate.py``, ``recipes/ablation/run.py``). Import it as
``recipes.eval.protocol`` with the repository root on ``sys.path``.
"""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Sequence, Union

from toolkit.audio import load_audio
from tts.evaluation import Item

PathLike = Union[str, os.PathLike]


def read_clips(folder: PathLike) -> List[Dict[str, str]]:
    """The rows of ``<folder>/manifest.tsv`` (the ``../shared/speech`` layout) whose file exists."""
    folder = Path(folder)
    with open(folder / "manifest.tsv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [row for row in rows if (folder / row["file"]).is_file()]


def zero_shot_pairs(rows: List[Dict[str, str]]) -> List[Dict[str, str]]:
    """(target, prompt) per full utterance with a transcript, the prompt from the same speaker's other clips."""
    by_speaker = defaultdict(list)
    for row in rows:
        by_speaker[row["speaker_id"]].append(row)
    out = []
    for clips in by_speaker.values():
        for target in clips:
            if target["role"] != "full_utterance" or target["transcript"] == "unknown":
                continue
            others = [c for c in clips if c is not target]
            if not others:
                continue
            prompt = next((c for c in others if c["role"] == "prompt_crop_3s"), others[0])
            out.append({"target": target["file"], "text": target["transcript"], "prompt": prompt["file"]})
    return out


def draw_systems(label: str, draws: int) -> List[str]:
    """The system names of ``draws`` decodings of one model: ``label`` alone for one, else ``<label> draw <d>``."""
    return [label] if draws == 1 else [f"{label} draw {d + 1}" for d in range(draws)]


def zero_shot_items(synth, clips: PathLike, jobs: Sequence[Dict[str, str]], audio_dir: PathLike, label: str,
                    seed: int = 0, sampling=None, steps: int = 16, speed: float = 1.0, draws: int = 1) -> List[Item]:
    """Synthesize every (target, prompt) job with ``synth`` (a ``tts.Synthesizer``; ``sampling``: a
    ``SamplingConfig``, default its defaults; ``steps`` and ``speed``: MobileSpeech's rounds for layer 1 and speaking
    rate); returns the evaluation items of three systems: the ground truth, its codec resynthesis, and the model (named
    ``label``). The prompt's transcript is transcribed offline (the crops have none).

    ``draws`` > 1 decodes each target that many times, draw d of target i with seed ``seed + d * len(jobs) + i`` (the
    first draw is the single draw's), as the systems ``draw_systems(label, draws)``."""
    from tqdm import tqdm

    from toolkit.audio import save_audio
    from tts.models.sampling import SamplingConfig

    clips, audio_dir = Path(clips), Path(audio_dir)
    items: List[Item] = []
    for i, job in enumerate(tqdm(jobs, desc=f"zero-shot {label}", unit="target")):
        target, prompt = clips / job["target"], clips / job["prompt"]
        stem = Path(job["target"]).stem
        prompt_text = synth.transcribe_prompt(prompt) if synth.needs_prompt_text else ""
        # the model first: options it refuses end the run before anything is written
        generated = [synth.synthesize(prompt, job["text"], prompt_text=prompt_text,
                                      sampling=sampling or SamplingConfig(), seed=seed + d * len(jobs) + i,
                                      steps=steps, speed=speed) for d in range(draws)]
        wav = load_audio(target, synth.sample_rate)
        resynthesis = synth.codec.decode(synth.codec.encode(wav[None, None]))[0, 0, : wav.numel()]
        audio_dir.mkdir(parents=True, exist_ok=True)
        save_audio(audio_dir / f"{stem}.codec.wav", resynthesis, synth.sample_rate)
        items += [
            Item(audio=str(target), text=job["text"], speaker_reference=str(prompt), system="ground truth"),
            Item(audio=str(audio_dir / f"{stem}.codec.wav"), text=job["text"], speaker_reference=str(prompt),
                 reference=str(target), system="codec resynthesis"),
        ]
        for d, (system, audio) in enumerate(zip(draw_systems(label, draws), generated)):
            path = audio_dir / (f"{stem}.{label}.wav" if d == 0 else f"{stem}.{label}.draw{d + 1}.wav")
            save_audio(path, audio, synth.sample_rate)
            items.append(Item(audio=str(path), text=job["text"], speaker_reference=str(prompt), system=system,
                              extra={"prompt_text": prompt_text}))
    return items
