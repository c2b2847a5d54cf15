"""The token-model training loop on smoke mini-corpus data: VALL-E overfits, exact resume with accumulation, the
non-finite guard, release export and loading, two CPU processes, config files."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from lhotse import CutSet

from codec import LanguageCodec
from tests.support import corpus_data as data
from tests.support import accelerate_launch, launch_two_ranks, resumed_like_unbroken, snippet, synthesize_documented, \
    weights
from tts.models.base import GenerationRequest
from tts.models.sampling import SamplingConfig, length_limits
from tts.release import ReleaseError, export_runs, load_token_model
from tts.text import SymbolTable
from toolkit.runs import warmup_stable_decay
from tts.training import NonFiniteLossError, TokenTrainer, load_token_train_config, main

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "recipes" / "valle" / "configs"


def tiny(symbols, *overrides):
    return load_token_train_config(CONFIGS / "tiny.yaml", len(symbols), 8, 64, list(overrides))


def test_config_files():
    paper = load_token_train_config(CONFIGS / "paper.yaml", 80, 8, 1024)
    t = paper.model.transformer
    assert (t.layers, t.heads, t.dim, t.ffn_dim, t.dropout) == (12, 16, 1024, 4096, 0.1)
    assert paper.mixed_precision == "bf16" and paper.stages == ("ar", "nar")
    mini = load_token_train_config(CONFIGS / "mini.yaml", 80, 4, 1024, ["train.stages=[ar]",
                                                                       "model.transformer.layers=3"])
    assert mini.model.num_codebooks == 4 and mini.stages == ("ar",) and mini.model.transformer.layers == 3
    with pytest.raises(ValueError, match="no field 'train.lr'"):
        load_token_train_config(CONFIGS / "mini.yaml", 80, 8, 1024, ["train.lr=1"])
    with pytest.raises(ValueError, match="no field 'model.transformer.layerz'"):
        load_token_train_config(CONFIGS / "mini.yaml", 80, 8, 1024, ["model.transformer.layerz=1"])


def test_config_files_of_the_earlier_layout_still_load(tmp_path):
    """``model_type``, ``preset`` and ``model_overrides`` at the top (the layout before one config system), in files,
    ``base:`` chains and ``--set`` overrides, give the same config as today's ``model:`` section."""
    (tmp_path / "old.yaml").write_text("model_type: mobilespeech\npreset: tiny\ntrain: {max_steps: 9}\n")
    (tmp_path / "old_child.yaml").write_text("base: old.yaml\nmodel_overrides: {decoder: {layers: 3}}\n")
    (tmp_path / "new.yaml").write_text("model: {type: mobilespeech, preset: tiny, decoder: {layers: 3}}\n"
                                       "train: {max_steps: 9}\n")
    new = load_token_train_config(tmp_path / "new.yaml", 80, 8, 64)
    assert new.model_type == "mobilespeech" and new.model.decoder.layers == 3 and new.stages == ("smd",)
    assert load_token_train_config(tmp_path / "old_child.yaml", 80, 8, 64) == new
    assert load_token_train_config(tmp_path / "old.yaml", 80, 8, 64, ["model_overrides.decoder.layers=3"]) == new


