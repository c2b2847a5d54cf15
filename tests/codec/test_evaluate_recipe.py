"""recipes/codec/evaluate.py: reconstruction scores, and with --intelligibility WER of original and resynthesis and
speaker similarity, as JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_intelligibility_scores(tmp_path):
    pytest.importorskip("pocketsphinx")
    pytest.importorskip("resemblyzer")
    clips = tmp_path / "clips"
    clips.mkdir()
    rate = 24000
    t = np.arange(2 * rate) / rate
    wav = 0.2 * np.sin(2 * np.pi * 140 * t) * np.clip(3 * np.sin(2 * np.pi * 2 * t), 0, 1)
    for name in ("a.wav", "b.wav"):
        sf.write(clips / name, wav.astype(np.float32), rate)
    (clips / "manifest.tsv").write_text("file\ttranscript\trole\na.wav\thello world\tfull_utterance\n"
                                        "b.wav\tunknown\tfull_utterance\n")
    out = tmp_path / "scores.json"
    proc = subprocess.run([sys.executable, str(ROOT / "recipes" / "codec" / "evaluate.py"), "--codec",
                           str(ROOT / "codec" / "assets" / "languagecodec-mini"), "--clips", str(clips), "--no-vuv",
                           "--intelligibility", "--unquantized", "--threads", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["clips"] == 2
    for k in ("4", "8", "unquantized"):
        s = result["scores"][k]
        assert s["wer"] - s["wer_original"] == pytest.approx(s["wer_gap"])  # one clip has a transcript
        assert -1 <= s["speaker_similarity"] <= 1 and s["mel_distance"] > 0
    assert "WER (resynth / original / gap)" in proc.stdout and "| languagecodec-mini | unquantized |  |" in proc.stdout
