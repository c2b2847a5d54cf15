"""A time-budgeted training sprint on one GPU: a training pack and a number of minutes in, sharded releases and a JSON
summary out.

    python recipes/gpu/sprint.py --pack packs/mini --minutes 10 --out sprint
    python recipes/gpu/sprint.py --pack packs/mini-audio --plan recipes/gpu/codec.yaml --minutes 10 --out sprint

The plan (default recipes/gpu/tokens.yaml: VALL-E, then MobileSpeech, on the pack's codes; recipes/gpu/codec.yaml:
the codec, fine-tuned from the pack's codec on its audio) lists stages that run one after the other, each a training
recipe with --pack, --max-minutes and --resume in <out>/<stage>/. Each stage gets its share of what is left of the
budget when it starts, so time one stage leaves unused goes to the next. Releases are written as float16 shards of at
most --shard-size-mb MB (default 15) in <out>/<stage>/release/, and <out>/summary.json holds, per stage: steps, audio
seen, last losses and validation, throughput, start-up times, the release's files.

Before anything trains it checks, and stops with one line when one is missing or wrong: the pack, the Python packages
it and the trainers need (torch, accelerate, einops, numpy, safetensors, pyyaml, h5py, tqdm and what pack.json adds),
the plan and every stage's config, and CUDA (--device cpu runs it on the CPU instead: tests and dry runs). --check
stops after these checks. Run it again with the same --out to continue the stages from their checkpoints.
"""

import argparse
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the project, also when it is a copied tree rather than an installed package

from toolkit.runs import run_cli  # noqa: E402

STAGE_KEYS = {"name", "recipe", "config", "share", "set", "args"}
DATA = {"recipes/codec/train.py": "audio"}  # what a recipe reads of a pack; the token recipes read "tokens"
RESERVE_MINUTES = 0.05  # per stage, for the export and the process's exit after its budget


def read_plan(path: Path) -> list:
    import yaml

    try:
        stages = (yaml.safe_load(path.read_text()) or {}).get("stages")
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"cannot read the plan {path}: {' '.join(str(err).split())}") from None
    if not isinstance(stages, list) or not stages:
        raise ValueError(f"{path}: a plan is a list of stages under 'stages'")
    names = set()
    for i, stage in enumerate(stages):
        where = f"{path}: stage {i + 1}"
        if not isinstance(stage, dict) or not {"name", "recipe", "config"} <= set(stage):
            raise ValueError(f"{where}: needs name, recipe and config")
        unknown = set(stage) - STAGE_KEYS
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(STAGE_KEYS)})")
        if stage["name"] in names or not str(stage["name"]).isidentifier():
            raise ValueError(f"{where}: name {stage['name']!r} must be a unique identifier")
        names.add(stage["name"])
        share = stage.setdefault("share", 1.0)
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not share > 0:
            raise ValueError(f"{where}: share must be a positive number")
        for key in ("recipe", "config"):
            if not (ROOT / stage[key]).is_file():
                raise ValueError(f"{where}: {key} {stage[key]} does not exist")
        for key in ("set", "args"):
            if not isinstance(stage.setdefault(key, []), list):
                raise ValueError(f"{where}: {key} must be a list")
    return stages


def preflight(args, stages: list):
    """The pack, the packages and the device, each a one-line ValueError when missing."""
    from toolkit.pack import BASE_REQUIREMENTS, Pack

    pack = Pack(args.pack)
    wanted = list(BASE_REQUIREMENTS) + pack.requirements
    missing = [name for name in wanted if importlib.util.find_spec(name) is None]
    if missing:
        raise ValueError(f"missing Python packages: {', '.join(missing)} (install them, e.g. from wheels: pip install "
                         f"--no-index --find-links <wheel folder> {' '.join(missing)})")
    for module in ("tts.training", "codec.training"):
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ValueError(f"the trainers cannot be imported ({err}): install the missing package") from None
    for stage in stages:
        kind = DATA.get(stage["recipe"], "tokens")
        if not pack.has(kind, "train"):
            raise ValueError(f"stage {stage['name']} trains on {kind}, and the pack {args.pack} holds none")
        check_config(stage, pack, kind)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA is not available: run this on a GPU machine (or pass --device cpu for a CPU dry run)")
    return pack


def check_config(stage: dict, pack, kind: str) -> None:
    """Load a stage's run config with its overrides, as its recipe will: a bad config fails here, before any stage
    has spent the budget."""
    config, overrides = ROOT / stage["config"], list(map(str, stage["set"]))
    from codec import load_codec

    if kind == "audio":
        from codec.training import check_architecture, load_train_config

        run = load_train_config(config, overrides)
        if "{pack}/codec" in map(str, stage["args"]):
            check_architecture(load_codec(pack.codec).config, run.codec, f"the pack's codec {pack.codec}")
        return
    from tts.text import SymbolTable
    from tts.training import load_token_train_config

    codec = load_codec(pack.codec)
    load_token_train_config(config, len(SymbolTable.load(pack.symbols)), codec.num_codebooks, codec.codebook_size,
                            overrides)


