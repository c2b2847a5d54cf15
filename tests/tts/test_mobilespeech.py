"""MobileSpeech: length regulation, a tiny model overfitting mini-corpus utterances, and seeded parallel decoding."""

from __future__ import annotations

import copy
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import torch
from lhotse import CutSet

from tests.support import corpus_data as data
from tests.support import accelerate_launch, resumed_like_unbroken, snippet, synthesize_documented
from tts.data.dataset import PromptPool, TokenDataset
from tts.models.base import GenerationRequest
from tts.models.sampling import SamplingConfig
from tts.models.mobilespeech import MobileSpeech, MobileSpeechConfig, length_regulate


def test_length_regulate():
    states = torch.arange(6.0).view(1, 3, 2).repeat(2, 1, 1)
    durations = torch.tensor([[2, 0, 3], [1, 1, 0]])
    out = length_regulate(states, durations, 5)
    assert out[0, :, 0].tolist() == [0, 0, 4, 4, 4]
    assert out[1, :, 0].tolist() == [0, 2, 0, 0, 0] and out[1, 2:].abs().sum() == 0


@pytest.mark.slow
def test_stored_durations_drive_the_duration_predictor(built):
    """Where the data has durations (the smoke corpus's espeak-ng speakers), the batch carries them, they fit the
    codes, and they, not the aligner's, are the duration predictor's targets; other items keep the aligner's."""
    import torch.nn.functional as F

    cuts, symbols, _ = data(built)
    synthetic = [c for c in cuts if c.supervisions[0].speaker.startswith("espeak-")]
    real = [c for c in cuts if not c.supervisions[0].speaker.startswith("espeak-")]
    if not real:  # no real clips without ../shared: espeak-ng cuts with their durations taken away stand in
        real = [copy.deepcopy(c) for c in synthetic[4:8]]
        for c in real:
            del c.supervisions[0].custom["durations"]
    batch = TokenDataset(symbols)[CutSet.from_cuts(synthetic[:4] + real[:4])]
    known = batch.durations_known
    assert known.any() and not known.all()  # espeak-ng speakers and real speakers
    assert torch.equal(batch.durations[known].sum(1), batch.code_lens[known])
    torch.manual_seed(0)
    for stored in (True, False):
        model = MobileSpeech(dataclasses.replace(MobileSpeechConfig.tiny(len(symbols)), stored_durations=stored))
        model.eval()
        with torch.no_grad():
            out = model(batch, generator=torch.Generator().manual_seed(0))
            aligned = model.aligner.durations(batch.phonemes, batch.phoneme_lens, batch.codes, batch.code_lens)
            text = model.encode_text(batch.phonemes, batch.phoneme_lens)
            _, summary, _ = model.encode_prompt(batch.prompt_codes, batch.prompt_lens)
            predicted = model.durations(text, summary)
        target = torch.where(known[:, None], batch.durations, aligned) if stored else aligned
        valid = torch.arange(batch.phonemes.shape[1])[None, :] < batch.phoneme_lens[:, None]
        expected = F.mse_loss(predicted[valid], torch.log1p(target[valid].float()))
        assert torch.allclose(out["duration"].loss, expected, atol=1e-6), (stored, out["duration"].loss, expected)
        # the jointly trained aligner learns from the items without stored durations only
        unknown = ~known if stored else torch.ones_like(known)
        with torch.no_grad():
            n, t = int(batch.phoneme_lens[unknown].max()), int(batch.code_lens[unknown].max())
            alone = model.aligner(batch.phonemes[unknown, :n], batch.phoneme_lens[unknown],
                                  batch.codes[unknown, :, :t], batch.code_lens[unknown])
        assert torch.allclose(out["aligner"].loss, alone.loss, atol=1e-5)
        assert out["aligner"].tokens == int(batch.code_lens[unknown].sum())
    # and it idles when every item has them
    labelled = TokenDataset(symbols)[CutSet.from_cuts(synthetic[:4])]
    out = model.__class__(MobileSpeechConfig.tiny(len(symbols)))(labelled, generator=torch.Generator().manual_seed(0))
    assert out["aligner"].tokens == 0 and not out["aligner"].loss.requires_grad
    assert out["smd"].loss.requires_grad and out["duration"].loss.requires_grad


