"""The MCRVQ ablation recipe at smoke scale: every stage runs, the report has its tables, a re-run skips done stages."""

from __future__ import annotations

import pytest

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml
from safetensors.numpy import load_file

from tests.conftest import shared_path
from tests.support import snippet
from tts.evaluation import codebook_entropy

ROOT = Path(__file__).resolve().parents[2]


def test_codebook_entropy():
    uniform = [np.stack([np.arange(16), np.zeros(16)], axis=1)]
    assert codebook_entropy(uniform, 16)["entropy_bits"] == 4.0
    one = codebook_entropy([np.zeros((10, 2), dtype=int)], 16)
    assert one["entropy_bits"] == 0.0 and one["perplexity"] == 1.0 and one["used"] == 1 / 16


@pytest.mark.slow
def test_smoke_run(tmp_path):
    shared_path("corpus", "vctk")
    shared_path("speech", "manifest.tsv")
    documented = snippet("bash", "recipes/ablation/run.py").strip()  # the ablation page's command, smoke-sized
    documented = documented.replace("configs/mini.yaml", "configs/smoke.yaml").replace("runs/ablation_mini",
                                                                                       str(tmp_path / "run"))
    cmd = [sys.executable, *documented.split()[1:], "--threads", "1"]
    assert cmd[1] == "recipes/ablation/run.py"  # run from the repository root, as documented
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(results["codec"]) == {"mcrvq", "rvq"}
    assert set(results["codec"]["mcrvq"]) == {"1", "3", "4", "8"}
    assert {"pesq", "stoi", "vuv_f1", "wer"} <= set(results["codec"]["rvq"]["8"])
    assert set(results["tts"]) == {"valle_mcrvq", "valle_rvq", "mobilespeech_mcrvq", "mobilespeech_rvq"}
    assert results["tts_reference"]["ground truth"]["items"] == 1
    assert all(0 < s["entropy_bits"] <= 6 for s in results["entropy"].values())  # tiny codebooks of 64
    report = (tmp_path / "run" / "report.md").read_text()
    for heading in ("## Codec reconstruction", "## How much the first codebook carries", "## Zero-shot TTS"):
        assert heading in report
    assert "| ground truth | |" in report
    for chart in ("codec.png", "tts.png"):  # the report's plots, beside it
        assert f"]({chart})" in report and (tmp_path / "run" / chart).read_bytes()[:4] == b"\x89PNG"
    # A forced eval re-run takes every part from <out-dir>/eval: nothing is synthesized or scored again.
    again = subprocess.run(cmd + ["--force", "eval", "report"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert again.returncode == 0 and "[ablation] codec_mcrvq: done" in again.stdout, again.stderr[-2000:]
    assert "[ablation] eval\n" in again.stdout and "[ablation] report\n" in again.stdout
    assert "zero-shot" not in again.stderr and "evaluate" not in again.stderr
    assert json.loads((tmp_path / "run" / "results.json").read_text()) == results

    # A second ablation reuses the first one's data and starts its MCRVQ codec from the first one's checkpoint.
    first = tmp_path / "run"
    config = yaml.safe_load((ROOT / "recipes" / "ablation" / "configs" / "smoke.yaml").read_text())
    config["reuse"] = {"corpus": str(first / "corpus"), "data": str(first / "data"),
                       "tokens_mcrvq": str(first / "tokens_mcrvq")}
    config["codec"]["resume_from"] = {"mcrvq": str(first / "codec_mcrvq" / "checkpoints" / "step-00000020")}
    (tmp_path / "second.yaml").write_text(yaml.safe_dump(config))
    second = [sys.executable, str(ROOT / "recipes" / "ablation" / "run.py"), "--config", str(tmp_path / "second.yaml"),
              "--out-dir", str(tmp_path / "second"), "--threads", "1", "--stages"]
    out = subprocess.run(second + ["corpus", "data", "tokens_mcrvq", "codec_mcrvq"], capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "reused" in out.stdout and "step 20" in out.stdout
    assert (tmp_path / "second" / "data").resolve() == (first / "data").resolve()
    mine = load_file(str(tmp_path / "second" / "codec_mcrvq" / "release" / "model.safetensors"))
    theirs = load_file(str(first / "codec_mcrvq" / "release" / "model.safetensors"))
    assert mine.keys() == theirs.keys() and all(np.array_equal(mine[k], theirs[k]) for k in mine)
    # Eval scores what is ready, keeps it, and names what is not.
    out = subprocess.run(second + ["eval"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 1 and "not yet trained or tokenized: codec_rvq" in out.stderr, out.stderr[-2000:]
    assert (tmp_path / "second" / "eval" / "codec_mcrvq.json").is_file()
    assert (tmp_path / "second" / "eval" / "entropy_mcrvq.json").is_file()
    # A checkpoint of a run with other settings is refused, by name.
    config["codec"]["set"] = config["codec"]["set"] + ["train.learning_rate=0.0001"]
    (tmp_path / "third.yaml").write_text(yaml.safe_dump(config))
    third = [sys.executable, str(ROOT / "recipes" / "ablation" / "run.py"), "--config", str(tmp_path / "third.yaml"),
             "--out-dir", str(tmp_path / "third"), "--threads", "1", "--stages", "corpus", "data", "codec_mcrvq"]
    out = subprocess.run(third, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 1 and "settings differ in learning_rate" in out.stderr, out.stderr[-2000:]
    assert not (tmp_path / "third" / "codec_mcrvq" / "release").exists()