@pytest.mark.slow
def test_overfits_a_few_utterances_and_exports(built, tmp_path):
    """Two mini-corpus utterances: AR (teacher-forced next code) accuracy reaches ~100%, NAR accuracy ~100% on the
    residual codebooks; the release loads; synthesis from it has the requested shapes."""
    torch.set_num_threads(1)  # d=128 matrices: a second thread only adds synchronization
    cuts, symbols, codec = data(built)
    few = CutSet.from_cuts(list(cuts.sort_by_duration(ascending=True))[:2])
    config = tiny(symbols, "train.max_steps=1200", "train.warmup_steps=20", "train.learning_rate=0.005",
                  "train.min_lr_ratio=0.1", "train.checkpoint_every=100000",
                  "model.transformer.dim=128", "model.transformer.ffn_dim=512")
    trainer = TokenTrainer(config, few, symbols, tmp_path / "run", codec=str(codec))
    first = trainer.validate(few)
    trainer.train()
    results = trainer.validate(few)
    assert first["valid/ar_accuracy"] < 0.3 and first["valid/nar_accuracy"] < 0.3
    assert results["valid/ar_accuracy"] > 0.98 and results["valid/nar_accuracy"] > 0.95, results
    # Per NAR codebook (measured 0.92 / 0.99 / 0.99 / 0.98 / 1.0 / 0.99 / 1.0 for 2..8). Codebook 2 is the slowest:
    # MCRVQ's codebooks 2 and 3 quantize channel thirds that codebook 1 does not see, and one stage is drawn per step.
    model, batch = trainer.unwrapped.eval(), trainer.dataset[few]
    with torch.no_grad():
        per_stage = [float(model(batch, nar_stage=j)["nar"].accuracy) for j in range(1, 8)]
    assert per_stage[0] > 0.88 and min(per_stage[1:]) > 0.95, per_stage
    release = trainer.export(dtype=torch.float32)
    assert sorted(p.name for p in release.iterdir()) == ["config.json", "model.safetensors", "symbols.json"]
    loaded = load_token_model(release)
    assert loaded.model_type == "valle" and loaded.codec == str(codec.resolve())
    assert loaded.codec_sha256 == hashlib.sha256((codec / "model.safetensors").read_bytes()).hexdigest()
    assert torch.equal(loaded.model.ar.head.weight, trainer.unwrapped.ar.head.weight)
    sharded = trainer.export(tmp_path / "sharded", dtype=torch.float32, max_shard_bytes=1 << 20)  # --shard-size-mb 1
    assert (sharded / "model.safetensors.index.json").is_file() and len(list(sharded.glob("model-0*"))) > 1
    assert all(torch.equal(a, b) for a, b in zip(load_token_model(sharded).model.state_dict().values(),
                                                  loaded.model.state_dict().values()))
    # synthesis: a prompt of 40 frames of the first utterance, two texts
    prompt = batch.codes[0, :, :40]
    texts = [batch.phonemes[i, : batch.phoneme_lens[i]] for i in range(2)]
    limits = [length_limits(int(t.numel()), 75) for t in texts]
    out = loaded.model.generate(GenerationRequest(texts, [int(t.numel()) for t in texts], prompt, 75, SamplingConfig(),
                                                  generator=torch.Generator().manual_seed(0)))
    assert len(out) == 2
    for codes, (low, high) in zip(out, limits):
        assert codes.shape[0] == 8 and low <= codes.shape[1] <= high
        assert codes.min() >= 0 and codes.max() < 64


def test_exact_resume_with_accumulation(built, tmp_path):
    cuts, symbols, codec = data(built)
    config = tiny(symbols, "train.max_duration=8", "train.grad_accumulation=2", "train.max_steps=6",
                  "train.checkpoint_every=3", "train.warmup_steps=2")
    unbroken, resumed = resumed_like_unbroken(config, cuts, symbols, codec, tmp_path)
    assert resumed.scheduler.get_last_lr() == unbroken.scheduler.get_last_lr()


def test_curriculum_run_resumes_exactly(built, tmp_path):
    """A run whose first epoch takes only the cuts up to the median length, stopped mid-epoch and resumed, ends with
    the weights of an unbroken one; its first batches hold only short cuts."""
    cuts, symbols, codec = data(built)
    median = float(np.median([c.duration for c in cuts]))
    config = tiny(symbols, "train.max_duration=6", "train.max_steps=6", "train.checkpoint_every=3",
                  f"train.curriculum=[[1, {median}]]")
    assert config.curriculum == ((1, median),)
    fresh = TokenTrainer(config, cuts, symbols, tmp_path / "fresh", codec=str(codec))
    assert all(c.duration <= median for c in next(iter(fresh.sampler)))
    resumed_like_unbroken(config, cuts, symbols, codec, tmp_path)
    with pytest.raises(ValueError, match=r"train.curriculum must be a list of \[epochs, max_seconds\] pairs"):
        tiny(symbols, "train.curriculum=[[0, 3]]")