@pytest.mark.slow
def test_overfits_and_decodes(built):

    torch.set_num_threads(1)
    cuts, symbols, _ = data(built)
    few = CutSet.from_cuts(list(cuts.sort_by_duration(ascending=True))[:2])
    batch = TokenDataset(symbols)[few]
    torch.manual_seed(0)
    config = MobileSpeechConfig.tiny(len(symbols))
    model = MobileSpeech(config)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(600):
        out = model(batch, generator=gen)
        loss = sum(o.loss for o in out.values())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = [float(model(batch, generator=torch.Generator().manual_seed(s))["smd"].accuracy) for s in range(8)]
        aligned = model.aligner.durations(batch.phonemes, batch.phoneme_lens, batch.codes, batch.code_lens)
        prompt = batch.prompt_codes[0, :, : int(batch.prompt_lens[0])]
        predicted = model.predict_durations(batch.phonemes, batch.phoneme_lens, prompt[None].expand(2, -1, -1))
    assert sum(accuracy) / len(accuracy) > 0.95, accuracy  # measured 0.98
    assert torch.equal(aligned.sum(1), batch.code_lens)
    # total predicted length within 15% of the aligner's
    assert ((predicted.sum(1).float() / aligned.sum(1).float()) - 1).abs().max() < 0.15, (predicted.sum(1),
                                                                                          aligned.sum(1))
    texts = [batch.phonemes[i, : batch.phoneme_lens[i]] for i in range(2)]
    a, b = (model.generate(GenerationRequest(texts, [int(t.numel()) for t in texts], prompt, 75, SamplingConfig(),
                                             steps=4, generator=torch.Generator().manual_seed(1))) for _ in range(2))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    for codes, n in zip(a, predicted.sum(1)):
        assert codes.shape == (8, int(n)) and codes.min() >= 0 and codes.max() < 64


def untrained_inputs():
    """An untrained tiny model, two texts of 6 and 4 phonemes, a 30-frame prompt and 3 frames per phoneme."""
    torch.manual_seed(0)
    model = MobileSpeech(MobileSpeechConfig.tiny(20)).eval()
    prompt = torch.randint(0, model.config.codebook_size, (model.config.num_codebooks, 30))
    phonemes, lens = torch.randint(1, 20, (2, 6)), torch.tensor([6, 4])
    return model, phonemes, lens, prompt, torch.tensor([[3] * 6, [3] * 4 + [0] * 2])


def test_first_layer_samples_within_top_k_and_top_p():
    model, phonemes, lens, prompt, durations = untrained_inputs()
    k = model.config.num_codebooks

    def decode(seed, **options):
        return model.decode(phonemes, lens, prompt, steps=4, durations=durations,
                            generator=torch.Generator().manual_seed(seed), **options)

    # an untrained model's distribution is wide: unfiltered draws differ between seeds, the top-1 token does not
    assert not torch.equal(decode(1)[0][0], decode(2)[0][0])
    assert all(torch.equal(x, y) for x, y in zip(decode(1, top_k=1), decode(2, top_k=1)))
    assert all(torch.equal(x, y) for x, y in zip(decode(1, top_p=1e-6), decode(2, top_k=1)))
    assert [tuple(c.shape) for c in decode(3, top_k=5, top_p=0.5)] == [(k, 18), (k, 12)]


def test_given_layers_are_kept_and_condition_the_rest():
    """Teacher forcing for the oracle diagnostics: given first layers come back as they are (within each item's
    length) and the later layers are decoded from them; given codes without durations are refused."""
    model, phonemes, lens, prompt, durations = untrained_inputs()
    k, v = model.config.num_codebooks, model.config.codebook_size
    given = torch.randint(0, v, (2, 2, 20))  # longer than the 18 frames: the surplus is ignored
    out = model.decode(phonemes, lens, prompt, steps=4, durations=durations, given=given)
    assert [tuple(c.shape) for c in out] == [(k, 18), (k, 12)]
    assert torch.equal(out[0][:2], given[0, :, :18]) and torch.equal(out[1][:2], given[1, :, :12])
    other = model.decode(phonemes, lens, prompt, steps=4, durations=durations, given=(given + 1) % v)
    assert not torch.equal(out[0][2:], other[0][2:])  # the later layers read the given ones
    with pytest.raises(ValueError, match="durations"):
        model.decode(phonemes, lens, prompt, given=given)
    with pytest.raises(ValueError, match="given codes must be"):
        model.decode(phonemes, lens, prompt, durations=durations, given=given[:, :, :10])


def test_first_layer_validation_does_not_depend_on_the_draws(built):
    """``smd_first`` scores the wholly masked first layer on every frame past a prefix prompt, so two runs that draw
    layers and masks differently (``layer_decay``, ``alpha``) compare on it."""
    cuts, symbols, _ = data(built)
    batch = TokenDataset(symbols)[CutSet.from_cuts(list(cuts)[:4])]
    torch.manual_seed(0)
    a = MobileSpeech(MobileSpeechConfig.tiny(len(symbols))).eval()
    b = MobileSpeech(dataclasses.replace(a.config, layer_decay=0.3, alpha=0.2)).eval()
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        out_a, out_b = a.validation_outputs(batch, 0), b.validation_outputs(batch, 0)
    assert [set(o) for o in out_a] == [{"smd", "duration", "aligner"}, {"smd_first"}]
    first_a, first_b = out_a[1]["smd_first"], out_b[1]["smd_first"]
    assert torch.equal(first_a.loss, first_b.loss) and torch.equal(first_a.accuracy, first_b.accuracy)
    assert not torch.equal(out_a[0]["smd"].loss, out_b[0]["smd"].loss)
    prefix = int((batch.prompt_lens * batch.prompt_is_prefix).sum())
    assert first_a.tokens == int(batch.code_lens.sum()) - prefix


