"""The MCRVQ ablation recipe at smoke scale: every stage runs, the report has its tables, a re-run skips done stages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.conftest import shared_path
from tts.ablation import codebook_entropy

ROOT = Path(__file__).resolve().parents[2]


def test_codebook_entropy():
    uniform = [np.stack([np.arange(16), np.zeros(16)], axis=1)]
    assert codebook_entropy(uniform, 16)["entropy_bits"] == 4.0
    one = codebook_entropy([np.zeros((10, 2), dtype=int)], 16)
    assert one["entropy_bits"] == 0.0 and one["perplexity"] == 1.0 and one["used"] == 1 / 16


def test_smoke_run(tmp_path):
    shared_path("corpus", "vctk")
    shared_path("speech", "manifest.tsv")
    cmd = [sys.executable, str(ROOT / "recipes" / "ablation" / "run.py"), "--config",
           str(ROOT / "recipes" / "ablation" / "configs" / "smoke.yaml"), "--out-dir", str(tmp_path / "run"),
           "--threads", "2"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(results["codec"]) == {"mcrvq", "rvq"}
    assert set(results["codec"]["mcrvq"]) == {"1", "3", "4", "8"}
    assert {"pesq", "stoi", "vuv_f1", "wer"} <= set(results["codec"]["rvq"]["8"])
    assert set(results["tts"]) == {"valle_mcrvq", "valle_rvq", "mobilespeech_mcrvq", "mobilespeech_rvq"}
    assert all(0 < s["entropy_bits"] <= 6 for s in results["entropy"].values())  # tiny codebooks of 64
    report = (tmp_path / "run" / "report.md").read_text()
    for heading in ("## Codec reconstruction", "## How much the first codebook carries", "## Zero-shot TTS"):
        assert heading in report
    for chart in ("codec.png", "tts.png"):  # the report's plots, beside it
        assert f"]({chart})" in report and (tmp_path / "run" / chart).read_bytes()[:4] == b"\x89PNG"
    again = subprocess.run(cmd + ["--force", "report"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert again.returncode == 0 and "[ablation] codec_mcrvq: done" in again.stdout, again.stderr[-2000:]
    assert "[ablation] report\n" in again.stdout