def test_warmup_stable_decay_schedule():
    factor = warmup_stable_decay(10, 2, 4, 0.1)
    assert [round(factor(s), 6) for s in range(11)] == [0.5, 1, 1, 1, 1, 1, 0.775, 0.55, 0.325, 0.1, 0.1]


def test_a_held_checkpoint_finished_with_a_decay_equals_a_run_planned_with_it(built, tmp_path):
    """A checkpoint of the held phase, copied and resumed with ``max_steps`` two steps later, decays as a run planned
    that way from the start does: the same weights at the end, and the last rate at ``min_lr_ratio``."""
    cuts, symbols, codec = data(built)
    common = ["train.max_duration=6", "train.checkpoint_every=3", "train.warmup_steps=1", "train.min_lr_ratio=0.1"]
    planned = tiny(symbols, *common, "train.max_steps=5", "train.decay_steps=2")
    unbroken = TokenTrainer(planned, cuts, symbols, tmp_path / "planned", codec=str(codec))
    unbroken.train()
    held = TokenTrainer(tiny(symbols, *common, "train.max_steps=100", "train.decay_steps=2"), cuts, symbols,
                        tmp_path / "held", codec=str(codec))
    held.train(stop_after=3)
    assert held.scheduler.get_last_lr() == [planned.learning_rate] * 2
    shutil.copytree(tmp_path / "held", tmp_path / "branch")
    branch = TokenTrainer(planned, cuts, symbols, tmp_path / "branch", codec=str(codec))
    assert branch.resume() and branch.step == 3
    branch.train()
    a, b = weights(unbroken), weights(branch)
    assert branch.step == 5 and all(torch.equal(a[k], b[k]) for k in a)
    assert branch.scheduler.get_last_lr() == pytest.approx([0.1 * planned.learning_rate] * 2)
    with pytest.raises(ValueError, match=r"train.decay_steps \(9\) is more than train.max_steps \(5\)"):
        tiny(symbols, "train.max_steps=5", "train.decay_steps=9")


def test_nonfinite_losses_are_skipped_then_stop(built, tmp_path, monkeypatch):
    cuts, symbols, codec = data(built)
    trainer = TokenTrainer(tiny(symbols, "train.max_nonfinite=2"), cuts, symbols, tmp_path, codec=str(codec))
    batches = trainer.batches()
    trainer.train_step([next(batches)])
    before = weights(trainer)
    forward = trainer.model.forward

    def poisoned(*args, **kwargs):
        out = forward(*args, **kwargs)
        out["ar"].loss = out["ar"].loss * float("nan")
        return out

    monkeypatch.setattr(trainer.model, "forward", poisoned)
    logs = trainer.train_step([next(batches)])
    assert logs["skipped"] == 1.0
    after = weights(trainer)
    assert all(torch.equal(before[k], after[k]) for k in before)
    trainer.train_step([next(batches)])
    with pytest.raises(NonFiniteLossError, match="non-finite losses in 3 steps in a row"):
        trainer.train_step([next(batches)])