def test_prompt_free_validation_scores_whole_targets(built):
    """``smd_free`` scores every frame of the items prompted by another utterance (inference's condition) and none
    of those prompted by a prefix."""
    cuts, symbols, _ = data(built)
    some = CutSet.from_cuts(list(cuts)[:6])
    batch = TokenDataset(symbols, other_utterance_prob=1.0, prompt_pool=cuts)[some]
    other = ~batch.prompt_is_prefix
    assert other.any()
    torch.manual_seed(0)
    model = MobileSpeech(MobileSpeechConfig.tiny(len(symbols))).eval()
    with torch.no_grad():
        free = model.prompt_free_outputs(batch)["smd_free"]
        assert free.tokens == int(batch.code_lens[other].sum())
        assert model.prompt_free_outputs(TokenDataset(symbols)[some]) == {}


def test_config_files(built):
    from tts.training import load_token_train_config

    _, symbols, _ = data(built)
    configs = Path(__file__).resolve().parents[2] / "recipes" / "mobilespeech" / "configs"
    for name, dim in (("paper", 512), ("mini", 256), ("tiny", 64)):
        config = load_token_train_config(configs / f"{name}.yaml", len(symbols), 8, 1024)
        assert config.model_type == "mobilespeech" and config.stages == ("smd",) and config.model.decoder.dim == dim
    over = load_token_train_config(configs / "tiny.yaml", len(symbols), 4, 64, ["model.decoder.layers=3"])
    assert over.model.decoder.layers == 3 and over.model.num_codebooks == 4 and over.model.decoder.num_conditions == 4
    with pytest.raises(ValueError, match="stages"):
        load_token_train_config(configs / "tiny.yaml", len(symbols), 8, 64, ["train.stages=[ar]"])


