"""The codec that ships with the project: loads after install, fp16 on disk and small, reconstructs real speech from
its codes (decoding another clip's codes is clearly worse)."""

from __future__ import annotations

import json

import torch

from codec import LanguageCodec, load_codec
from codec.losses import MelLoss
from codec import BUNDLED_DIR
from codec.checkpoint import CONFIG_NAME, WEIGHTS_NAME


def test_bundled_codec_is_small_fp16_and_loads():
    assert (BUNDLED_DIR / CONFIG_NAME).is_file(), "the bundled codec is missing"
    weights = BUNDLED_DIR / WEIGHTS_NAME
    assert weights.stat().st_size < 50 * 2**20
    from safetensors import safe_open

    with safe_open(str(weights), "pt") as f:
        dtypes = {k: f.get_tensor(k).dtype for k in f.keys() if f.get_tensor(k).is_floating_point()}
    # network weights in fp16; the codebooks stay fp32 so that nearest-codeword search gives the trained codes
    assert {d for k, d in dtypes.items() if ".codebook." not in k} == {torch.float16}
    assert {d for k, d in dtypes.items() if ".codebook." in k} == {torch.float32}
    codec = load_codec(None)
    assert isinstance(codec, LanguageCodec) and (codec.sample_rate, codec.frame_rate) == (24000, 75)
    assert json.loads((BUNDLED_DIR / CONFIG_NAME).read_text())


def test_bundled_codec_reconstructs_from_its_codes():
    torch.manual_seed(0)
    codec = load_codec(None)
    t = torch.arange(48000) / 24000
    # two different "voices": harmonic tones with syllable-like envelopes at different pitch and timing
    wavs = []
    for f0, phase in ((120.0, 0.0), (210.0, 1.7)):
        envelope = (4 * torch.sin(2 * torch.pi * 3 * t + phase)).clamp(0, 1)
        tone = sum(torch.sin(2 * torch.pi * k * f0 * t) / k for k in range(1, 8))
        wavs.append(0.3 * envelope * tone + 0.003 * torch.randn(t.numel()))  # a noise floor, not digital silence
    wav = torch.stack(wavs)[:, None]
    codes = codec.encode(wav)
    mel = MelLoss()
    own = mel(codec.decode(codes)[..., :48000], wav).item()
    swapped = mel(codec.decode(codes.flip(0))[..., :48000], wav).item()
    assert own < 0.85 * swapped, (own, swapped)  # measured 1.50 vs 2.00 (a codec ignoring its codes: equal)
