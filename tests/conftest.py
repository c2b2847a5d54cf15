"""Shared test helpers: the ../shared data folder (present in CI, absent on a user's machine) and tiny codecs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

SHARED = Path(os.environ.get("LCTTS_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))


def shared_path(*parts: str) -> Path:
    """A path inside ../shared; the test is skipped, with the reason, when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (the development data folder ../shared is not beside the project)")
    return path


# Under pytest-xdist (README's test command runs two workers) each worker takes one core; alone, a test takes two.
THREADS = 1 if os.environ.get("PYTEST_XDIST_WORKER") else 2


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_num_threads(THREADS)
    yield


@pytest.fixture
def tiny_codec():
    """A tiny MCRVQ codec whose codebooks were initialized by one training forward on noise."""
    from codec import CodecConfig, LanguageCodec

    model = LanguageCodec(CodecConfig.tiny())
    model.train()
    model(torch.randn(2, 24000) * 0.1, num_quantizers=8)
    return model.eval()
