"""The bundled aligner (``tts/assets/aligner-mini``, what ``recipes/aligner/label.py --release bundled`` uses) finds
the phone boundaries of speech it never heard: a sentence outside the corpus, said by an espeak-ng voice at a pitch and
rate no synthetic speaker of the corpus has, whose exact timings espeak-ng reports."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from codec import LanguageCodec
from codec.model import BUNDLED_DIR
from toolkit.audio import resample
from tts.data.espeak_timing import frame_durations, synthesize
from tts.models.aligner import boundary_error, uniform_durations
from tts.release import bundled_release, load_token_model
from tts.text import build_phonemizer, is_phone

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")

TEXT = "Nine quiet otters carried pebbles across the frozen river at dawn."


def test_bundled_aligner_finds_boundaries_of_an_unheard_voice():
    release = load_token_model(bundled_release("aligner"))
    assert release.model_type == "aligner"
    codec = LanguageCodec.from_pretrained(BUNDLED_DIR).eval()
    said = synthesize(TEXT, "en-us+m3", 50, 160)  # the corpus's speakers have pitch/rate 40/150, 60/170, 30/140, 70/185
    wav = resample(said.audio.astype(np.float32) / 32768, said.sample_rate, codec.sample_rate)
    with torch.no_grad():
        codes = codec.encode(torch.from_numpy(wav)[None], num_quantizers=8)  # [1, 8, T]
    frames = codes.shape[-1]
    assert abs(frames - math.ceil(len(said.audio) * codec.frame_rate / said.sample_rate)) <= 1
    tokens = build_phonemizer("espeak")([TEXT])[0]
    exact = torch.tensor(frame_durations(tokens, said, codec.frame_rate, frames, min_exact=1.0).frames)
    ids = torch.tensor([release.symbols.encode(tokens)])
    with torch.no_grad():
        found = release.model.aligner.durations(ids, torch.tensor([len(tokens)]), codes, torch.tensor([frames]))[0]
    assert int(found[: len(tokens)].sum()) == frames
    phones = torch.tensor([is_phone(t) for t in tokens])
    error = float(boundary_error(found[None, : len(tokens)], exact[None], phones[None]))
    uniform = float(boundary_error(uniform_durations(phones, frames)[None], exact[None], phones[None]))
    assert error < 1.5 and error < 0.3 * uniform, (error, uniform)
