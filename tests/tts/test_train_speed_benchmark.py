"""``benchmarks/token_train_speed.py`` and ``train_memory.py`` run and report every figure they promise (tiny models,
a step or two each)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_benchmark(built, script: str, *options: str) -> str:
    """The benchmark's output on the smoke corpus's tiny-model batches (it must exit 0)."""
    root, config, _ = built
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--cuts",
                           str(config.work_dir / "cuts_train.jsonl.gz"), "--codec", str(root / "codec"),
                           "--max-duration", "6", "--set", "model.preset=tiny", *options],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.slow
def test_token_train_speed_benchmark_reports_throughput_padding_and_splits(built):
    out = run_benchmark(built, "token_train_speed.py", "--threads", "1", "--steps", "1", "--warmup", "0", "--profile")
    for model in ("valle", "mobilespeech"):
        assert f"\n{model}, 1 thread(s): " in out
    assert out.count("audio-s/s") == 2 and out.count("padding: phonemes") == 2 and "joint" in out
    assert out.count("split (s/step): data") == 2 and out.count("backward, costliest ops") == 2
    assert "ar.transformer.attn" in out and "decoder.cross" in out and "other (losses, masks, glue)" in out


@pytest.mark.slow
def test_train_memory_benchmark_reports_rss_with_and_without_release(built):
    out = run_benchmark(built, "train_memory.py", "--steps", "2")
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| valle |")]
    assert [r[1].strip() for r in rows] == ["no", "yes"]
    for row in rows:
        setup, first, peak, last = (float(x) for x in row[2:6])
        assert 0 < setup <= peak and first <= peak and last <= peak
    assert all(float(r[6]) > 0 for r in rows)  # seconds per step
    assert rows[0][7].strip() == "" and float(rows[1][7]) >= 0
