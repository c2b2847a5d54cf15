"""Scored the zero-shot parts of the mini report in reverse order beside the running eval stage, whose pocketsphinx
scoring kept one core busy and left the other idle. Each part lands in runs/ablation_mini/eval/ where the eval stage
finds it cached. Run from the repository root."""
import sys
from pathlib import Path

import torch
import yaml

sys.path[:0] = ["recipes/ablation", "recipes/mini"]
import run  # noqa: E402  (recipes/ablation/run.py)

from tts import evaluation  # noqa: E402

torch.set_num_threads(1)
config = yaml.safe_load(Path("recipes/ablation/configs/mini_cpu.yaml").read_text())
ablation = run.Ablation(config, Path("runs/ablation_mini"))
e = config["eval"]
clips = Path(e["clips"])
scorer = evaluation.Scorer(e.get("asr_model"), e.get("speaker_model"), e.get("dnsmos", True)).check()
jobs = evaluation.zero_shot_pairs(evaluation.read_clips(clips))[: e.get("tts_targets", 10)]
for model in ["mobilespeech", "valle"]:
    for kind in ["rvq", "mcrvq"]:
        name = f"{model}_{kind}"
        if not (ablation.out / "eval" / f"tts_{name}.json").is_file():
            print("scoring", name, flush=True)
            ablation.part(f"tts_{name}", ablation.zero_shot, model, kind, clips, jobs, scorer)
print("done", flush=True)
