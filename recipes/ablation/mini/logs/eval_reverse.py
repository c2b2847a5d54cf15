# Scores the zero-shot parts in reverse order beside the running eval stage (which uses one core for pocketsphinx).
import sys
from pathlib import Path
import yaml, torch
sys.path.insert(0, "recipes/ablation"); sys.path.insert(0, "recipes/mini")
torch.set_num_threads(1)
import run as r
from tts import evaluation
config = yaml.safe_load(Path("recipes/ablation/configs/mini_cpu.yaml").read_text())
a = r.Ablation(config, Path("runs/ablation_mini"))
e = config["eval"]; clips = Path(e["clips"])
scorer = evaluation.Scorer(e.get("asr_model"), e.get("speaker_model"), e.get("dnsmos", True)).check()
jobs = evaluation.zero_shot_pairs(evaluation.read_clips(clips))[: e.get("tts_targets", 10)]
for model in ["mobilespeech", "valle"]:
    for kind in ["rvq", "mcrvq"]:
        name = f"{model}_{kind}"
        if (a.out / "eval" / f"tts_{name}.json").is_file():
            continue
        print("scoring", name, flush=True)
        a.part(f"tts_{name}", a.zero_shot, model, kind, clips, jobs, scorer)
print("done", flush=True)