def test_a_run_started_from_a_release_continues_from_it(built, tmp_path):
    """``init_from``: an AR-only run (more dropout) from a two-stage release holds the release's AR weights, scores its
    validation loss, far below a fresh model's, at step 0 with a fresh optimizer; releases that cannot start it are
    refused with the reason."""
    cuts, symbols, codec = data(built)
    trained = TokenTrainer(tiny(symbols, "train.max_steps=15", "train.warmup_steps=2"), cuts, symbols, tmp_path / "a",
                           codec=str(codec))
    trained.train()
    release = trained.export()
    config = tiny(symbols, "train.stages=[ar]", "train.max_steps=3", "model.transformer.dropout=0.3")
    fresh = TokenTrainer(config, cuts, symbols, tmp_path / "fresh", codec=str(codec))
    started = TokenTrainer(config, cuts, symbols, tmp_path / "b", codec=str(codec))
    info = started.init_from(release)
    assert info["same_codec"] is True and info["stages"] == ["ar"]
    assert json.loads((tmp_path / "b" / "init_from.json").read_text()) == info
    ours, theirs = weights(started), weights(trained)
    assert set(ours) == {k for k in theirs if k.startswith("ar.")}
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert started.step == 0 and not started.optimizer.state
    expected, loss, scratch = (t.validate(cuts)["valid/ar_loss"] for t in (trained, started, fresh))
    assert loss == pytest.approx(expected, rel=1e-6) and loss < scratch - 0.5
    started.train()  # and it trains on
    assert started.step == 3

    with pytest.raises(ValueError, match="transformer.layers differ"):
        TokenTrainer(tiny(symbols, "model.transformer.layers=1"), cuts, symbols, tmp_path / "c",
                     codec=str(codec)).init_from(release)
    nar_only = TokenTrainer(tiny(symbols, "train.stages=[nar]", "train.max_steps=1"), cuts, symbols, tmp_path / "d",
                            codec=str(codec))
    nar_only.train()
    with pytest.raises(ValueError, match="holds the stages nar, not ar"):
        TokenTrainer(tiny(symbols), cuts, symbols, tmp_path / "e", codec=str(codec)).init_from(nar_only.export())
    other = SymbolTable(symbols.symbols[:3] + symbols.symbols[:2:-1], symbols.frontend)  # the specials, then reversed
    with pytest.raises(ValueError, match="another symbol table"):
        TokenTrainer(tiny(symbols), cuts, other, tmp_path / "f", codec=str(codec)).init_from(release)
    mobile = load_token_train_config(ROOT / "recipes" / "mobilespeech" / "configs" / "tiny.yaml", len(symbols), 8, 64)
    with pytest.raises(ValueError, match="holds a valle model; this run trains mobilespeech"):
        TokenTrainer(mobile, cuts, symbols, tmp_path / "g", codec=str(codec)).init_from(release)
    # a codec whose decoder alone differs gives the release's codes and counts as the same; another encoder does not
    for part, same in (("head", True), ("encoder", False)):
        other_codec = LanguageCodec.from_pretrained(codec)
        with torch.no_grad():
            for p in getattr(other_codec, part).parameters():
                p.add_(0.01)
        other_codec.save_pretrained(tmp_path / part)
        moved = TokenTrainer(config, cuts, symbols, tmp_path / f"b_{part}", codec=str(tmp_path / part))
        assert moved.init_from(release)["same_codec"] is same


def test_init_from_on_the_command_line_yields_to_a_checkpoint(built, tmp_path, capsys):
    _, pipeline, _ = built
    cuts, symbols, codec = data(built)
    trained = TokenTrainer(tiny(symbols, "train.max_steps=2"), cuts, symbols, tmp_path / "a", codec=str(codec))
    trained.train()
    argv = ["--config", str(CONFIGS / "tiny.yaml"), "--train-cuts", str(pipeline.work_dir / "cuts_train.jsonl.gz"),
            "--codec", str(codec), "--out-dir", str(tmp_path / "b"), "--resume", "--init-from", str(trained.export()),
            "--wandb", "disabled", "--set", "train.max_steps=2", "train.checkpoint_every=2"]
    main(argv=argv)
    assert f"started from {tmp_path / 'a' / 'release'}" in capsys.readouterr().out
    main(argv=argv[:-2] + ["train.max_steps=3"])  # the run's own checkpoint wins over --init-from
    out = capsys.readouterr().out
    assert "resumed at step 2" in out and "started from" not in out


