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
from tests.support import tiny_hf_models
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


def test_pooled_draws_are_the_mean_and_spread_of_their_rows():
    results = {"summary": {"truth": {"items": 2.0, "wer": 0.1},
                           "m draw 1": {"items": 2.0, "wer": 0.8, "speaker_similarity": 0.6, "dnsmos_ovrl": 2.0},
                           "m draw 2": {"items": 2.0, "wer": 0.9, "speaker_similarity": 0.7},
                           "m draw 3": {"items": 2.0, "wer": 1.0, "speaker_similarity": 0.8}}}
    evaluation.pool_draws(results, {"m": ["m draw 1", "m draw 2", "m draw 3"]})
    pooled, spread = results["summary"]["m"], results["spread"]["m"]
    assert pooled["items"] == 6.0
    assert pooled["wer"] == pytest.approx(0.9) and pooled["speaker_similarity"] == pytest.approx(0.7)
    assert spread["wer"] == pytest.approx(0.1) and spread["speaker_similarity"] == pytest.approx(0.1)
    assert "dnsmos_ovrl" not in pooled and "dnsmos_ovrl" not in spread  # a figure not every draw has is left out
    assert results["summary"]["truth"] == {"items": 2.0, "wer": 0.1}
    assert "| m | 6 | 0.900 | 0.700 |" in evaluation.markdown_table(results["summary"])


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


def documented(index: int, folder, *extra: str) -> subprocess.CompletedProcess:
    """Line ``index`` of the evaluation page's commands, run in ``folder`` (plus ``extra`` options)."""
    import shlex

    from tests.support import snippet

    args = shlex.split(snippet("bash", "tts evaluate").strip().splitlines()[index])
    assert args[:2] == ["tts", "evaluate"]
    return subprocess.run([sys.executable, "-m", "tts.cli", *args[1:], *extra], cwd=folder, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_cli_manifest_writes_json_and_markdown(tmp_path, capsys):
    """The documented manifest command (without DNSMOS, the slow part), and a broken manifest."""
    clip = shared_path("speech", "vctk_p273_p273_119.wav")  # 2.4 s: the shortest transcribed clip
    wav, rate = sf.read(clip, dtype="float32")
    sf.write(tmp_path / "quiet.wav", wav * 0.5, rate)
    rows = [{"audio": str(clip), "text": transcripts()[clip.name], "system": "ground truth"},
            {"audio": "quiet.wav", "reference": str(clip), "speaker_reference": str(clip), "system": "resynthesis"}]
    (tmp_path / "items.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = documented(1, tmp_path, "--no-dnsmos")
    assert result.returncode == 0, result.stderr
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert set(scores["summary"]) == {"ground truth", "resynthesis"}
    resynthesis = scores["summary"]["resynthesis"]
    # a gain change is a near-perfect resynthesis; its speaker is the reference's
    assert resynthesis["stoi"] > 0.99 and resynthesis["speaker_similarity"] > 0.95
    assert "wer" in scores["summary"]["ground truth"] and "wer" not in resynthesis
    assert (tmp_path / "table.md").read_text().startswith("| system | items |")
    assert (tmp_path / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a broken manifest is refused in one line, without output (in-process: what the entry point runs)
    from tts import cli

    (tmp_path / "bad.jsonl").write_text('{"audio": "x.wav", "bogus": 1}\n')
    capsys.readouterr()
    code = cli.main(["evaluate", "--manifest", str(tmp_path / "bad.jsonl"), "--no-dnsmos", "--out",
                     str(tmp_path / "bad.json")])
    stderr = capsys.readouterr().err
    assert code == 1 and stderr.strip().startswith("tts: error: manifest:"), stderr
    assert not (tmp_path / "bad.json").exists()


def test_local_huggingface_models_replace_the_defaults(tmp_path):
    asr, speaker = tiny_hf_models(tmp_path)
    scorer = evaluation.Scorer(str(asr), str(speaker), dnsmos=False).check()
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal(24000).astype(np.float32) * 0.1 for _ in range(2))
    text = scorer.transcribe(a, 24000)
    assert isinstance(text, str) and set(text) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ' ")  # the CTC model's alphabet
    assert scorer.speaker_similarity(a, a, 24000) == pytest.approx(1.0, abs=1e-6)
    embedding = scorer.embed(a, 24000)
    assert embedding.shape == (8,)  # the x-vector model's, not resemblyzer's 256
    assert -1.0 <= scorer.speaker_similarity(a, b, 24000) <= 1.0
    assert scorer.describe()["asr"] == str(asr)
    with pytest.raises(ValueError, match="not a HuggingFace model folder"):
        evaluation.Scorer(asr_model=str(tmp_path)).check()


@pytest.mark.slow
def test_cli_evaluate_with_local_models_and_plot(tmp_path, capsys):
    """The documented single-file command (with DNSMOS), the documented command with local HuggingFace models (tiny
    random ones here), and a model folder that does not exist."""
    (tmp_path / "models").mkdir()
    asr, speaker = tiny_hf_models(tmp_path / "models")
    asr = asr.rename(tmp_path / "models" / "hubert-large-ls960-ft")
    speaker = speaker.rename(tmp_path / "models" / "wavlm-base-plus-sv")
    clip = shared_path("speech", "vctk_p273_p273_119.wav")  # 2.4 s: the shortest transcribed clip
    wav, rate = sf.read(clip, dtype="float32")
    sf.write(tmp_path / "hello.wav", wav, rate)
    sf.write(tmp_path / "prompt.wav", wav, rate)
    result = documented(0, tmp_path, "--out", "one.json")
    assert result.returncode == 0, result.stderr
    one = json.loads((tmp_path / "one.json").read_text())["items"][0]
    assert {"wer", "speaker_similarity", "dnsmos_ovrl"} <= set(one)
    (tmp_path / "items.jsonl").write_text(json.dumps({"audio": "hello.wav", "text": "anything",
                                                      "speaker_reference": "prompt.wav"}) + "\n")
    result = documented(2, tmp_path, "--no-dnsmos", "--out", "s.json", "--plot", "s.png")
    assert result.returncode == 0, result.stderr
    scores = json.loads((tmp_path / "s.json").read_text())
    assert scores["models"]["speaker"] == "models/wavlm-base-plus-sv"
    assert scores["items"][0]["speaker_similarity"] == pytest.approx(1.0, abs=1e-5)
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from tts import cli

    capsys.readouterr()  # what the model set-up printed
    code = cli.main(["evaluate", "--audio", str(clip), "--text", "anything", "--no-dnsmos", "--asr-model",
                     str(tmp_path / "missing"), "--out", str(tmp_path / "t.json")])
    stderr = capsys.readouterr().err
    assert code == 1 and "not a HuggingFace model folder" in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1 and not (tmp_path / "t.json").exists()
