"""Codec training: loss goes down, exact resume, non-finite guard, config files, two CPU processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from lhotse import CutSet, Recording

from codec.training import CodecTrainer, NonFiniteLossError, load_train_config
from tests.support import launch_two_ranks

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "recipes" / "codec" / "configs"


@pytest.fixture(scope="module")
def cuts(tmp_path_factory):
    """A few seconds of harmonic bursts at 16 kHz (the trainer resamples to 24 kHz)."""
    folder = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(0)
    recordings = []
    for i in range(4):
        t = np.arange(16000 * 2) / 16000
        f0 = 110 + 40 * i + 20 * np.sin(2 * np.pi * 0.5 * t)
        phase = 2 * np.pi * np.cumsum(f0) / 16000
        # syllable-like bursts (3 per second, a different timing per clip) with silences between them
        envelope = np.clip(4 * np.sin(2 * np.pi * 3 * t + 1.3 * i), 0, 1)
        wav = sum(np.sin(k * phase) / k for k in range(1, 6)) * envelope
        wav = (0.2 * wav + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
        sf.write(folder / f"u{i}.wav", wav, 16000)
        recordings.append(Recording.from_file(folder / f"u{i}.wav"))
    return CutSet.from_manifests(recordings=recordings).to_eager()


def tiny_config(**train):
    sets = [f"train.{k}={v}" for k, v in train.items()]
    return load_train_config(CONFIGS / "tiny.yaml", sets)


def weights(trainer):
    state = {f"g.{k}": v for k, v in trainer.acc.unwrap_model(trainer.model).state_dict().items()}
    state.update({f"d.{k}": v for k, v in trainer.acc.unwrap_model(trainer.discs).state_dict().items()})
    return {k: v.detach().clone() for k, v in state.items()}


def test_config_files():
    mini, rvq = load_train_config(CONFIGS / "mini.yaml"), load_train_config(CONFIGS / "mini_rvq.yaml")
    assert mini.codec.quantizer.kind == "mcrvq" and rvq.codec.quantizer.kind == "rvq"
    assert mini.codec.replace(quantizer=rvq.codec.quantizer) == rvq.codec
    assert (mini.discriminators, mini.losses, mini.batch_size) == (rvq.discriminators, rvq.losses, rvq.batch_size)
    assert mini.losses.mel == 45 and mini.losses.commitment == 1000
    release = load_train_config(CONFIGS / "release.yaml")
    assert release.codec.encoder.base_width == 32 and len(release.discriminators.periods) == 5
    over = load_train_config(CONFIGS / "tiny.yaml", ["train.max_steps=7", "codec.quantizer.kind=rvq"])
    assert over.max_steps == 7 and over.codec.quantizer.kind == "rvq"
    with pytest.raises(ValueError, match="no field 'train.bogus'"):
        load_train_config(CONFIGS / "tiny.yaml", ["train.bogus=1"])


def test_config_files_of_the_earlier_layout_still_load(tmp_path):
    """``codec: mini`` with ``codec_overrides`` / ``discriminator_overrides`` (the layout before one config system),
    in files, ``base:`` chains and ``--set`` overrides, gives the same config as today's layout."""
    (tmp_path / "old.yaml").write_text(
        "codec: mini\ncodec_overrides: {quantizer: {threshold_ema_dead_code: 0.16}}\ndiscriminators: reduced\n"
        "discriminator_overrides: {periods: [2, 3]}\ntrain: {batch_size: 8}\n")
    (tmp_path / "old_rvq.yaml").write_text("base: old.yaml\ncodec_overrides: {quantizer: {kind: rvq}}\n")
    (tmp_path / "new.yaml").write_text(
        "codec: {preset: mini, quantizer: {threshold_ema_dead_code: 0.16}}\n"
        "discriminators: {preset: reduced, periods: [2, 3]}\ntrain: {batch_size: 8}\n")
    old, new = load_train_config(tmp_path / "old_rvq.yaml"), load_train_config(tmp_path / "new.yaml",
                                                                                 ["codec.quantizer.kind=rvq"])
    assert old == new and new.discriminators.periods == (2, 3) and new.codec.quantizer.kind == "rvq"
    assert new.codec.quantizer.threshold_ema_dead_code == 0.16
    assert load_train_config(tmp_path / "old.yaml", ["codec_overrides.quantizer.kind=rvq"]) == new