def test_release_errors(tmp_path):
    with pytest.raises(ReleaseError, match="not a directory"):
        load_token_model(tmp_path / "missing")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ReleaseError, match="model.safetensors is missing"):
        load_token_model(tmp_path)


@pytest.mark.parametrize("config", [CONFIGS / "tiny.yaml", ROOT / "recipes" / "mobilespeech" / "configs" / "tiny.yaml"],
                         ids=["valle", "mobilespeech"])
@pytest.mark.slow
def test_two_cpu_processes(built, tmp_path, config):
    """Two ranks really run, their replicas stay identical (for VALL-E: DDP with the NAR's unused heads), each reads
    its own cuts, and only rank 0 writes the release."""
    cuts, symbols, codec = data(built)
    manifest = tmp_path / "cuts.jsonl.gz"
    cuts.to_file(manifest)
    symbols.save(tmp_path / "symbols.json")
    out = tmp_path / "run"
    script = tmp_path / "probe.py"
    script.write_text(f"""
import hashlib, json, sys, torch
sys.path.insert(0, {str(ROOT)!r})
from lhotse import CutSet
from tts.text import SymbolTable
from tts.training import TokenTrainer, load_token_train_config
torch.set_num_threads(1)
symbols = SymbolTable.load({str(tmp_path / 'symbols.json')!r})
config = load_token_train_config({str(config)!r}, len(symbols), 8, 64,
                                 ["train.max_steps=3", "train.checkpoint_every=3", "train.max_duration=10"])
trainer = TokenTrainer(config, CutSet.from_file({str(manifest)!r}), symbols, {str(out)!r}, codec={str(codec)!r})
trainer.train(max_minutes=600)  # a time budget: rank 0 decides and broadcasts every step
trainer.export()
model = trainer.unwrapped
digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters())).hexdigest()
batch_ids = [c.id for c in next(iter(trainer.sampler))]
with open({str(out)!r} + f"/rank{{trainer.acc.process_index}}.json", "w") as f:
    json.dump({{"world": trainer.acc.num_processes, "digest": digest, "batch": batch_ids}}, f)
""")
    ranks = launch_two_ranks(script, out)
    assert ranks[0]["digest"] == ranks[1]["digest"]
    assert not set(ranks[0]["batch"]) & set(ranks[1]["batch"])
    checkpoint = out / "checkpoints" / "step-00000003"
    assert (checkpoint / "trainer_state_0.json").exists() and (checkpoint / "trainer_state_1.json").exists()
    assert sorted(p.name for p in (out / "release").iterdir()) == ["config.json", "model.safetensors", "symbols.json"]


