"""How memory and time grow with the corpus: each data stage on corpora 1x, 4x and 16x a prepared base corpus.

    python benchmarks/data_scale.py --corpus data/mini --out scale.json
    python benchmarks/data_scale.py --corpus data/mini --code /path/to/an/older/checkout --out before.json

The larger corpora are the base's cuts again under new ids (``<id>_r<k>``, the same audio and codes), so no audio is
made. Every stage runs in a fresh process (the project at ``--code``, default this checkout), which reports its peak
resident memory (``ru_maxrss``), wall time and throughput:

- ``prepare``: the pipeline's manifest preparation (the LibriTTS-layout reader, resampling, duration filter, the raw
  cut manifest written) on a LibriTTS-layout corpus of links to the base's audio (``--prepare-cuts``, default all);
- ``phonemize``: the pipeline's phonemization (espeak-ng, exact durations of the synthetic voices) of the first
  ``--phonemize-cuts`` cuts of the base, scaled alike;
- ``manifest``: open the training manifest as the training recipes do and draw one epoch of batches from the
  token-model sampler (``make_sampler``), the cut side of a training run;
- ``tokenize``: the pipeline's tokenization stage with ``--codec`` over the first ``--tokenize-cuts`` cuts of the
  base, scaled alike (audio is encoded again at every scale, so this base is kept small);
- ``valle``, ``mobilespeech``, ``codec``: ``--steps`` training steps of each recipe (tiny configs: what grows with the
  corpus is the data, not the model), validation on the scaled validation manifest included.

Besides the growth from the smallest to the largest scale, the table gives it per added cut (KiB), and what that
constant would add at LibriTTS's 375,086 utterances. At the largest scale it also lists where the prepare and manifest
stages' memory is (``tracemalloc``'s largest holders, in a
second, traced run). It prints a table and writes the JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRITTS = 375_086  # utterances in all LibriTTS parts

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


PIPELINE = """
import time, tracemalloc
from pathlib import Path
from lhotse import load_manifest_lazy
from tts.data.pipeline import Pipeline, PipelineConfig
trace = {trace}
if trace:  # after the imports: what the data holds, not the modules
    tracemalloc.start(4)
work = Path({work!r})
t = time.perf_counter()
pipeline = Pipeline(PipelineConfig(corpus_dir=Path({corpus!r}), work_dir=work, parts=("train",)))
pipeline.{stage}()
out = {{"seconds": time.perf_counter() - t}}
if trace:
    snapshot = tracemalloc.take_snapshot()  # the stages stream: what is left is what grew
    out["top"] = [f"{{s.size / 2**20:.1f}} MiB {{s.traceback[0].filename.split('site-packages/')[-1]}}:"
                  f"{{s.traceback[0].lineno}}" for s in snapshot.statistics("lineno")[:6]]