@pytest.mark.slow
def test_mel_loss_goes_down(cuts, tmp_path):
    torch.manual_seed(0)
    config = tiny_config(max_steps=240, reconstruction_only_steps=1000, learning_rate=0.003, log_every=1000,
                         checkpoint_every=1000)
    trainer = CodecTrainer(config, cuts, tmp_path)
    mels = [trainer.train_step(batch)["mel"] for _, batch in zip(range(240), trainer.batches())]
    first, last = np.mean(mels[:20]), np.mean(mels[-20:])
    assert last < 0.7 * first, (first, last)
    # The reconstruction must come from the codes: decoding another clip's codes must be clearly worse. (A decoder
    # that learned one average spectrum, ignoring a collapsed latent, also lowers the loss and fails here.)
    codec = trainer.codec.eval()
    wav = next(trainer.batches())[:, None]
    codes = codec.encode(wav)
    own = trainer.mel(codec.decode(codes)[..., : wav.shape[-1]], wav).item()
    swapped = trainer.mel(codec.decode(codes.roll(1, dims=0))[..., : wav.shape[-1]], wav).item()
    assert own < 0.8 * swapped, (own, swapped)


@pytest.mark.slow
def test_exact_resume(cuts, tmp_path):
    config = tiny_config(max_steps=8, reconstruction_only_steps=2, checkpoint_every=4, keep_checkpoints=2)
    straight = CodecTrainer(config, cuts, tmp_path / "a")
    straight.train()
    reference = weights(straight)

    first = CodecTrainer(config, cuts, tmp_path / "b")
    first.train(stop_after=4)  # a run stopped after its checkpoint at step 4 ...
    assert [p.name for p in first.checkpoints()] == ["step-00000004"]
    second = CodecTrainer(config, cuts, tmp_path / "b")  # ... and a fresh process resuming it
    assert second.resume() and second.step == 4
    second.train()
    resumed = weights(second)
    assert reference.keys() == resumed.keys()
    different = [k for k in reference if not torch.equal(reference[k], resumed[k])]
    assert not different, different[:5]
    assert [p.name for p in second.checkpoints()] == ["step-00000004", "step-00000008"]
    assert not list((tmp_path / "b" / "checkpoints").glob(".*"))  # no temporary folders left


def test_nonfinite_losses_are_skipped_then_stop(cuts, tmp_path, monkeypatch):
    config = tiny_config(max_nonfinite=2, reconstruction_only_steps=100)
    trainer = CodecTrainer(config, cuts, tmp_path)
    batches = trainer.batches()
    trainer.train_step(next(batches))
    before = weights(trainer)
    monkeypatch.setattr(trainer.mel, "forward", lambda a, b: torch.tensor(float("nan")))
    logs = trainer.train_step(next(batches))
    assert logs["skipped"] == 1.0
    after = weights(trainer)
    assert all(torch.equal(before[k], after[k]) for k in before if ".codebook." not in k)
    trainer.train_step(next(batches))
    with pytest.raises(NonFiniteLossError, match="non-finite losses in 3 steps in a row"):
        trainer.train_step(next(batches))


