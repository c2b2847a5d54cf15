"""The MCRVQ ablation end to end, as one staged, re-runnable command.

    python recipes/ablation/run.py --config recipes/ablation/configs/mini.yaml --out-dir runs/ablation_mini

Stages, in order (a finished stage is skipped; a killed training stage resumes from its last checkpoint):
  corpus                    the mini corpus (recipes/mini) from a folder of speech plus espeak voices
  data                      Lhotse manifests and phonemes (tts.data.pipeline), shared by both codecs
  codec_mcrvq, codec_rvq    the codec trained twice, identical except the quantizer
  tokens_mcrvq, tokens_rvq  the corpus tokenized with each codec (same symbol table)
  <model>_<quantizer>       each token model (valle, mobilespeech) trained on each tokenization
  eval                      codec reconstruction at 1/3/4/8 codebooks, codebook-1 entropy, zero-shot TTS
  report                    <out-dir>/report.md and results.json
--stages runs a subset (e.g. --stages eval report); --force reruns the named stages. Every process shares one
budget (--threads); independent stages (e.g. valle_rvq and mobilespeech_rvq) can run as separate processes at once.
The eval stage keeps each finished part under <out-dir>/eval, so a re-run only scores what is missing, and it can
start before every model is trained (it scores what is ready and says what is not).
A paper-scale run is the same command with a config pointing at LibriTTS.

Config keys beyond the obvious (see configs/*.yaml):
  <training section>.max_steps    length of the learning-rate schedule (train.max_steps of the run config)
  <training section>.steps        where training stops (default: max_steps); a short budget on a long schedule
  <training section>.resume_from  {quantizer: checkpoint}: start that run from a checkpoint of an earlier run with
                                  the same settings (checked) instead of from scratch
  reuse                           {stage: folder}: an earlier run's output for a data stage (corpus, data,
                                  tokens_<quantizer>), linked into <out-dir> and not recomputed
  discussion                      a Markdown file appended to the report
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from dataclasses import dataclass, field
from typing import Dict, Optional

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from codec import load_codec  # noqa: E402
from toolkit.config import build  # noqa: E402
from toolkit.config import read_yaml  # noqa: E402
from toolkit.runs import run_cli  # noqa: E402
from codec.training import CodecTrainer, load_train_config  # noqa: E402
from tts import evaluation  # noqa: E402
from recipes.ablation.report import codec_scores, plot_results, report  # noqa: E402
from recipes.eval.protocol import read_clips, zero_shot_items, zero_shot_pairs  # noqa: E402
from tts.data.corpus import build_mini_corpus  # noqa: E402
from tts.data.dataset import cut_codes  # noqa: E402
from tts.data.pipeline import PipelineConfig, run as run_pipeline  # noqa: E402
from tts.synthesizer import Synthesizer  # noqa: E402
from tts.text import SymbolTable  # noqa: E402
from tts.training import TokenTrainer, codec_dimensions, load_token_train_config  # noqa: E402

KINDS = ("mcrvq", "rvq")
# Run settings that do not change what is trained (resume_from ignores them when it compares two runs' settings).
BOOKKEEPING = {"log_every", "checkpoint_every", "keep_checkpoints", "validate_every", "validation_clips",
               "validation_batches", "num_workers"}
PARTS = ("train", "test")


class Ablation:
    def __init__(self, config: dict, out: Path, force=()):
        self.config, self.out, self.force = config, out, set(force)
        (out / ".done").mkdir(parents=True, exist_ok=True)

    def models(self):
        return list(self.config.get("token_models", {}))

    def stages(self):
        names = ["corpus", "data"] + [f"codec_{k}" for k in KINDS] + [f"tokens_{k}" for k in KINDS]
        names += [f"{m}_{k}" for m in self.models() for k in KINDS]
        return names + ["eval", "report"]

    def run(self, only=None) -> None:
        for stage in self.stages():
            if only and stage not in only:
                continue
            marker = self.out / ".done" / stage
            if marker.exists() and stage not in self.force:
                print(f"[ablation] {stage}: done")
                continue
            if stage in self.config.get("reuse", {}):
                self.reuse(stage, Path(self.config["reuse"][stage]))
                marker.write_text("reused\n")
                continue
            print(f"[ablation] {stage}", flush=True)
            started = time.perf_counter()
            name, _, kind = stage.partition("_")
            if stage in ("corpus", "data", "eval", "report"):
                getattr(self, stage)()
            elif name == "codec":
                self.codec(kind)
            elif name == "tokens":
                self.tokens(kind)
            else:
                self.token_model(stage.rsplit("_", 1)[0], stage.rsplit("_", 1)[1])
            marker.write_text("done\n")
            print(f"[ablation] {stage} took {time.perf_counter() - started:.1f} s", flush=True)

    def reuse(self, stage: str, folder: Path) -> None:
        if stage not in ("corpus", "data") and not stage.startswith("tokens_"):
            raise SystemExit(f"reuse: {stage} is not a data stage (training stages take resume_from)")
        if not folder.is_dir():
            raise SystemExit(f"reuse: {folder} (for {stage}) is not a folder")
        link = self.out / stage
        if link.is_symlink():
            link.unlink()
        elif link.exists():
            raise SystemExit(f"reuse: {link} exists; remove it or drop {stage} from reuse")
        link.symlink_to(folder.resolve(), target_is_directory=True)
        print(f"[ablation] {stage}: reused {folder}")

    def start(self, trainer, section: dict, kind: str) -> None:
        """Resume the stage's own run, or else start it from ``resume_from[kind]`` after checking that the earlier
        run had the same settings."""
        if trainer.resume():
            return
        checkpoint = (section.get("resume_from") or {}).get(kind)
        if not checkpoint:
            return
        checkpoint = Path(checkpoint)
        theirs = json.loads((checkpoint.parent.parent / "train_config.json").read_text())
        ours = json.loads((trainer.out / "train_config.json").read_text())
        differ = sorted(flat_diff(theirs, ours) - BOOKKEEPING)
        if differ:
            raise SystemExit(f"resume_from {checkpoint}: its run's settings differ in {', '.join(differ)}")
        trainer.resume(checkpoint)
        print(f"[ablation] started from {checkpoint} (step {trainer.step})")

    # Stages -----------------------------------------------------------------------------------------------------

    def corpus(self) -> None:
        c = self.config["corpus"]
        build_mini_corpus(Path(c["folder"]) if c.get("folder") else None, Path(c["sentences"]), self.out / "corpus",
                          c.get("size", "small"))

    def data(self) -> None:
        run_pipeline(PipelineConfig(self.out / "corpus", self.out / "data", PARTS), codec=None)

    def codec(self, kind: str) -> None:
        c = self.config["codec"]
        overrides = list(c.get("set", [])) + [f"codec.quantizer.kind={kind}"] + schedule(c)
        config = load_train_config(c["config"], overrides)
        from lhotse import CutSet

        cuts = CutSet.from_file(self.out / "data" / "cuts_train.raw.jsonl.gz")
        trainer = CodecTrainer(config, cuts, self.out / f"codec_{kind}")
        self.start(trainer, c, kind)
        trainer.train(max_steps=c.get("steps"))
        trainer.export(self.out / f"codec_{kind}" / "release")

    def tokens(self, kind: str) -> None:
        run_pipeline(PipelineConfig(self.out / "corpus", self.out / f"tokens_{kind}", PARTS,
                                    symbols=self.out / "data" / "symbols.json"),
                     codec=self.out / f"codec_{kind}" / "release")

    def token_model(self, model: str, kind: str) -> None:
        from lhotse import CutSet

        c = self.config["token_models"][model]
        codec = str(self.out / f"codec_{kind}" / "release")
        dims = codec_dimensions(codec)
        symbols = SymbolTable.load(self.out / "data" / "symbols.json")
        config = load_token_train_config(c["config"], len(symbols), dims["num_codebooks"], dims["codebook_size"],
                                         list(c.get("set", [])) + schedule(c))
        cuts = CutSet.from_file(self.out / f"tokens_{kind}" / "cuts_train.jsonl.gz")
        trainer = TokenTrainer(config, cuts, symbols, self.out / f"{model}_{kind}", codec=codec)
        self.start(trainer, c, kind)
        trainer.train(max_steps=c.get("steps"))
        trainer.export(self.out / f"{model}_{kind}" / "release")

    def part(self, name: str, compute, *args):
        """An eval part's result from ``<out-dir>/eval/<name>.json``, computed (and kept) when absent."""
        path = self.out / "eval" / f"{name}.json"
        if path.is_file():
            return json.loads(path.read_text())
        value = compute(*args)
        path.parent.mkdir(parents=True, exist_ok=True)
        evaluation.write_text(path, json.dumps(value, indent=1) + "\n")
        return value

    def eval(self) -> None:
        e = self.config["eval"]
        clips = Path(e["clips"])
        rows = [r for r in read_clips(clips) if r["role"] == "full_utterance" and r["transcript"] != "unknown"]
        durations = {r["file"]: float(r.get("duration_s") or 0) for r in read_clips(clips)}
        if e.get("shortest_first"):
            rows.sort(key=lambda r: durations[r["file"]])
        rows = rows[: e.get("codec_clips", 10)]
        scorer = evaluation.Scorer(e.get("asr_model"), e.get("speaker_model"), e.get("dnsmos", True)).check()
        results: Dict[str, dict] = {"codec": {}, "entropy": {}, "tts": {}}
        missing = []
        for kind in KINDS:
            release = self.out / f"codec_{kind}" / "release"
            if not (release / "config.json").is_file():
                missing.append(f"codec_{kind}")
                continue
            codec = load_codec(release)
            results["codec"][kind] = self.part(f"codec_{kind}", codec_scores, codec, clips, rows, scorer)
            cuts = self.out / f"tokens_{kind}" / "cuts_train.jsonl.gz"
            if not cuts.is_file():
                missing.append(f"tokens_{kind}")
                continue
            results["entropy"][kind] = self.part(f"entropy_{kind}", token_entropy, cuts, codec.codebook_size)
        jobs = zero_shot_pairs(read_clips(clips))
        if e.get("shortest_first"):
            jobs.sort(key=lambda job: durations[job["target"]])
        jobs = jobs[: e.get("tts_targets", 10)]
        truth = [evaluation.Item(audio=str(clips / job["target"]), text=job["text"],
                                 speaker_reference=str(clips / job["prompt"]), system="ground truth") for job in jobs]
        results["tts_reference"] = self.part("tts_ground_truth",
                                             lambda: evaluation.score_items(truth, scorer)["summary"])
        for model in self.models():
            for kind in KINDS:
                name = f"{model}_{kind}"
                if not (self.out / name / "release" / "config.json").is_file():
                    missing.append(name)
                    continue
                results["tts"][name] = self.part(f"tts_{name}", self.zero_shot, model, kind, clips, jobs, scorer)
        if missing:
            raise SystemExit(f"eval: scored what is ready; not yet trained or tokenized: {', '.join(missing)}")
        evaluation.write_text(self.out / "results.json", json.dumps(results, indent=1) + "\n")

    def zero_shot(self, model: str, kind: str, clips: Path, jobs, scorer) -> dict:
        name = f"{model}_{kind}"
        folder = self.out / "eval" / name
        synth = Synthesizer.from_pretrained(self.out / name / "release", model)
        items = zero_shot_items(synth, clips, jobs, folder / "audio", model, seed=0)
        evaluation.score_and_write([item for item in items if item.system == model], folder, scorer)
        return json.loads((folder / "scores.json").read_text())["summary"][model]

    def report(self) -> None:
        results = json.loads((self.out / "results.json").read_text())
        c = self.config
        e = c["eval"]
        setup = (f"Corpus: `{c['corpus'].get('folder')}` + espeak voices (size `{c['corpus'].get('size')}`). "
                 f"Codec: `{c['codec']['config']}`, {budget(c['codec'])} per quantizer. Token models: "
                 + ", ".join(f"{m} (`{v['config']}`, {budget(v)})" for m, v in c.get("token_models", {}).items())
                 + f". Evaluation: {e.get('codec_clips', 10)} clips for the codecs and {e.get('tts_targets', 10)} "
                 f"zero-shot targets from `{e['clips']}`. Command: `python recipes/ablation/run.py "
                 f"--config {c.get('_path', '...')} --out-dir {self.out}`.")
        text = report(results, setup, plot_results(results, self.out))
        if c.get("discussion"):
            text += "\n" + Path(c["discussion"]).read_text()
        evaluation.write_text(self.out / "report.md", text)


