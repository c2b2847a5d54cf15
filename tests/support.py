"""Helpers shared by several test modules (fixtures live in the conftest files)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Sequence

import pytest
import torch
from lhotse import CutSet

from tts.text import SymbolTable


def corpus_data(built):
    """(training cuts, symbol table, tiny codec directory) of the smoke corpus fixture ``built``."""
    root, config, _ = built
    cuts = CutSet.from_file(config.work_dir / "cuts_train.jsonl.gz").to_eager()
    return cuts, SymbolTable.load(config.work_dir / "symbols.json"), root / "codec"


def weights(trainer):
    """A copy of a trainer's model weights."""
    return {k: v.detach().clone() for k, v in trainer.unwrapped.state_dict().items()}


def resumed_like_unbroken(config, cuts, symbols, codec, tmp_path):
    """Train a token run to its end in one go, and again stopped at step 3 and resumed; assert that both end with the
    same weights. Returns (unbroken, resumed) trainers."""
    from tts.training import TokenTrainer

    unbroken = TokenTrainer(config, cuts, symbols, tmp_path / "a", codec=str(codec))
    unbroken.train()
    first = TokenTrainer(config, cuts, symbols, tmp_path / "b", codec=str(codec))
    first.train(stop_after=3)
    assert [p.name for p in first.store.list()] == ["step-00000003"]
    resumed = TokenTrainer(config, cuts, symbols, tmp_path / "b", codec=str(codec))
    assert resumed.resume() and resumed.step == 3
    resumed.train()
    a, b = weights(unbroken), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    return unbroken, resumed


ROOT = Path(__file__).resolve().parents[1]
DOC_PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))


def snippets(lang: str) -> List[str]:
    """Every fenced ``lang`` block of README.md and docs/*.md."""
    return [block for page in DOC_PAGES
            for block in re.findall(rf"```{lang}\n(.*?)```", page.read_text(), flags=re.S)]


def snippet(lang: str, *contains: str) -> str:
    """The one fenced ``lang`` block of README.md or docs/*.md that holds every string of ``contains``."""
    found = [b for b in snippets(lang) if all(c in b for c in contains)]
    assert len(found) == 1, f"{len(found)} {lang} blocks hold {contains}"
    return found[0]


