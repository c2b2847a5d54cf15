"""The smoke mini corpus, built once per test session and shared by the data and training tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from codec import CodecConfig, LanguageCodec
from tts.data.corpus import build_mini_corpus
from tts.data.pipeline import PipelineConfig, run

ROOT = Path(__file__).resolve().parents[2]


def shared_or_none(*parts: str):
    from tests.conftest import SHARED

    path = SHARED.joinpath(*parts)
    return path if path.exists() else None


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """A smoke corpus (real clips from ../shared/corpus when present, espeak voices always), prepared, phonemized and
    tokenized with a tiny codec. Returns (root, pipeline config, summary)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    root = tmp_path_factory.mktemp("mini")
    sentences = shared_or_none("text", "all_sentences.tsv")
    if sentences is None:
        sentences = root / "sentences.txt"
        sentences.write_text("\n".join(f"This is test sentence number {i} for the corpus." for i in range(20)))
    build_mini_corpus(shared_or_none("corpus", "vctk"), sentences, root / "corpus", "smoke")
    torch.manual_seed(0)
    codec = LanguageCodec(CodecConfig.tiny()).train()
    codec(torch.randn(2, 24000) * 0.1, num_quantizers=8)
    codec.eval().save_pretrained(root / "codec")
    config = PipelineConfig(corpus_dir=root / "corpus", work_dir=root / "work", parts=("train", "test"),
                            chunk_size=4)
    summary = run(config, root / "codec")
    return root, config, summary
