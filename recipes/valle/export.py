"""Export a release from the checkpoints of one or more VALL-E runs (e.g. an AR run and a NAR run, merged).

    python recipes/valle/export.py --run runs/valle_mini --out path/to/release --dtype float16
    python recipes/valle/export.py --run runs/valle_ar --run runs/valle_nar --out path/to/release --copy-codec

Each run's latest checkpoint is used (or --checkpoint NAME, applied to every run). Reads only safetensors and JSON.
"""

import argparse
import json
from pathlib import Path

import torch

from codec.checkpoint import load_safetensors, load_strict
from tts.models.valle import STAGES, Valle, ValleConfig
from tts.release import save_token_model
from tts.text import SymbolTable


def export(runs, out: Path, checkpoint: str = None, dtype: torch.dtype = None, copy_codec: bool = False) -> Path:
    state, stages, config, symbols, codec = {}, set(), None, None, None
    for run in runs:
        train = json.loads((run / "train_config.json").read_text())
        run_config = ValleConfig.from_dict(train["model"])
        if config is not None and run_config != config:
            raise SystemExit(f"error: {run} trains another model size than {runs[0]}")
        config = run_config
        checkpoints = sorted(p for p in (run / "checkpoints").glob("step-*") if p.is_dir())
        if not checkpoints:
            raise SystemExit(f"error: {run} has no checkpoints")
        path = run / "checkpoints" / checkpoint if checkpoint else checkpoints[-1]
        weights = load_safetensors(path / "model.safetensors")
        for stage in train["stages"]:
            if stage in stages:
                raise SystemExit(f"error: stage {stage} is trained by more than one of the runs")
            stages.add(stage)
            state.update({k: v for k, v in weights.items() if k.startswith(f"{stage}.")})
        symbols = SymbolTable.load(run / "symbols.json")
        codec = json.loads((run / "codec.json").read_text())["codec"] if (run / "codec.json").exists() else "bundled"
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
    main()