out["items"] = sum(1 for _ in load_manifest_lazy(work / {output!r}))
print("RESULT " + __import__("json").dumps(out))
"""


def scaled_corpus(source: Path, target: Path, scale: int, limit: int = 0) -> int:
    """A LibriTTS-layout corpus (``target/train/<speaker>/<chapter>/``: WAV links, ``.trans.tsv``, ``.book.tsv``) of
    ``source``'s cuts (the first ``limit``, 0: all) ``scale`` times, copy k in chapter ``<chapter>r<k>`` of the same
    speaker; returns the number of utterances."""
    tables = {}  # (speaker, chapter) -> [(utterance rest of the id, wav, text)]
    with gzip.open(source, "rt") as f:
        for i, line in enumerate(f):
            if limit and i >= limit:
                break
            cut = json.loads(line)
            speaker, chapter, rest = cut["recording"]["id"].split("_", 2)
            text = cut["supervisions"][0]["text"].replace("\t", " ")
            tables.setdefault((speaker, chapter), []).append((rest, cut["recording"]["sources"][0]["source"], text))
    written = 0
    for k in range(scale):
        for (speaker, chapter), rows in tables.items():
            chapter_k = f"{chapter}r{k}" if k else chapter
            folder = target / "train" / speaker / chapter_k
            folder.mkdir(parents=True, exist_ok=True)
            trans, book = [], []
            for rest, wav, text in rows:
                utterance = f"{speaker}_{chapter_k}_{rest}"
                (folder / f"{utterance}.wav").symlink_to(wav)
                trans.append(f"{utterance}\t{text}\t{text}\n")
                book.append(f"{utterance}\t{text}\t30.0\n")
                written += 1
            (folder / f"{speaker}_{chapter_k}.trans.tsv").write_text("".join(trans))
            (folder / f"{speaker}_{chapter_k}.book.tsv").write_text("".join(book))
    return written


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
                   extra: list, workers: int = 0) -> dict:
    command = [sys.executable, str(code / recipe), "--config", str(code / config), "--train-cuts", str(train),
               "--valid-cuts", str(valid), "--out-dir", str(out), "--wandb", "disabled", "--threads", "1",
               "--set", f"train.max_steps={steps}", f"train.validate_every={steps}", f"train.log_every={steps}",
               f"train.checkpoint_every={steps}", f"train.num_workers={workers}", *extra]
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
    parser.add_argument("--stages", nargs="+",
                        default=["prepare", "phonemize", "manifest", "tokenize", "valle", "mobilespeech", "codec"])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--tokenize-cuts", type=int, default=25)
    parser.add_argument("--prepare-cuts", type=int, default=0, help="base of the prepare stage (0: all)")
    parser.add_argument("--phonemize-cuts", type=int, default=1000,
                        help="base of the phonemize stage (espeak-ng timing synthesizes the synthetic voices again)")
    parser.add_argument("--num-workers", type=int, default=0,
                        help="DataLoader workers of the training stages (peak RSS: the largest process)")
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
            (folder / "symbols.json").write_text((args.corpus / "symbols.json").read_text())
            counts = {}
            if {"manifest", "valle", "mobilespeech"} & set(args.stages):
                counts["tokens"] = scaled_manifest(args.corpus / "cuts_train.jsonl.gz", train, scale)
                scaled_manifest(args.corpus / "cuts_test.jsonl.gz", valid, scale)
            if "codec" in args.stages:
                counts["codec"] = scaled_manifest(args.corpus / "cuts_train.raw.jsonl.gz",
                                                  folder / "cuts_train.raw.jsonl.gz", scale)
                scaled_manifest(args.corpus / "cuts_test.raw.jsonl.gz", folder / "cuts_test.raw.jsonl.gz", scale)
            for stage in args.stages:
                if stage == "prepare":
                    corpus, work = folder / "corpus", folder / "prepare"
                    count = scaled_corpus(args.corpus / "cuts_train.raw.jsonl.gz", corpus, scale, args.prepare_cuts)
                    script = dict(work=str(work), corpus=str(corpus), stage="prepare", output="cuts_train.raw.jsonl.gz")
                    result = run_stage([sys.executable, "-c", PIPELINE.format(trace=False, **script)], code, folder, {})
                    if scale == max(args.scales):
                        shutil.rmtree(work)
                        result["top"] = run_stage([sys.executable, "-c", PIPELINE.format(trace=True, **script)], code,
                                                  folder, {}).get("top")
                    result["cuts"] = count
                    shutil.rmtree(corpus)
                elif stage == "phonemize":
                    work = folder / "phonemize"
                    work.mkdir()
                    count = scaled_manifest(args.corpus / "cuts_train.raw.jsonl.gz", work / "cuts_train.raw.jsonl.gz",
                                            scale, args.phonemize_cuts)
                    script = dict(work=str(work), corpus=str(work), stage="phonemize",
                                  output="cuts_train.phon.jsonl.gz")
                    result = run_stage([sys.executable, "-c", PIPELINE.format(trace=False, **script)], code, folder, {})
                    result["cuts"] = count
                elif stage == "manifest":
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
                                            valid, args.steps, folder / stage, code, ["--codec", codec],
                                            args.num_workers)
                elif stage == "codec":
                    result = training_stage("recipes/codec/train.py", "recipes/codec/configs/tiny.yaml",
                                            folder / "cuts_train.raw.jsonl.gz", folder / "cuts_test.raw.jsonl.gz",
                                            args.steps, folder / "codec", code, [], args.num_workers)
                else:
                    raise SystemExit(f"unknown stage {stage}")
                row = {"scale": scale, "train_cuts": counts.get("codec" if stage == "codec" else "tokens"),
                       "stage": stage, **result}
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(f"\n{'stage':<14}" + "".join(f"{f'x{s} peak MiB':>15}" for s in args.scales)
          + f"{'growth':>9}{'KiB/cut':>9}{'LibriTTS MiB':>14}")
    for stage in args.stages:
        mine = [r for r in rows if r["stage"] == stage]
        peaks = [r["peak_rss_mib"] for r in mine]
        cuts = [r.get("cuts") or r["train_cuts"] for r in mine]
        per_cut = (peaks[-1] - peaks[0]) / max(cuts[-1] - cuts[0], 1)  # MiB per added cut
        print(f"{stage:<14}" + "".join(f"{p:>15.1f}" for p in peaks) + f"{(peaks[-1] / peaks[0] - 1) * 100:>8.1f}%"
              + f"{per_cut * 1024:>9.2f}{peaks[0] + per_cut * (LIBRITTS - cuts[0]):>14.0f}")
        for line in mine[-1].get("top") or []:
            print(f"    {line}")
    if args.out:
        args.out.write_text(json.dumps({"corpus": str(args.corpus), "code": str(code), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
