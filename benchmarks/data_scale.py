"""How memory and time grow with the corpus: each data stage on corpora 1x, 4x and 16x a prepared base corpus.

    python benchmarks/data_scale.py --corpus data/mini --out scale.json
    python benchmarks/data_scale.py --corpus data/mini --code /path/to/an/older/checkout --out before.json

The larger corpora are the base's cuts again under new ids (``<id>_r<k>``, the same audio and codes), so no audio is
made. Every stage runs in a fresh process (the project at ``--code``, default this checkout), which reports its peak
resident memory (``ru_maxrss``), wall time and throughput:

- ``manifest``: open the training manifest as the training recipes do and draw one epoch of batches from the
  token-model sampler (``make_sampler``), the cut side of a training run;
- ``tokenize``: the pipeline's tokenization stage with ``--codec`` over the first ``--tokenize-cuts`` cuts of the
  base, scaled alike (audio is encoded again at every scale, so this base is kept small);
- ``valle``, ``mobilespeech``, ``codec``: ``--steps`` training steps of each recipe (tiny configs: what grows with the
  corpus is the data, not the model), validation on the scaled validation manifest included.

At the largest scale it also lists where the manifest stage's memory is (``tracemalloc``'s largest holders, in a
second, traced run). It prints a table and writes the JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MANIFEST = """
import sys, time, tracemalloc
trace = {trace}
from tts.data.dataset import make_sampler
try:
    from toolkit.cuts import open_cuts
except ImportError:  # a checkout from before lazy reading: what its recipes did
    from lhotse import CutSet
    open_cuts = None
if trace:  # after the imports: what the data holds, not the modules
    tracemalloc.start(4)
t = time.perf_counter()
cuts = open_cuts({train!r}).cuts if open_cuts else CutSet.from_file({train!r})
sampler = make_sampler(cuts, 60.0, shuffle=True, seed=0, num_buckets=10)
batches = cuts = 0
for batch in sampler:
    batches += 1
    cuts += len(batch)
out = {{"seconds": time.perf_counter() - t, "items": cuts, "batches": batches}}
if trace:
    snapshot = tracemalloc.take_snapshot()
    out["top"] = [f"{{s.size / 2**20:.1f}} MiB {{s.traceback[0].filename.split('site-packages/')[-1]}}:"
                  f"{{s.traceback[0].lineno}}" for s in snapshot.statistics("lineno")[:6]]
print("RESULT " + __import__("json").dumps(out))
"""

TOKENIZE = """
import time
from pathlib import Path
from tts.data.pipeline import Pipeline, PipelineConfig, codec_loader
work = Path({work!r})
t = time.perf_counter()
pipeline = Pipeline(PipelineConfig(corpus_dir=work, work_dir=work, parts=("train",), chunk_size=200))
pipeline.tokenize(codec_loader({codec!r}))
from lhotse import CutSet
n = sum(1 for _ in CutSet.from_jsonl_lazy(work / "cuts_train.jsonl.gz"))
print("RESULT " + __import__("json").dumps({{"seconds": time.perf_counter() - t, "items": n}}))
"""


def scaled_manifest(source: Path, target: Path, scale: int, limit: int = 0) -> int:
    """``source``'s cuts (the first ``limit``, 0: all) ``scale`` times, copies under new ids; returns the count."""
    written = 0
    with gzip.open(source, "rt") as f_in, gzip.open(target, "wt") as f_out:
        lines = [line for i, line in enumerate(f_in) if not limit or i < limit]
        for k in range(scale):
            for line in lines:
                cut = json.loads(line)
                if k:
                    cut["id"] = f"{cut['id']}_r{k}"
                    for sup in cut.get("supervisions", []):
                        sup["id"] = f"{sup['id']}_r{k}"
                f_out.write(json.dumps(cut) + "\n")
                written += 1
    return written