@pytest.mark.slow
def test_readme_commands(built, tmp_path):
    """The VALL-E page's training and export commands (tiny config, 3 steps) on the smoke corpus."""
    _, config, _ = built
    cuts, symbols, codec = data(built)
    train, export = snippet("bash", "recipes/valle/train.py", "recipes/valle/export.py").strip().splitlines()
    train = (train.replace("recipes/valle/configs/mini.yaml", str(CONFIGS / "tiny.yaml"))
             .replace("data/mini", str(config.work_dir)).replace("path/to/release", str(codec)))
    args = train.split()
    assert args[:2] == ["accelerate", "launch"]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--cpu",
           str(ROOT / args[2]), *args[3:], "--set", "train.max_steps=3", "--wandb", "disabled"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    args = export.split()
    proc = subprocess.run([sys.executable, str(ROOT / args[1]), *args[2:]], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    release = load_token_model(tmp_path / "runs" / "valle_mini" / "release_fp16")
    assert release.codec == str(tmp_path / "runs" / "valle_mini" / "release_fp16" / "codec")
    assert release.model.stages == ("ar", "nar") and len(release.symbols) == len(symbols)
    assert next(release.model.parameters()).dtype == torch.float32  # fp16 on disk, float32 when loaded


def test_single_stage_runs_merge_into_one_release(built, tmp_path):
    cuts, symbols, codec = data(built)
    trainers = {}
    for stage in ("ar", "nar"):
        trainer = TokenTrainer(tiny(symbols, f"train.stages=[{stage}]", "train.max_steps=2"), cuts, symbols,
                               tmp_path / stage, codec=str(codec))
        trainer.train()
        assert trainer.unwrapped.stages == (stage,)
        trainers[stage] = trainer
    export_runs([tmp_path / "ar", tmp_path / "nar"], tmp_path / "release")
    merged = load_token_model(tmp_path / "release").model
    assert merged.stages == ("ar", "nar")
    for trainer in trainers.values():
        own = trainer.unwrapped.state_dict()
        assert all(torch.equal(v, merged.state_dict()[k]) for k, v in own.items())


@pytest.mark.slow
def test_train_your_own_commands(built, tmp_path):
    """README's "Train your own" block on the smoke corpus: the LibriTTS recipe on its LibriTTS-layout folder (no
    download; the corpus fixture prepared the same stages in the same work dir, so they are skipped), 3 steps of the
    tiny VALL-E config, and synthesis from the release it exports."""
    import shlex


    root, config, _ = built
    codec = root / "codec"
    prepare, train, synthesize = snippet("bash", "recipes/libritts/prepare.py", "tts synthesize").strip().splitlines()
    work = str(config.work_dir)
    prepare = (prepare.replace(" --download", "").replace("data/LibriTTS", str(root / "corpus"))
               .replace("train-clean-100 dev-clean test-clean", "train test").replace("path/to/release", str(codec))
               .replace("data/libritts", work))
    args = shlex.split(prepare)
    proc = subprocess.run([sys.executable, str(ROOT / args[1]), *args[2:]], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    train = (train.replace("recipes/valle/configs/mini.yaml", str(CONFIGS / "tiny.yaml"))
             .replace("data/libritts/cuts_train-clean-100", f"{work}/cuts_train")
             .replace("path/to/release", str(codec)))
    accelerate_launch(train, tmp_path, "--set", "train.max_steps=3", "--wandb", "disabled")
    audio, rate = synthesize_documented(synthesize, next(iter(data(built)[0])), tmp_path)
    assert rate == 24000 and audio.size > 0


def test_runs_take_codeword_neighbours_from_their_codec_and_start_from_releases_that_trained_otherwise(built,
                                                                                                     tmp_path):
    """A MobileSpeech run with ``model.neighbours`` gets the table from its codec's codewords; a release starts a
    run whose config differs from its own in training-only fields (loss weights, layer draws), not in weights."""
    from tts.training import codec_codebooks

    cuts, symbols, codec = data(built)
    configs = ROOT / "recipes" / "mobilespeech" / "configs"

    def mobile(*overrides):
        return load_token_train_config(configs / "tiny.yaml", len(symbols), 8, 64, list(overrides))

    release = TokenTrainer(mobile("train.max_steps=1"), cuts, symbols, tmp_path / "a", codec=str(codec)).export()
    run = TokenTrainer(mobile("model.neighbours=4", "model.neighbour_weight=0.3", "model.layer_decay=0.5"), cuts,
                       symbols, tmp_path / "b", codec=str(codec))
    table = run.unwrapped.code_neighbours
    books = codec_codebooks(codec)
    assert table.shape == (8, 64, 4) and books.shape[:2] == (8, 64)
    assert torch.equal(table[3, 7], torch.cdist(books[3], books[3])[7].topk(4, largest=False).indices)
    assert run.init_from(release)["same_codec"] is True
    with pytest.raises(ValueError, match="decoder.layers differ"):
        TokenTrainer(mobile("model.decoder.layers=3"), cuts, symbols, tmp_path / "c", codec=str(codec)).init_from(
            release)
