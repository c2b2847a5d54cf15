"""``benchmarks/token_train_speed.py`` runs and reports every figure it promises (tiny models, one step each)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_token_train_speed_benchmark_reports_throughput_padding_and_splits(built):
    root, config, _ = built
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "token_train_speed.py"), "--cuts",
         str(config.work_dir / "cuts_train.jsonl.gz"), "--codec", str(root / "codec"), "--threads", "1",
         "--steps", "1", "--warmup", "0", "--max-duration", "6", "--profile", "--set", "model.preset=tiny"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    for model in ("valle", "mobilespeech"):
        assert f"\n{model}, 1 thread(s): " in out
    assert out.count("audio-s/s") == 2 and out.count("padding: phonemes") == 2 and "joint" in out
    assert out.count("split (s/step): data") == 2 and out.count("backward, costliest ops") == 2
    assert "ar.transformer.attn" in out and "decoder.cross" in out and "other (losses, masks, glue)" in out