def token_entropy(cuts: Path, codebook_size: int) -> dict:
    from lhotse import CutSet

    return evaluation.codebook_entropy([cut_codes(c) for c in CutSet.from_file(cuts)], codebook_size)


def budget(section: dict) -> str:
    steps, length = section.get("steps"), section.get("max_steps")
    if steps and length and steps != length:
        return f"{steps} steps of a {length}-step learning-rate schedule"
    return f"{steps or length} steps" if steps or length else "the run config's steps"


def schedule(section: dict) -> list:
    return [f"train.max_steps={section['max_steps']}"] if "max_steps" in section else []


def flat_diff(a, b, prefix: str = "") -> set:
    """The dotted keys where two JSON trees differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return set().union(*[flat_diff(a.get(k), b.get(k), f"{prefix}{k}.") for k in set(a) | set(b)])
    return set() if a == b else {prefix.rstrip(".")}


@dataclass(frozen=True)
class CorpusSection:
    folder: Optional[str] = None
    sentences: Optional[str] = None
    size: str = "small"


@dataclass(frozen=True)
class TrainingSection:
    config: str = ""
    max_steps: Optional[int] = None
    steps: Optional[int] = None
    set: tuple = ()
    resume_from: Optional[Dict[str, str]] = None


@dataclass(frozen=True)
class TokenModelsSection:
    valle: Optional[TrainingSection] = None
    mobilespeech: Optional[TrainingSection] = None


@dataclass(frozen=True)
class EvalSection:
    clips: str = "../shared/speech"
    codec_clips: int = 10
    tts_targets: int = 10
    shortest_first: bool = False  # take the shortest clips and targets (smoke runs), not the manifest's first
    dnsmos: bool = True
    asr_model: Optional[str] = None
    speaker_model: Optional[str] = None


@dataclass(frozen=True)
class AblationConfig:
    """The schema of an ablation config (the stages read the checked mapping itself, with these defaults)."""

    corpus: CorpusSection = field(default_factory=CorpusSection)
    codec: TrainingSection = field(default_factory=TrainingSection)
    token_models: TokenModelsSection = field(default_factory=TokenModelsSection)
    eval: EvalSection = field(default_factory=EvalSection)
    reuse: Optional[Dict[str, str]] = None
    discussion: Optional[str] = None


def check_config(config: dict, path: Path) -> None:
    """Every section and key of an ablation config is one this recipe reads; else a ``ValueError`` naming it."""
    try:
        build(AblationConfig, config)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: {err}") from None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--set", nargs="*", action="extend", default=[],  # repeatable
                        metavar="SECTION.KEY=VALUE", help="config overrides")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--stages", nargs="*", help="run only these stages")
    parser.add_argument("--force", nargs="*", default=[], help="rerun these stages even if done")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = read_yaml(args.config, args.set)
    check_config(config, args.config)
    config["_path"] = str(args.config)
    ablation = Ablation(config, args.out_dir, args.force)
    unknown = set(args.stages or ()) - set(ablation.stages())
    if unknown:
        parser.error(f"unknown stage(s) {', '.join(sorted(unknown))}; stages: {' '.join(ablation.stages())}")
    ablation.run(args.stages)
    if (args.out_dir / "report.md").is_file():
        print(f"[ablation] report: {args.out_dir / 'report.md'}")
    return 0


if __name__ == "__main__":
    run_cli(main)
