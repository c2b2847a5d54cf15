"""Export a release from the checkpoints of token-model runs: one MobileSpeech run, or one or more VALL-E runs (e.g. an
AR run and a NAR run, merged).

    python recipes/valle/export.py --run runs/valle_mini --out path/to/release --dtype float16
    python recipes/valle/export.py --run runs/valle_ar --run runs/valle_nar --out path/to/release --copy-codec
    python recipes/valle/export.py --run runs/mobilespeech_mini --out path/to/release --dtype float16

Each run's latest checkpoint is used (or --checkpoint NAME, applied to every run). Reads only safetensors and JSON.
"""

import argparse
import json
from pathlib import Path

import torch

from codec.checkpoint import load_safetensors, load_strict
from codec.runs import run_cli
from tts.models.mobilespeech import MobileSpeech, MobileSpeechConfig
from tts.models.valle import STAGES, Valle, ValleConfig
from tts.release import save_token_model
from tts.text import SymbolTable


def _checkpoint(run: Path, name: str = None) -> Path:
    checkpoints = sorted(p for p in (run / "checkpoints").glob("step-*") if p.is_dir())
    if not checkpoints:
        raise SystemExit(f"error: {run} has no checkpoints")
    path = run / "checkpoints" / name if name else checkpoints[-1]
    if not (path / "model.safetensors").is_file():
        raise SystemExit(f"error: {path} has no model.safetensors")
    return path


def _codec(run: Path) -> str:
    return json.loads((run / "codec.json").read_text())["codec"] if (run / "codec.json").exists() else "bundled"


def export(runs, out: Path, checkpoint: str = None, dtype: torch.dtype = None, copy_codec: bool = False) -> Path:
    first = json.loads((runs[0] / "train_config.json").read_text())
    if first.get("model_type", "valle") == "mobilespeech":
        if len(runs) != 1:
            raise SystemExit("error: a MobileSpeech release comes from exactly one run")
        path = _checkpoint(runs[0], checkpoint)
        print(f"{runs[0]}: mobilespeech from {path.name}")
        model = MobileSpeech(MobileSpeechConfig.from_dict(first["model"]))
        load_strict(model, load_safetensors(path / "model.safetensors"), source=str(path))
        save_token_model(model, "mobilespeech", out, SymbolTable.load(runs[0] / "symbols.json"), _codec(runs[0]),
                         copy_codec=copy_codec, dtype=dtype)
        return out
    state, stages, config, symbols, codec = {}, set(), None, None, None
    for run in runs:
        train = json.loads((run / "train_config.json").read_text())
        if train.get("model_type", "valle") != "valle":
            raise SystemExit(f"error: {run} trains {train['model_type']}, not VALL-E like {runs[0]}")
        run_config = ValleConfig.from_dict(train["model"])
        if config is not None and run_config != config:
            raise SystemExit(f"error: {run} trains another model size than {runs[0]}")
        config = run_config
        path = _checkpoint(run, checkpoint)
        weights = load_safetensors(path / "model.safetensors")
        for stage in train["stages"]:
            if stage in stages:
                raise SystemExit(f"error: stage {stage} is trained by more than one of the runs")
            stages.add(stage)
            state.update({k: v for k, v in weights.items() if k.startswith(f"{stage}.")})
        symbols = SymbolTable.load(run / "symbols.json")
        codec = _codec(run)
        print(f"{run}: {', '.join(train['stages'])} from {path.name}")
    model = Valle(config, [s for s in STAGES if s in stages])
    load_strict(model, state, source=", ".join(str(r) for r in runs))
    save_token_model(model, "valle", out, symbols, codec, copy_codec=copy_codec, dtype=dtype)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, action="append", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--checkpoint", help="a step-* folder name (default: the latest of each run)")
    parser.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    parser.add_argument("--copy-codec", action="store_true")
    args = parser.parse_args()
    export(args.run, args.out, args.checkpoint, getattr(torch, args.dtype), args.copy_codec)
    print(f"release written to {args.out}")


if __name__ == "__main__":
    run_cli(main)
