"""Fixtures of the server tests: a tiny untrained VALL-E release (it decodes in milliseconds, so the tests exercise the
server, not the model), its synthesizer, and an in-process client of an app on a temporary voices folder."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[serve]')")

from tests.support import tiny_release  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread (after the suite's two): the server's worker is one thread, and its batches form in time even
    where another process holds a core."""
    import torch

    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def tiny_valle(tmp_path_factory) -> Path:
    return tiny_release(tmp_path_factory.mktemp("serve_release"))


@pytest.fixture(scope="session")
def synthesizer(tiny_valle):
    from tts.synthesizer import Synthesizer

    return Synthesizer.from_pretrained(tiny_valle)


@pytest.fixture
def make_client(synthesizer, tmp_path):
    """``make_client(**config)``: a started ``TestClient`` of the app (voices in ``tmp_path/voices``), closed after
    the test."""
    from fastapi.testclient import TestClient

    from tts.serve import ServeConfig
    from tts.serve.app import create_app

    clients = []

    def make(**overrides):
        config = ServeConfig(**{"voices_dir": tmp_path / "voices", **overrides})
        client = TestClient(create_app(config, synthesizer))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)