@pytest.mark.slow
def test_training_resumes_exactly_and_the_release_speaks(built, tmp_path):
    from tts.training import load_token_train_config

    cuts, symbols, codec = data(built)
    configs = Path(__file__).resolve().parents[2] / "recipes" / "mobilespeech" / "configs"
    config = load_token_train_config(configs / "tiny.yaml", len(symbols), 8, 64,
                                     ["train.max_duration=8", "train.grad_accumulation=2", "train.max_steps=6",
                                      "train.checkpoint_every=3", "train.warmup_steps=2"])
    _, resumed = resumed_like_unbroken(config, cuts, symbols, codec, tmp_path)
    results = resumed.validate(cuts)
    assert {"valid/smd_loss", "valid/smd_accuracy", "valid/duration_loss", "valid/smd_first_loss",
            "valid/smd_first_accuracy", "valid/smd_free_loss", "valid/smd_free_accuracy"} <= set(results)
    # validation prompts with prefixes whatever the run trains with, so that runs compare
    resumed.dataset.other_utterance_prob, resumed.dataset.prompt_pool = 1.0, PromptPool(cuts)
    assert resumed.validate(cuts) == results
    # the jointly trained aligner only scores cuts without stored durations
    stored = [c for c in cuts if "durations" in (c.supervisions[0].custom or {})]
    assert "valid/aligner_loss" not in resumed.validate(CutSet.from_cuts(stored[:8]))
    plain = [copy.deepcopy(c) for c in stored[:4]]
    for c in plain:
        del c.supervisions[0].custom["durations"]
    assert "valid/aligner_loss" in resumed.validate(CutSet.from_cuts(plain))
    assert "valid/duration_accuracy" not in results
    release = resumed.export(dtype=torch.float32)
    # the export recipe makes the same release from the run's latest checkpoint, in fp16 when asked
    from tts.release import export_runs, load_token_model

    export_runs([tmp_path / "b"], tmp_path / "exported", dtype=torch.float16)
    exported = load_token_model(tmp_path / "exported").model
    assert isinstance(exported, type(resumed.unwrapped))
    own = resumed.unwrapped.state_dict()
    assert all(torch.equal(v.half().float(), exported.state_dict()[k].float()) for k, v in own.items()
               if v.is_floating_point())
    # MobileSpeech needs no prompt transcript
    prompt = next(iter(cuts)).recording.sources[0].source
    out = tmp_path / "ms.wav"
    result = subprocess.run([sys.executable, "-m", "tts.cli", "synthesize",  # the model type comes from the release
                             "--checkpoint", str(release), "--prompt", prompt, "--text", "Hello there.",
                             "--out", str(out), "--steps", "4", "--seed", "0"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    audio, rate = sf.read(out)
    assert rate == 24000 and audio.size > 0 and "transcribed" not in result.stderr


@pytest.mark.slow
def test_documented_commands(built, tmp_path):
    """The MobileSpeech page's commands on the smoke corpus: 3 steps of the tiny config, then synthesis from the
    release with the documented options."""

    _, config, _ = built
    cuts, _, codec = data(built)
    train, synthesize = snippet("bash", "recipes/mobilespeech/train.py").strip().splitlines()
    root = Path(__file__).resolve().parents[2]
    train = (train.replace("recipes/mobilespeech/configs/mini.yaml",
                           str(root / "recipes" / "mobilespeech" / "configs" / "tiny.yaml"))
             .replace("data/mini", str(config.work_dir)).replace("path/to/release", str(codec)))
    accelerate_launch(train, tmp_path, "--set", "train.max_steps=3", "--wandb", "disabled")
    audio, rate = synthesize_documented(synthesize, next(iter(cuts)), tmp_path)
    assert rate == 24000 and audio.size > 0


def test_neighbour_targets_in_the_loss():
    from tts.models.base import IGNORE, token_metrics

    torch.manual_seed(0)
    logits = torch.randn(2, 5, 16)
    target = torch.randint(0, 16, (2, 5))
    target[1, 4] = IGNORE
    plain = token_metrics(logits, target)
    near = torch.randint(0, 16, (2, 5, 3))
    assert torch.equal(token_metrics(logits, target, near, 0.0).loss, plain.loss)
    # neighbours that are the target itself change nothing
    same = token_metrics(logits, target, target.clamp(min=0)[..., None].expand(-1, -1, 3), 0.7)
    assert torch.allclose(same.loss, plain.loss)
    mixed = token_metrics(logits, target, near, 0.25)
    logp = logits.log_softmax(-1)[target != IGNORE]
    expected = -(0.75 * logp.gather(-1, target[target != IGNORE][:, None])[:, 0]
                 + 0.25 * logp.gather(-1, near[target != IGNORE]).mean(-1)).mean()
    assert torch.allclose(mixed.loss, expected)
    assert torch.equal(mixed.accuracy, plain.accuracy) and mixed.tokens == plain.tokens == 9


def test_codeword_neighbours_train_the_first_layer(built):
    """``neighbours`` k: the k nearest codewords of each token, itself first, from the codec's codewords; the SMD
    loss spreads part of each target over them; without the codewords the model refuses to train."""
    cuts, symbols, _ = data(built)
    batch = TokenDataset(symbols)[CutSet.from_cuts(list(cuts)[:4])]
    torch.manual_seed(0)
    plain = MobileSpeech(MobileSpeechConfig.tiny(len(symbols)))
    model = MobileSpeech(dataclasses.replace(plain.config, neighbours=3, neighbour_weight=0.5))
    model.load_state_dict(plain.state_dict())  # the table is no weight: the same state dict
    with pytest.raises(ValueError, match="use_codebooks"):
        model(batch)
    # codewords on a line at i ** 1.5: token 5's nearest are 5, 4 (3.2 away), 6 (3.5 away)
    line = (torch.arange(64.0) ** 1.5)[None, :, None].expand(8, -1, 2).contiguous()
    model.use_codebooks(line)
    assert model.code_neighbours.shape == (8, 64, 3) and model.code_neighbours[2, 5].tolist() == [5, 4, 6]
    assert torch.equal(model.code_neighbours[:, :, 0], torch.arange(64).expand(8, -1))
    assert "code_neighbours" not in model.state_dict()
    with pytest.raises(ValueError, match="reads 8 codebooks of 64"):
        model.use_codebooks(line[:, :32])
    a, b = (m(batch, generator=torch.Generator().manual_seed(0))["smd"] for m in (plain, model))
    assert torch.equal(a.accuracy, b.accuracy) and not torch.allclose(a.loss, b.loss)
    b.loss.backward()
    assert all(p.grad is not None for p in model.heads.parameters())


@pytest.mark.parametrize("field, value", [("neighbours", -1), ("neighbours", 65), ("neighbours", True),
                                          ("neighbour_weight", 1.5), ("neighbour_weight", "half")])
def test_bad_neighbour_settings_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        MobileSpeech(dataclasses.replace(MobileSpeechConfig.tiny(20), **{field: value}))
