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
budget (--threads). A paper-scale run is the same command with a config pointing at LibriTTS.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict

import torch
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "recipes" / "mini"))

from codec import load_codec  # noqa: E402
from codec.training import CodecTrainer, load_train_config  # noqa: E402
from tts import evaluation  # noqa: E402
from tts.ablation import codebook_entropy, codec_scores, plot_results, report  # noqa: E402
from tts.data.dataset import cut_codes  # noqa: E402
from tts.data.pipeline import PipelineConfig, run as run_pipeline  # noqa: E402
from tts.synthesizer import Synthesizer  # noqa: E402
from tts.text import SymbolTable  # noqa: E402
from tts.training import TokenTrainer, codec_dimensions, load_token_train_config  # noqa: E402

KINDS = ("mcrvq", "rvq")
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
            print(f"[ablation] {stage}", flush=True)
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

    # Stages -----------------------------------------------------------------------------------------------------

    def corpus(self) -> None:
        import prepare as mini  # recipes/mini/prepare.py

        c = self.config["corpus"]
        mini.build(Path(c["folder"]) if c.get("folder") else None, Path(c["sentences"]), self.out / "corpus",
                   c.get("size", "small"))

    def data(self) -> None:
        run_pipeline(PipelineConfig(self.out / "corpus", self.out / "data", PARTS), codec=None)

    def codec(self, kind: str) -> None:
        c = self.config["codec"]
        overrides = list(c.get("set", [])) + [f"codec_overrides.quantizer.kind={kind}",
                                              f"train.max_steps={c['max_steps']}"]
        config = load_train_config(c["config"], overrides)
        from lhotse import CutSet

        cuts = CutSet.from_file(self.out / "data" / "cuts_train.raw.jsonl.gz")
        trainer = CodecTrainer(config, cuts, self.out / f"codec_{kind}")
        trainer.resume()
        trainer.train()
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
                                         list(c.get("set", [])) + [f"train.max_steps={c['max_steps']}"])
        cuts = CutSet.from_file(self.out / f"tokens_{kind}" / "cuts_train.jsonl.gz")
        trainer = TokenTrainer(config, cuts, symbols, self.out / f"{model}_{kind}", codec=codec)
        trainer.resume()
        trainer.train()
        trainer.export(self.out / f"{model}_{kind}" / "release")

    def eval(self) -> None:
        from lhotse import CutSet

        e = self.config["eval"]
        clips = Path(e["clips"])
        rows = [r for r in evaluation.read_clips(clips) if r["role"] == "full_utterance" and
                r["transcript"] != "unknown"][: e.get("codec_clips", 10)]
        scorer = evaluation.Scorer(e.get("asr_model"), e.get("speaker_model"), e.get("dnsmos", True)).check()
        results: Dict[str, dict] = {"codec": {}, "entropy": {}, "tts": {}}
        for kind in KINDS:
            codec = load_codec(self.out / f"codec_{kind}" / "release")
            results["codec"][kind] = codec_scores(codec, clips, rows, scorer)
            cuts = CutSet.from_file(self.out / f"tokens_{kind}" / "cuts_train.jsonl.gz")
            results["entropy"][kind] = codebook_entropy([cut_codes(c) for c in cuts], codec.codebook_size)
        jobs = evaluation.zero_shot_pairs(evaluation.read_clips(clips))[: e.get("tts_targets", 10)]
        for model in self.models():
            for kind in KINDS:
                synth = Synthesizer.from_pretrained(self.out / f"{model}_{kind}" / "release", model)
                folder = self.out / "eval" / f"{model}_{kind}"
                items = evaluation.zero_shot_items(synth, clips, jobs, folder / "audio", model, seed=0)
                mine = [item for item in items if item.system == model]
                evaluation.score_and_write(mine, folder, scorer)
                summary = json.loads((folder / "scores.json").read_text())["summary"][model]
                results["tts"][f"{model}_{kind}"] = summary
        evaluation.write_text(self.out / "results.json", json.dumps(results, indent=1) + "\n")

    def report(self) -> None:
        results = json.loads((self.out / "results.json").read_text())
        c = self.config
        setup = (f"Corpus: `{c['corpus'].get('folder')}` + espeak voices (size `{c['corpus'].get('size')}`). "
                 f"Codec: `{c['codec']['config']}`, {c['codec']['max_steps']} steps per quantizer. Token models: "
                 + ", ".join(f"{m} (`{v['config']}`, {v['max_steps']} steps)" for m, v in
                             c.get("token_models", {}).items())
                 + f". Evaluation clips: `{c['eval']['clips']}`. Command: `python recipes/ablation/run.py "
                 f"--config {c.get('_path', '...')} --out-dir {self.out}`.")
        evaluation.write_text(self.out / "report.md", report(results, setup, plot_results(results, self.out)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--stages", nargs="*", help="run only these stages")
    parser.add_argument("--force", nargs="*", default=[], help="rerun these stages even if done")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = yaml.safe_load(args.config.read_text())
    config["_path"] = str(args.config)
    ablation = Ablation(config, args.out_dir, args.force)
    unknown = set(args.stages or ()) - set(ablation.stages())
    if unknown:
        parser.error(f"unknown stage(s) {', '.join(sorted(unknown))}; stages: {' '.join(ablation.stages())}")
    ablation.run(args.stages)
    print(f"[ablation] report: {args.out_dir / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
