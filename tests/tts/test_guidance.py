"""Classifier-free guidance of MobileSpeech by the text: training drops the length-regulated text of a share of the
items (``text_dropout``), decoding mixes the predictions with and without it (``SamplingConfig.guidance``), and
models trained without the drop refuse guidance with one line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from lhotse import CutSet

from tests.support import corpus_data as data
from tests.support import tiny_release
from tts import cli
from tts.data.dataset import TokenDataset
from tts.models.mobilespeech import MobileSpeech, MobileSpeechConfig, length_regulate
from tts.models.sampling import SamplingConfig
from tts.synthesizer import SynthesisError, Synthesizer

ROOT = Path(__file__).resolve().parents[2]


def smd_loss(model, batch, seed=0):
    return model(batch, generator=torch.Generator().manual_seed(seed))["smd"].loss


def test_text_dropout_hides_the_text_in_training_only(built):
    cuts, symbols, _ = data(built)
    batch = TokenDataset(symbols)[CutSet.from_cuts(list(cuts)[:4])]
    torch.manual_seed(0)
    plain = MobileSpeech(MobileSpeechConfig.tiny(len(symbols)))
    dropped = MobileSpeech(dataclasses.replace(plain.config, text_dropout=0.999))
    dropped.load_state_dict(plain.state_dict())
    other = dataclasses.replace(batch, phonemes=(batch.phonemes * 7 + 3) % len(symbols))  # other text, same durations
    # dropped (every item, short of a one-in-a-thousand draw): the SMD loss does not depend on the text
    assert torch.equal(smd_loss(dropped, batch), smd_loss(dropped, other))
    assert not torch.allclose(smd_loss(plain, batch), smd_loss(plain, other))
    # the masks and layers are drawn before the drop: a model that drops nothing draws them as before, and in
    # evaluation nothing is dropped
    assert not torch.allclose(smd_loss(plain, batch), smd_loss(dropped, batch))
    plain.eval(), dropped.eval()
    with torch.no_grad():
        assert torch.equal(smd_loss(plain, batch), smd_loss(dropped, batch))
        # the one-pass first-layer prediction without the text (recipes/eval/neighbours.py --guidance) ignores it
        without, target = plain.first_layer_logits(batch, without_text=True)
        assert torch.equal(without, plain.first_layer_logits(other, without_text=True)[0])
        assert not torch.allclose(without, plain.first_layer_logits(batch)[0])
        assert torch.equal(target, plain.first_layer_logits(batch)[1])


@pytest.mark.parametrize("value", [1.0, -0.1, True, "some"])
def test_bad_text_dropout_is_refused(value):
    with pytest.raises(ValueError, match="text_dropout"):
        MobileSpeech(dataclasses.replace(MobileSpeechConfig.tiny(20), text_dropout=value))


def guided_inputs():
    torch.manual_seed(0)
    model = MobileSpeech(dataclasses.replace(MobileSpeechConfig.tiny(20), text_dropout=0.2)).eval()
    prompt = torch.randint(0, model.config.codebook_size, (model.config.num_codebooks, 30))
    phonemes, lens = torch.randint(1, 20, (2, 6)), torch.tensor([6, 4])
    return model, phonemes, lens, prompt, torch.tensor([[3] * 6, [3] * 4 + [0] * 2])


def test_guidance_mixes_the_predictions_with_and_without_the_text():
    """One greedy round reveals the whole first layer: its tokens are the argmax of ``c + g (c - u)``."""
    model, phonemes, lens, prompt, durations = guided_inputs()
    b, t = 2, 18
    totals = durations.sum(1)
    with torch.no_grad():
        memory, _, memory_mask = model.encode_prompt(prompt[None].expand(b, -1, -1), torch.full((b,), 30))
        frames = length_regulate(model.encode_text(phonemes, lens), durations, t)
        masked = torch.full((b, model.config.num_codebooks, t), model.mask_id)
        layer = torch.zeros(b, dtype=torch.long)
        cond = model.decode_logits(frames, masked, layer, totals, memory, memory_mask)
        uncond = model.decode_logits(torch.zeros_like(frames), masked, layer, totals, memory, memory_mask)

    def first_layer(guidance):
        out = model.decode(phonemes, lens, prompt, steps=1, temperature=0.0, durations=durations, guidance=guidance)
        return [codes[0] for codes in out]

    for guidance, logits in [(0.0, cond), (2.0, cond + 2.0 * (cond - uncond)), (0.5, 1.5 * cond - 0.5 * uncond)]:
        expected = logits.argmax(-1)
        assert [c.tolist() for c in first_layer(guidance)] == [expected[0].tolist(), expected[1, :12].tolist()]
    assert first_layer(2.0)[0].tolist() != first_layer(0.0)[0].tolist()
    # sampled decoding stays reproducible with guidance
    a, b = (model.decode(phonemes, lens, prompt, durations=durations, guidance=1.5,
                         generator=torch.Generator().manual_seed(3)) for _ in range(2))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_guidance_needs_a_model_trained_without_the_text(tmp_path):
    model, phonemes, lens, prompt, durations = guided_inputs()
    plain = MobileSpeech(dataclasses.replace(model.config, text_dropout=0.0)).eval()
    assert model.supports_guidance and not plain.supports_guidance
    with pytest.raises(ValueError, match="without text_dropout"):
        plain.decode(phonemes, lens, prompt, durations=durations, guidance=1.0)
    # through the synthesizer: a release trained with the drop follows it; others refuse it, VALL-E too
    guided = Synthesizer.from_pretrained(tiny_release(tmp_path / "guided", "mobilespeech", text_dropout=0.2))
    prompt_wav = ROOT / "examples" / "lj.wav"
    audio = guided.synthesize(prompt_wav, "Hello there.", sampling=SamplingConfig(guidance=2.0), seed=0)
    assert audio.ndim == 1 and audio.size > 0
    for kind in ("mobilespeech", "valle"):
        synth = Synthesizer.from_pretrained(tiny_release(tmp_path / kind, kind))
        with pytest.raises(SynthesisError, match="cannot follow --guidance"):
            synth.synthesize(prompt_wav, "Hello there.", (ROOT / "examples" / "lj.txt").read_text(),
                             sampling=SamplingConfig(guidance=2.0))


def test_the_command_line_refuses_guidance_in_one_line(tmp_path, capsys):
    release = tiny_release(tmp_path, "mobilespeech")
    out = tmp_path / "out.wav"
    code = cli.main(["synthesize", "--checkpoint", str(release), "--prompt", str(ROOT / "examples" / "lj.wav"),
                     "--text", "Hello there.", "--guidance", "2", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == cli.EXIT_ERROR and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "cannot follow --guidance" in err and not out.exists()