def run_stage(command: list, code: Path, cwd: Path, env: dict) -> dict:
    """Run one stage; its peak RSS (MiB), wall seconds and the RESULT line it printed, if any."""
    env = {**os.environ, **env, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    result = {"peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "wall_s": round(time.perf_counter() - started, 1)}
    if proc.returncode != 0:
        raise SystemExit(f"stage failed: {' '.join(map(str, command))[:200]}\n{output[-3000:]}")
    for line in output.splitlines():
        if line.startswith("RESULT "):
            result.update(json.loads(line[len("RESULT "):]))
    return result


def training_stage(recipe: str, config: str, train: Path, valid: Path, steps: int, out: Path, code: Path,
                   extra: list) -> dict:
    command = [sys.executable, str(code / recipe), "--config", str(code / config), "--train-cuts", str(train),
               "--valid-cuts", str(valid), "--out-dir", str(out), "--wandb", "disabled", "--threads", "1",
               "--set", f"train.max_steps={steps}", f"train.validate_every={steps}", f"train.log_every={steps}",
               f"train.checkpoint_every={steps}", *extra]
    result = run_stage(command, code, out.parent, {"ACCELERATE_USE_CPU": "1"})
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    throughput = [v for m in metrics for k, v in m.items() if k.endswith("_per_second")]
    result["throughput"] = round(throughput[-1], 1) if throughput else None
    result["step_s"] = round(next(m["call/seconds"] for m in metrics if "call/seconds" in m) / steps, 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True, help="a prepared, tokenized corpus folder")
    parser.add_argument("--codec", type=Path, help="the codec its cuts were tokenized with (default: bundled)")
    parser.add_argument("--code", type=Path, default=ROOT, help="the project checkout to measure")
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--stages", nargs="+", default=["manifest", "tokenize", "valle", "mobilespeech", "codec"])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--tokenize-cuts", type=int, default=25)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    code = args.code.resolve()
    codec = str((args.codec or ROOT / "codec" / "assets" / "languagecodec-mini").resolve())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for scale in args.scales:
            folder = tmp / f"x{scale}"
            folder.mkdir()
            train, valid = folder / "cuts_train.jsonl.gz", folder / "cuts_test.jsonl.gz"
            n = scaled_manifest(args.corpus / "cuts_train.jsonl.gz", train, scale)
            scaled_manifest(args.corpus / "cuts_test.jsonl.gz", valid, scale)
            (folder / "symbols.json").write_text((args.corpus / "symbols.json").read_text())
            for raw in ("train", "test"):
                scaled_manifest(args.corpus / f"cuts_{raw}.raw.jsonl.gz", folder / f"cuts_{raw}.raw.jsonl.gz", scale)
            for stage in args.stages:
                if stage == "manifest":
                    script = MANIFEST.format(train=str(train), trace=False)
                    result = run_stage([sys.executable, "-c", script], code, folder, {})
                    if scale == max(args.scales):  # a second run, traced (tracemalloc costs memory and time)
                        script = MANIFEST.format(train=str(train), trace=True)
                        result["top"] = run_stage([sys.executable, "-c", script], code, folder, {}).get("top")
                elif stage == "tokenize":
                    work = folder / "tok"
                    work.mkdir()
                    count = scaled_manifest(args.corpus / "cuts_train.phon.jsonl.gz", work / "cuts_train.phon.jsonl.gz",
                                            scale, args.tokenize_cuts)
                    result = run_stage([sys.executable, "-c", TOKENIZE.format(work=str(work), codec=codec)], code,
                                       folder, {})
                    result["cuts"] = count
                elif stage in ("valle", "mobilespeech"):
                    result = training_stage(f"recipes/{stage}/train.py", f"recipes/{stage}/configs/tiny.yaml", train,
                                            valid, args.steps, folder / stage, code, ["--codec", codec])
                elif stage == "codec":
                    result = training_stage("recipes/codec/train.py", "recipes/codec/configs/tiny.yaml",
                                            folder / "cuts_train.raw.jsonl.gz", folder / "cuts_test.raw.jsonl.gz",
                                            args.steps, folder / "codec", code, [])
                else:
                    raise SystemExit(f"unknown stage {stage}")
                row = {"scale": scale, "train_cuts": n, "stage": stage, **result}
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(f"\n{'stage':<14}" + "".join(f"{f'x{s} peak MiB':>15}" for s in args.scales) + f"{'growth':>9}")
    for stage in args.stages:
        peaks = [r["peak_rss_mib"] for r in rows if r["stage"] == stage]
        print(f"{stage:<14}" + "".join(f"{p:>15.1f}" for p in peaks) + f"{(peaks[-1] / peaks[0] - 1) * 100:>8.1f}%")
    if args.out:
        args.out.write_text(json.dumps({"corpus": str(args.corpus), "code": str(code), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
