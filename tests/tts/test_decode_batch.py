"""``Synthesizer.decode_batch``, the batched entry point of synthesis and of the server: with greedy decoding a
sentence's audio does not depend on the batch it is decoded in (padding is masked), for both token models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.support import tiny_release
from tts.models.sampling import SamplingConfig
from tts.synthesizer import Synthesizer

ROOT = Path(__file__).resolve().parents[2]
TEXTS = ["Hello there.", "A longer one, to pad.", "Hi."]  # untrained models decode to their length limit: short


@pytest.mark.parametrize("model_type", ["valle", "mobilespeech"])
def test_batch_equals_one_by_one(model_type, tmp_path):
    torch.set_num_threads(1)  # the property holds for any thread count; one keeps it fast beside a busy core
    synth = Synthesizer.from_pretrained(tiny_release(tmp_path, model_type))
    prompt = synth.prepare_prompt(ROOT / "examples" / "lj.wav", (ROOT / "examples" / "lj.txt").read_text(), 10)
    sentences = synth.prepare_sentences(TEXTS, prompt.phonemes)
    assert [s.text for s in sentences] == [0, 1, 2]
    greedy = SamplingConfig(greedy=True)
    together = synth.decode_batch(prompt, sentences, greedy)
    alone = [synth.decode_batch(prompt, [s], greedy)[0] for s in sentences]
    assert [w.size for w in together] == [w.size for w in alone]
    for a, b in zip(together, alone):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # and what synthesize makes of several texts is their sentences' audio, joined text by text
    joined = synth.synthesize(prompt, ["Hello there. Hi."], sampling=greedy, batch_size=2)[0]
    pause = np.zeros(int(0.2 * synth.sample_rate))
    np.testing.assert_allclose(joined, np.concatenate([alone[0], pause, alone[2]]), atol=1e-5)
