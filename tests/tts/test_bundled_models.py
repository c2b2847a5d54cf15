"""The bundled default models work right after install: `tts synthesize` with no --checkpoint, for each model type,
writes a 24 kHz WAV whose length fits the text; the bundle is fp16 and small."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import shared_path
from tts import Synthesizer
from tts.models.sampling import length_limits
from tts.synthesizer import BUNDLED_MODELS, DEFAULT_MODEL, MODEL_TYPES

PROMPT = "librispeech_1089_1089-134686-0004.wav"  # 5.2 s, all of it used as the prompt (--prompt-seconds 6)
TRANSCRIPT = "Number ten, fresh nelly is waiting on you, good night husband."
SENTENCE = "The birch canoe slid on the smooth planks."


def tts(*args):
    return subprocess.run([sys.executable, "-m", "tts.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


@pytest.mark.parametrize("model", MODEL_TYPES)
def test_bundled_release_is_fp16_and_small(model):
    from safetensors import safe_open

    folder = BUNDLED_MODELS / f"{model}-mini"
    weights = folder / "model.safetensors"
    assert weights.stat().st_size < 40e6
    with safe_open(str(weights), "pt") as f:
        dtypes = {f.get_slice(name).get_dtype() for name in f.keys()}
    assert dtypes == {"F16"}, dtypes


@pytest.mark.parametrize("model", MODEL_TYPES)
def test_cli_synthesizes_with_the_bundled_model(model, tmp_path):
    out = tmp_path / "hello.wav"
    args = ["synthesize", "--prompt", shared_path("speech", PROMPT), "--text", SENTENCE, "--out", out, "--seed", "0"]
    if model != DEFAULT_MODEL:  # the default needs no --model
        args += ["--model", model]
    if model == "valle":  # VALL-E needs the prompt's transcript (else it is transcribed offline)
        args += ["--prompt-seconds", "6", "--prompt-text", TRANSCRIPT]
    result = tts(*args)
    assert result.returncode == 0, result.stderr
    audio, rate = sf.read(out)
    assert rate == 24000 and audio.ndim == 1 and np.isfinite(audio).all()
    seconds = len(audio) / rate
    if model == "mobilespeech":  # predicted durations: a person says this sentence in about 2.5 s
        assert 1.0 < seconds < 5.0, seconds
    else:  # the AR stage stops by its end token or at its length limits: 2..20 frames per phoneme token
        n = len(Synthesizer.from_pretrained(model=model).phonemize(SENTENCE))
        low, high = length_limits(n, 75)
        assert low / 75 - 0.05 <= seconds <= high / 75 + 0.05, (seconds, low, high)
    assert np.sqrt(np.mean(audio ** 2)) > 1e-3  # not silence