def tiny_hf_models(folder):
    """A random HuBERT CTC model with its processor, and a random WavLM x-vector model, saved as local folders."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ'"
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, **{c: i + 5 for i, c in enumerate(letters)}}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    extractor = transformers.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                                      do_normalize=True, return_attention_mask=False)
    tokenizer = transformers.Wav2Vec2CTCTokenizer(str(folder / "vocab.json"), word_delimiter_token="|")
    small = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, conv_dim=(16, 16),
                 conv_stride=(5, 4), conv_kernel=(10, 4), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
    asr = transformers.HubertForCTC(transformers.HubertConfig(vocab_size=len(vocab), **small))
    asr.save_pretrained(folder / "asr")
    transformers.Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder / "asr")
    speaker = transformers.WavLMForXVector(transformers.WavLMConfig(
        tdnn_dim=(16, 16), tdnn_kernel=(3, 1), tdnn_dilation=(1, 1), xvector_output_dim=8, num_buckets=32, **small))
    speaker.save_pretrained(folder / "speaker")
    extractor.save_pretrained(folder / "speaker")
    return folder / "asr", folder / "speaker"


def launch_two_ranks(script: Path, out: Path) -> List[Dict]:
    """Run ``script`` as 2 Accelerate processes on the CPU (DDP over gloo, one thread each) and return what each rank
    wrote to ``out/rank{i}.json``."""
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(script)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((Path(out) / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    return ranks


def accelerate_launch(line: str, cwd: Path, *extra: str) -> subprocess.CompletedProcess:
    """A documented ``accelerate launch recipes/... ARGS`` line run as one CPU process, with ``extra`` arguments."""
    args = shlex.split(line)
    assert args[:2] == ["accelerate", "launch"], line
    proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--cpu",
                           str(ROOT / args[2]), *args[3:], *extra], cwd=cwd, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def synthesize_documented(line: str, cut, cwd: Path):
    """A documented ``tts synthesize ... --prompt prompt.wav ... --out X`` line run in ``cwd`` with ``cut``'s audio as
    ``prompt.wav`` (seed 0); returns ``(audio, rate)`` of what it wrote."""
    import soundfile as sf

    sf.write(Path(cwd) / "prompt.wav", cut.load_audio()[0], cut.sampling_rate)
    args = shlex.split(line)
    assert args[:2] == ["tts", "synthesize"], line
    proc = subprocess.run([sys.executable, "-m", "tts.cli", *args[1:], "--seed", "0"], cwd=cwd, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return sf.read(Path(cwd) / args[args.index("--out") + 1])


def tiny_release(folder: Path, model_type: str = "valle", **changes) -> Path:
    """A release of an untrained tiny ``model_type`` (valle or mobilespeech; ``changes``: fields of its tiny config to
    set otherwise) on the bundled symbol table, with its tiny codec, in ``folder``; returns its directory. It decodes
    in milliseconds: tests of what runs around the model."""
    import dataclasses

    import torch

    from codec import CodecConfig, LanguageCodec
    from tts.models.registry import model_class
    from tts.release import save_token_model
    from tts.synthesizer import BUNDLED_MODELS

    torch.manual_seed(0)
    codec = LanguageCodec(CodecConfig.tiny()).train()
    codec(torch.randn(2, 24000) * 0.1, num_quantizers=8)
    codec.eval().save_pretrained(Path(folder) / "codec")
    symbols = SymbolTable.load(BUNDLED_MODELS / "valle-mini" / "symbols.json")
    cls = model_class(model_type)
    model = cls.build(dataclasses.replace(cls.config_class.tiny(len(symbols)), **changes))
    return save_token_model(model.eval(), Path(folder) / model_type, symbols, codec=str(Path(folder) / "codec"))


def shortest_speaker_clips(clips: Path, out: Path) -> Path:
    """A clip folder in the ``../shared/speech`` layout (``manifest.tsv`` and symlinked files) holding only the
    speaker of the shortest transcribed full utterance that has another clip: zero-shot tests with one target score
    seconds of audio, not the manifest's first target."""
    import csv

    with open(Path(clips) / "manifest.tsv", newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        fields, rows = reader.fieldnames, list(reader)
    count: Dict[str, int] = {}
    for row in rows:
        count[row["speaker_id"]] = count.get(row["speaker_id"], 0) + 1
    targets = [r for r in rows if r["role"] == "full_utterance" and r["transcript"] != "unknown"
               and count[r["speaker_id"]] > 1]
    speaker = min(targets, key=lambda r: float(r["duration_s"]))["speaker_id"]
    keep = [r for r in rows if r["speaker_id"] == speaker]
    out.mkdir(parents=True, exist_ok=True)
    for row in keep:
        (out / row["file"]).symlink_to((Path(clips) / row["file"]).resolve())
    with open(out / "manifest.tsv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
        writer.writeheader()
        writer.writerows(keep)
    return out


def minimal_site(folder: Path, packages: Sequence[str]) -> Path:
    """A folder to put first on ``PYTHONPATH`` so that Python sees, of this environment's installed packages, only
    ``packages`` and what they require (their installed files, linked): a machine that has nothing else. Returns the
    folder (its ``sitecustomize.py`` swaps site-packages for the linked subset)."""
    import importlib.metadata as metadata
    import site

    wanted, todo = {}, list(packages)
    while todo:
        name = re.split(r"[\s;<>=!~\[(]", todo.pop().strip())[0]
        key = name.lower().replace("_", "-")
        if key in wanted:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        wanted[key] = dist
        todo += [req for req in dist.requires or [] if "extra ==" not in req]
    shadow = Path(folder) / "site-packages"
    shadow.mkdir(parents=True)
    installed = Path(site.getsitepackages()[0])
    for dist in wanted.values():
        for top in {Path(str(f)).parts[0] for f in dist.files or []} - {".."}:
            if (installed / top).exists() and not (shadow / top).exists():
                (shadow / top).symlink_to(installed / top)
    (Path(folder) / "sitecustomize.py").write_text(
        "import sys\n"
        f"sys.path[:] = [p for p in sys.path if not p.endswith('site-packages')] + [{str(shadow)!r}]\n")
    return Path(folder)