@pytest.mark.slow
def test_two_cpu_processes(cuts, tmp_path):
    """Two ranks really run (accelerate on CPU needs ACCELERATE_USE_CPU with --multi_gpu), gradients are synced
    (identical weights on both ranks after training) and only rank 0 writes the release."""
    manifest = tmp_path / "cuts.jsonl.gz"
    cuts.repeat(2).to_file(manifest)  # enough cuts for two ranks
    out = tmp_path / "run"
    script = tmp_path / "probe.py"
    script.write_text(f"""
import hashlib, json, sys, torch
sys.path.insert(0, {str(ROOT)!r})
from lhotse import CutSet
from codec.training import CodecTrainer, load_train_config
torch.set_num_threads(1)
config = load_train_config({str(CONFIGS / 'tiny.yaml')!r}, ["train.max_steps=4", "train.checkpoint_every=4",
                                                              "train.reconstruction_only_steps=2"])
trainer = CodecTrainer(config, CutSet.from_file({str(manifest)!r}), {str(out)!r})
trainer.train()
trainer.export()
model = trainer.acc.unwrap_model(trainer.model)
digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters())).hexdigest()
batch_ids = [c.id for c in next(iter(trainer.sampler))]
with open({str(out)!r} + f"/rank{{trainer.acc.process_index}}.json", "w") as f:
    json.dump({{"rank": trainer.acc.process_index, "world": trainer.acc.num_processes, "digest": digest,
               "batch": batch_ids}}, f)
""")
    ranks = launch_two_ranks(script, out)
    assert ranks[0]["digest"] == ranks[1]["digest"]  # DDP kept the replicas identical
    assert not set(ranks[0]["batch"]) & set(ranks[1]["batch"])  # each rank reads its own cuts
    checkpoint = out / "checkpoints" / "step-00000004"
    assert (checkpoint / "trainer_state_0.json").exists() and (checkpoint / "trainer_state_1.json").exists()
    assert sorted(p.name for p in (out / "release").iterdir()) == ["config.json", "model.safetensors"]


def test_validation_metrics_without_tracker(cuts, tmp_path):
    trainer = CodecTrainer(tiny_config(validation_clips=2), cuts, tmp_path, valid_cuts=cuts)
    trainer.train_step(next(trainer.batches()))
    results = trainer.validate()
    for k in (4, 8):
        assert results[f"valid/mel_distance_{k}cb"] > 0
        if f"valid/stoi_{k}cb" in results:  # PESQ may have no score: an untrained codec's output can be silence
            assert -1 <= results[f"valid/stoi_{k}cb"] <= 1  # a correlation: can dip below 0 untrained
    assert trainer.model.training  # back to training mode


