"""`tts evaluate` and its metrics: text normalization for WER, offline ASR, speaker similarity, DNSMOS, manifests."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import shared_path
from tts import evaluation


def transcripts():
    with open(shared_path("speech", "manifest.tsv"), newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    header = rows[0]
    return {row[0]: row[header.index("transcript")] for row in rows[1:]}


def test_wer_normalizes_both_sides():
    assert evaluation.normalize_for_wer("Dr. Smith paid $5, didn't he?") == "doctor smith paid five dollars didnt he"
    assert evaluation.word_error_rate("NUMBER TEN, fresh nelly", "number ten fresh nelly") == 0.0
    assert evaluation.word_error_rate("a b c d", "a x c") == pytest.approx(0.5)
    assert evaluation.word_error_rate("hello", "") == 1.0


def test_asr_and_speaker_similarity_on_real_speech():
    a = shared_path("speech", "librispeech_1089_1089-134686-0004.wav")
    same = shared_path("speech", "librispeech_1089_1089-134691-0001-crop3s.wav")
    other = shared_path("speech", "vctk_p233_p233_180.wav")
    wav, rate = sf.read(a, dtype="float32")
    hypothesis = evaluation.transcribe(wav, rate)
    assert evaluation.word_error_rate(transcripts()[a.name], hypothesis) < 0.6, hypothesis
    x = {p: sf.read(p, dtype="float32")[0] for p in (same, other)}
    assert evaluation.speaker_similarity(wav, x[same], rate) > evaluation.speaker_similarity(wav, x[other], rate) + 0.1
    noise = np.random.default_rng(0).standard_normal(rate * 3).astype(np.float32) * 0.3
    clean, noisy = evaluation.dnsmos(wav, rate), evaluation.dnsmos(noise, rate)
    assert clean["dnsmos_ovrl"] > noisy["dnsmos_ovrl"] + 0.5, (clean, noisy)


def test_cli_manifest_writes_json_and_markdown(tmp_path):
    clip = shared_path("speech", "librispeech_1221_1221-135767-0014.wav")
    wav, rate = sf.read(clip, dtype="float32")
    sf.write(tmp_path / "quiet.wav", wav * 0.5, rate)
    rows = [{"audio": str(clip), "text": transcripts()[clip.name], "system": "ground truth"},
            {"audio": "quiet.wav", "reference": str(clip), "speaker_reference": str(clip), "system": "resynthesis"}]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cmd = [sys.executable, "-m", "tts.cli", "evaluate", "--manifest", tmp_path / "m.jsonl", "--no-dnsmos",
           "--out", tmp_path / "scores.json", "--markdown", tmp_path / "table.md"]
    result = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert set(scores["summary"]) == {"ground truth", "resynthesis"}
    resynthesis = scores["summary"]["resynthesis"]
    # a gain change is a near-perfect resynthesis; its speaker is the reference's
    assert resynthesis["stoi"] > 0.99 and resynthesis["speaker_similarity"] > 0.95
    assert "wer" in scores["summary"]["ground truth"] and "wer" not in resynthesis
    assert (tmp_path / "table.md").read_text().startswith("| system | items |")
    # a broken manifest is refused in one line, without output
    (tmp_path / "bad.jsonl").write_text('{"audio": "x.wav", "bogus": 1}\n')
    cmd[5], cmd[-3] = tmp_path / "bad.jsonl", tmp_path / "bad.json"
    result = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and result.stderr.strip().startswith("tts: error: manifest:"), result.stderr
    assert not (tmp_path / "bad.json").exists()