def last_values(metrics: Path) -> dict:
    """The last logged value of each key of a run's metrics.jsonl, and the mean logged throughput."""
    values, throughput = {}, []
    if metrics.is_file():
        for line in metrics.read_text().splitlines():
            row = json.loads(line)
            values.update(row)
            throughput += [v for k, v in row.items() if k.endswith("_per_second")]
    if throughput:
        values["mean_throughput"] = sum(throughput) / len(throughput)
    return values


def whole(value):
    return None if value is None else int(value)


def stage_summary(stage: dict, out: Path, code: int, wall: float, minutes: float) -> dict:
    values = last_values(out / "metrics.jsonl")
    release = out / "release"
    summary = {
        "name": stage["name"], "recipe": stage["recipe"], "config": stage["config"], "exit_code": code,
        "minutes_given": round(minutes, 3), "wall_seconds": round(wall, 1), "steps": whole(values.get("step")),
        "steps_this_call": whole(values.get("call/steps")),
        "audio_seconds_this_call": values.get("call/audio_seconds"),
        "train": {k[len("train/"):]: v for k, v in values.items() if k.startswith("train/")},
        "valid": {k[len("valid/"):]: v for k, v in values.items() if k.startswith("valid/")},
        "times": {k[len("time/"):]: v for k, v in values.items() if k.startswith("time/")},
        "mean_throughput": values.get("mean_throughput"), "log": str(out / "log.txt"),
    }
    if release.is_dir():
        summary["release"] = {"path": str(release), "files": {p.name: p.stat().st_size for p in
                                                              sorted(release.rglob("*")) if p.is_file()}}
    return summary


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pack", type=Path, required=True, help="a training pack (recipes/gpu/pack.py)")
    parser.add_argument("--minutes", type=float, required=True, help="the whole sprint's budget, start-up included")
    parser.add_argument("--out", type=Path, required=True, help="output folder (a second run continues it)")
    parser.add_argument("--plan", type=Path, default=ROOT / "recipes/gpu/tokens.yaml")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--shard-size-mb", default="15", help="largest release shard in MB (default 15)")
    parser.add_argument("--export-dtype", choices=["float16", "float32"], default="float16")
    parser.add_argument("--threads", type=int, help="torch threads per stage (CPU runs)")
    parser.add_argument("--check", action="store_true", help="check the pack, packages, plan, configs and device, "
                        "then exit without training")
    args = parser.parse_args()
    started = time.time()
    args.pack, args.out = args.pack.resolve(), args.out.resolve()  # the stages run from the repository root
    if not args.minutes > 0:
        raise ValueError(f"--minutes must be positive, got {args.minutes}")
    stages = read_plan(args.plan)
    preflight(args, stages)
    if args.check:
        print(f"sprint: ready: {len(stages)} stages ({', '.join(s['name'] for s in stages)}) on {args.pack}")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    if args.device == "cpu":
        env["ACCELERATE_USE_CPU"] = "true"
    summary = {"pack": str(args.pack), "plan": str(args.plan), "device": args.device,
               "minutes": args.minutes, "stages": []}
    for i, stage in enumerate(stages):
        left = args.minutes - (time.time() - started) / 60
        share = stage["share"] / sum(s["share"] for s in stages[i:])
        minutes = max(left * share - RESERVE_MINUTES, 0.01)
        out = args.out / stage["name"]
        out.mkdir(exist_ok=True)
        extra = [a.replace("{pack}", str(args.pack)) for a in map(str, stage["args"])]
        command = [sys.executable, str(ROOT / stage["recipe"]), "--config", str(ROOT / stage["config"]),
                   "--pack", str(args.pack), "--out-dir", str(out), "--resume", "--max-minutes", f"{minutes:.4f}",
                   "--shard-size-mb", str(args.shard_size_mb), "--export-dtype", args.export_dtype,
                   "--wandb", "disabled", *extra]
        if args.threads:
            command += ["--threads", str(args.threads)]
        if stage["set"]:
            command += ["--set", *map(str, stage["set"])]
        print(f"sprint: stage {stage['name']}: {minutes:.2f} min", flush=True)
        began = time.time()
        with open(out / "log.txt", "a") as log:
            code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT).returncode
        summary["stages"].append(stage_summary(stage, out, code, time.time() - began, minutes))
        summary["wall_seconds"] = round(time.time() - started, 1)
        write_json(args.out / "summary.json", summary)
        if code != 0:
            tail = (out / "log.txt").read_text().strip().splitlines()[-1:] or ["(no output)"]
            print(f"sprint: error: stage {stage['name']} failed (exit {code}): {tail[0]} (log: {out / 'log.txt'})",
                  file=sys.stderr)
            return 1
        done = summary["stages"][-1]
        hours = (done["audio_seconds_this_call"] or 0) / 3600
        print(f"sprint: stage {stage['name']}: {done['steps_this_call']} steps, {hours:.2f} h of audio, release "
              f"{done.get('release', {}).get('path')}", flush=True)
    print(f"sprint: done in {(time.time() - started) / 60:.2f} min; summary {args.out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    run_cli(main)