@pytest.mark.slow
def test_init_from_release_continues_its_quality(cuts, tmp_path):
    """A run started from a release (--init-from) starts at the release's quality, with its codebooks' EMA state and
    its discriminators, and keeps it; a fresh run starts far worse. Another architecture is refused by name."""
    from codec import CodecError, LanguageCodec

    config = tiny_config(max_steps=400, reconstruction_only_steps=60, learning_rate=0.003, log_every=1000,
                         checkpoint_every=1000, lr_warmup_steps=5)
    first = CodecTrainer(config, cuts, tmp_path / "first")
    first.train(stop_after=80)
    release = first.export(tmp_path / "release", discriminators=True)
    assert {p.name for p in release.iterdir()} >= {"discriminators.safetensors", "discriminators.json"}
    sharded = first.export(tmp_path / "sharded", max_shard_bytes=1 << 18)  # the weights in shards of 0.25 MB
    assert (sharded / "model.safetensors.index.json").is_file() and len(list(sharded.glob("model-0*"))) > 1
    assert all(torch.equal(a, b) for a, b in zip(LanguageCodec.from_pretrained(sharded).state_dict().values(),
                                                  LanguageCodec.from_pretrained(release).state_dict().values()))
    batch = next(first.batches())

    def mel(trainer):
        codec = trainer.codec.eval()
        with torch.no_grad():
            wav = batch[:, None]
            value = trainer.mel(codec.decode(codec.encode(wav))[..., : wav.shape[-1]], wav).item()
        codec.train()
        return value

    trained = mel(first)
    continued = CodecTrainer(config, cuts, tmp_path / "continued")
    fresh = CodecTrainer(config, cuts, tmp_path / "fresh")
    info = continued.init_from(release)
    assert info["discriminators"] and json.loads((tmp_path / "continued" / "init_from.json").read_text()) == info
    own, theirs = weights(continued), weights(first)
    assert all(torch.equal(own[k], theirs[k]) for k in own), [k for k in own if not torch.equal(own[k], theirs[k])]
    assert any(k.endswith("cluster_size") for k in own) and any(k.endswith("embed_avg") for k in own)
    assert continued.step == 0 and continued.sched_g.get_last_lr()[0] < config.learning_rate  # warm-up again
    assert mel(continued) == pytest.approx(trained, rel=1e-5)
    assert mel(fresh) > 1.3 * trained
    continued.train(stop_after=20)  # through the warm-up and into the adversarial phase
    assert mel(continued) < 1.15 * trained

    # the export recipe writes the same discriminators from the run's checkpoint
    exported = tmp_path / "exported"
    proc = subprocess.run([sys.executable, str(ROOT / "recipes" / "codec" / "export.py"), "--run",
                           str(tmp_path / "first"), "--out", str(exported), "--with-discriminators"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    from safetensors.torch import load_file
    a, b = load_file(exported / "discriminators.safetensors"), load_file(release / "discriminators.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    wider = load_train_config(CONFIGS / "tiny.yaml", ["codec.decoder.dim=24"])
    with pytest.raises(CodecError, match="decoder.dim 32"):
        CodecTrainer(wider, cuts, tmp_path / "other").init_from(release)
    with pytest.raises(CodecError, match="does not exist"):
        fresh.init_from(tmp_path / "missing")


@pytest.fixture(scope="module")
def finished_run(cuts, tmp_path_factory):
    """A tiny run with checkpoints at steps 4 and 8, and its final weights."""
    out = tmp_path_factory.mktemp("finished")
    config = tiny_config(max_steps=8, reconstruction_only_steps=2, checkpoint_every=4, keep_checkpoints=3)
    straight = CodecTrainer(config, cuts, out)
    straight.train()
    return config, out, weights(straight)


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["missing random_states_0.pkl", "truncated optimizer.bin",
                                   "corrupt model.safetensors", "missing trainer_state_0.json"])
def test_resume_falls_back_over_a_broken_checkpoint(cuts, finished_run, tmp_path, fault, capsys):
    """Any single file of the latest checkpoint missing or damaged: resume says which file and continues from the
    previous complete checkpoint, ending where an unbroken run ends."""
    import shutil

    config, finished, reference = finished_run
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    kind, name = fault.split(" ")
    target = run / "checkpoints" / "step-00000008" / name
    if kind == "missing":
        target.unlink()
    elif kind == "truncated":
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    else:
        data = bytearray(target.read_bytes())
        data[-10] ^= 0xFF
        target.write_bytes(bytes(data))
    (run / "checkpoints" / ".step-00000012.tmp").mkdir()  # left by a write that was killed
    resumed = CodecTrainer(config, cuts, run)
    assert not (run / "checkpoints" / ".step-00000012.tmp").exists()
    capsys.readouterr()
    assert resumed.resume() and resumed.step == 4
    assert f"step-00000008 is unusable ({name}" in capsys.readouterr().out
    resumed.train()
    after = weights(resumed)
    assert all(torch.equal(reference[k], after[k]) for k in reference)


@pytest.mark.slow
def test_resume_stops_when_no_checkpoint_is_complete(cuts, tmp_path):
    from toolkit.runs import MANIFEST, CheckpointError

    config = tiny_config(max_steps=4, reconstruction_only_steps=2, checkpoint_every=2, keep_checkpoints=3)
    CodecTrainer(config, cuts, tmp_path).train()
    checkpoints = tmp_path / "checkpoints"
    (checkpoints / "step-00000004" / "optimizer.bin").unlink()
    with pytest.raises(CheckpointError, match="step-00000004 is unusable .optimizer.bin is missing"):
        CodecTrainer(config, cuts, tmp_path).resume(checkpoints / "step-00000004")  # a named one: no fallback
    (checkpoints / "step-00000002" / "model_1.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="Nothing was restored"):
        CodecTrainer(config, cuts, tmp_path).resume()
    # a checkpoint written before manifests existed still resumes
    (checkpoints / "step-00000004" / MANIFEST).unlink()
    (checkpoints / "step-00000004" / "optimizer.bin").write_bytes(
        (checkpoints / "step-00000002" / "optimizer.bin").read_bytes())
    trainer = CodecTrainer(config, cuts, tmp_path)
    assert trainer.resume() and trainer.step == 4


def test_noise_floor_augmentation(cuts):
    """``train.noise_floor_db`` adds white noise at a drawn level to every crop (so a codec cannot learn to gate
    quiet input into digital silence); without it the crops are as before, bit for bit."""
    from codec.data import AudioCropDataset

    silent = cuts.map(lambda c: c.perturb_volume(1e-9))  # effectively digital silence
    plain = AudioCropDataset(8000, gain_db=None)
    torch.manual_seed(0)
    assert plain[silent].abs().max() < 1e-8
    noisy = AudioCropDataset(8000, gain_db=None, noise_db=(-40.0, -40.0))
    torch.manual_seed(0)
    rms = noisy[silent].pow(2).mean(dim=1).sqrt()
    assert torch.allclose(rms, torch.full_like(rms, 0.01), rtol=0.05)  # -40 dBFS
    torch.manual_seed(1)
    a = AudioCropDataset(8000)[cuts]
    torch.manual_seed(1)
    b = AudioCropDataset(8000, noise_db=None)[cuts]
    assert torch.equal(a, b)
    assert tuple(tiny_config(noise_floor_db="[-90,-45]").noise_floor_db) == (-90, -45)
    for bad in ("[-40,-60]", "[-40]", "[3,5]"):
        with pytest.raises(ValueError, match="noise_floor_db"):
            tiny_config(noise_floor_db=bad)


def test_mel_scales_config(cuts, tmp_path):
    """``train.mel_scales`` chooses the scales of the trainer's mel loss; by default the one Vocos scale."""
    default = CodecTrainer(tiny_config(max_steps=1), cuts, tmp_path / "a")
    assert [(m.mel.n_fft, m.mel.hop_length) for m in default.mel.losses] == [(1024, 256)]
    multi = CodecTrainer(tiny_config(max_steps=1, mel_scales="[[64,16,10],[512,128,80]]"), cuts, tmp_path / "b")
    assert [(m.mel.n_fft, m.mel.hop_length) for m in multi.mel.losses] == [(64, 16), (512, 128)]
    assert multi.train_step(next(iter(multi.loader)))["mel"] > 0
    for bad in ("[]", "[[64,16]]", "[[16,64,10]]", "[[64,16,0]]", "64"):
        with pytest.raises(ValueError, match="mel_scales"):
            tiny_config(mel_scales=bad)


@pytest.mark.parametrize("term, attribute", [("complex_stft", "complex"), ("phase_derivative", "phase")])
def test_spectral_terms(cuts, tmp_path, term, attribute):
    """``losses.complex_stft`` and ``losses.phase_derivative`` add their losses to the generator's; off by default."""
    assert getattr(load_train_config(CONFIGS / "mini.yaml").losses, term) == 0.0
    assert getattr(CodecTrainer(tiny_config(max_steps=1), cuts, tmp_path / "a"), attribute) is None
    config = load_train_config(CONFIGS / "tiny.yaml", ["train.max_steps=1", f"losses.{term}=10",
                                                       "train.reconstruction_only_steps=100"])
    trainer = CodecTrainer(config, cuts, tmp_path / "b")
    logs = trainer.train_step(next(iter(trainer.loader)))
    assert logs[term] > 0
    expected = config.losses.mel * logs["mel"] + config.losses.commitment * logs["commit"] + 10 * logs[term]
    assert logs["loss_g"] == pytest.approx(expected, rel=1e-5)


def test_continuous_warm_up_then_quantized(cuts, tmp_path):
    """``train.continuous_steps``: the first steps decode the encoder's latent unquantized (no commitment loss, the
    codebooks untouched and uninitialized; validation scores the unquantized reconstruction); the step after, the
    quantizer initializes from the trained encoder's latents and training goes on quantized."""
    trainer = CodecTrainer(tiny_config(max_steps=4, continuous_steps=2, reconstruction_only_steps=100,
                                       validate_every=1000, checkpoint_every=1000), cuts, tmp_path, valid_cuts=cuts)
    inited = lambda: [float(layer.codebook.inited) for layer in trainer.codec.quantizer.layers]  # noqa: E731
    batches = trainer.batches()
    for _ in range(2):
        logs = trainer.train_step(next(batches))
        assert logs["commit"] == 0.0 and logs["num_quantizers"] == 0 and logs["mel"] > 0
    assert set(inited()) == {0.0}
    valid = trainer.validate()
    assert {k for k in valid if k.startswith("valid/mel_distance")} == {"valid/mel_distance_unquantized"}
    logs = trainer.train_step(next(batches))
    assert logs["num_quantizers"] > 0 and logs["commit"] > 0 and 1.0 in inited()
    valid = trainer.validate()
    assert {k for k in valid if k.startswith("valid/mel_distance")} == {"valid/mel_distance_4cb",
                                                                     "valid/mel_distance_8cb"}
    wav = next(batches)[:, None]
    codec = trainer.codec.eval()
    out = codec(wav, bandwidth_id=0, quantize=False)
    assert out.codes.shape == (wav.shape[0], 0, out.latent.shape[-1]) and float(out.commit_loss) == 0.0
    assert torch.allclose(out.audio, codec.autoencode(wav), atol=1e-5)
    with pytest.raises(ValueError, match="continuous_steps"):
        tiny_config(continuous_steps=-1)


def test_discriminators_lead_the_adversarial_losses(cuts, tmp_path):
    """``train.discriminator_lead_steps``: the discriminators train from that many steps before the generator's
    adversarial losses start (``reconstruction_only_steps``), on the schedule's learning rate from their start."""
    trainer = CodecTrainer(tiny_config(max_steps=4, reconstruction_only_steps=3, discriminator_lead_steps=2,
                                       lr_warmup_steps=0), cuts, tmp_path)
    assert trainer.discriminator_start == 1
    before = {k: v.clone() for k, v in trainer.discs.state_dict().items()}
    batches = trainer.batches()
    logs = [trainer.train_step(next(batches)) for _ in range(4)]
    assert ["loss_d" in entry for entry in logs] == [False, True, True, True]
    assert ["adversarial" in entry for entry in logs] == [False, False, False, True]
    assert any(not torch.equal(before[k], v) for k, v in trainer.discs.state_dict().items())
    assert trainer.sched_d.get_last_lr() == trainer.sched_g.get_last_lr()  # one global schedule
    assert CodecTrainer(tiny_config(reconstruction_only_steps=3, discriminator_lead_steps=9), cuts,
                        tmp_path / "b").discriminator_start == 0
    with pytest.raises(ValueError, match="discriminator_lead_steps"):
        tiny_config(discriminator_lead_steps=-1)


def test_discriminators_judge_random_windows(cuts, tmp_path):
    """``train.discriminator_seconds``: the discriminators see one window of each crop, the same of the real and the
    generated crop, drawn anew each step; null keeps the whole crops."""
    seen = []
    trainer = CodecTrainer(tiny_config(max_steps=2, reconstruction_only_steps=0, discriminator_seconds=0.1), cuts,
                           tmp_path / "a")
    trainer.discs.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    batches = trainer.batches()
    crops = [next(batches) for _ in range(2)]
    for crop in crops:
        trainer.train_step(crop)
    window = 2400  # 0.1 s at 24 kHz
    assert [tuple(x.shape) for x in seen] == [(2 * len(crops[0]), 1, window), (len(crops[0]), 1, window),
                                              (len(crops[0]), 1, window)] * 2
    for step, crop in enumerate(crops):
        d_pass, real = seen[3 * step], seen[3 * step + 1]
        assert torch.equal(d_pass[: len(crop)], real)  # the discriminator update and the generator's see one window
        starts = [next(s for s in range(crop.shape[-1] - window + 1) if torch.equal(crop[b, s: s + window], real[b, 0]))
                  for b in range(len(crop))]
        assert len(set(starts)) > 1  # a window per crop
    assert not torch.equal(seen[1], seen[4])
    whole = CodecTrainer(tiny_config(max_steps=1, reconstruction_only_steps=0), cuts, tmp_path / "b")
    seen.clear()
    whole.discs.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    whole.train_step(crops[0])
    assert seen[1].shape[-1] == crops[0].shape[-1]
    for bad in ("0", "-0.5", "5.0", "true"):
        with pytest.raises(ValueError, match="discriminator_seconds"):
            tiny_config(discriminator_seconds=bad)
    with pytest.raises(ValueError, match="widest STFT window"):
        CodecTrainer(tiny_config(discriminator_seconds=0.01), cuts, tmp_path / "c")


def test_repeat_factors_weight_speakers(cuts, tmp_path):
    """``train.repeat_factors`` repeats (or drops) cuts by speaker pattern in every epoch; the rest appear once."""
    from lhotse import SupervisionSegment

    from codec.data import repeat_cuts

    speakers = ["synth-a", "synth-b", "real-c", "other"]
    labelled = CutSet([cut.with_id(speaker) for cut, speaker in zip(cuts, speakers)])
    for cut in labelled:
        cut.supervisions = [SupervisionSegment(cut.id, cut.recording_id, 0.0, cut.duration, speaker=cut.id)]
    ids = [c.id for c in repeat_cuts(labelled, {"synth-*": 0, "real-*": 3})]
    assert sorted(ids) == ["other", "real-c", "real-c_rep1", "real-c_rep2"]
    import pickle  # a manifest with repeats pickles (DataLoader workers, spawned processes)

    assert sorted(c.id for c in pickle.loads(pickle.dumps(repeat_cuts(labelled, {"synth-*": 0, "real-*": 3})))) \
        == sorted(ids)
    assert sorted(c.id for c in repeat_cuts(labelled, {"synth-a": 2, "*": 1})) == [
        "other", "real-c", "synth-a", "synth-a_rep1", "synth-b"]

    config = tiny_config(max_steps=2, repeat_factors='{"synth-*": 0, "real-*": 3}', batch_size=2)
    assert config.repeat_factors == {"synth-*": 0, "real-*": 3}
    trainer = CodecTrainer(config, labelled, tmp_path)
    assert sorted(c.id for batch in trainer.sampler for c in batch) == sorted(ids)
    for bad in ("[1]", '{"a": -1}', '{"a": 1.5}', "{}"):
        with pytest.raises(ValueError, match="repeat_factors"):
            tiny_config(repeat_factors=bad)


def test_decoder_only_fine_tuning(cuts, tmp_path):
    """``train.decoder_only``: started from a release, the encoder, the codebooks and their EMA state stay exactly the
    release's (so do its codes) while the decoder learns; without initialized codebooks it refuses to start."""
    every_layer = ["codec.quantizer.train_num_quantizers=[8]"]  # each codebook initialized in the first step
    first = CodecTrainer(load_train_config(CONFIGS / "tiny.yaml", every_layer + [
        "train.max_steps=2", "train.reconstruction_only_steps=100", "train.checkpoint_every=1000"]), cuts,
        tmp_path / "first")
    first.train()
    release = first.export(tmp_path / "release")
    config = load_train_config(CONFIGS / "tiny.yaml", every_layer + [
        "train.max_steps=40", "train.decoder_only=true", "train.reconstruction_only_steps=100",
        "train.learning_rate=0.003", "train.checkpoint_every=1000"])
    trainer = CodecTrainer(config, cuts, tmp_path / "decoder")
    trainer.init_from(release)
    before = weights(trainer)
    assert all(not p.requires_grad for p in trainer.codec.encoder.parameters())
    wav = next(trainer.batches())
    codes = first.codec.encode(wav[:, None])
    mels = [trainer.train_step(wav) for _ in range(12)]
    assert all(logs["commit"] == 0.0 for logs in mels)
    assert mels[-1]["mel"] < mels[0]["mel"]
    after = weights(trainer)
    frozen = [k for k in before if k.startswith(("g.encoder.", "g.quantizer."))]
    assert frozen and any(k.endswith("embed_avg") for k in frozen)
    assert all(torch.equal(before[k], after[k]) for k in frozen), [k for k in frozen if not torch.equal(before[k],
                                                                                                       after[k])]
    assert not all(torch.equal(before[k], after[k]) for k in before if k.startswith("g.backbone."))
    assert torch.equal(trainer.codec.encode(wav[:, None]), codes)
    assert trainer.codec.encoder.training and trainer.codec.quantizer.training  # the train mode comes back

    fresh = CodecTrainer(config, cuts, tmp_path / "fresh")
    with pytest.raises(ValueError, match="decoder_only.*--init-from"):
        fresh.train_step(wav)
    with pytest.raises(ValueError, match="train.decoder_only"):
        tiny_config(decoder_only="sometimes")
