"""A release's speaking-rate calibration (``config.json`` ``"pace"``): written by ``save_token_model`` / ``export.py
--pace``, read back strictly, multiplied into the speed the model is asked for, and measured by
``recipes/eval/pace.py``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import tiny_release
from tts.release import ReleaseError, load_token_model, save_token_model
from tts.synthesizer import Synthesizer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    """(a tiny MobileSpeech release, the same with pace 1.5, a tiny VALL-E release without durations)."""
    root = tmp_path_factory.mktemp("pace")
    plain = tiny_release(root, "mobilespeech")
    release = load_token_model(plain)
    paced = save_token_model(release.model, root / "paced", release.symbols, codec=release.codec, pace=1.5)
    return plain, paced, tiny_release(root / "valle")


def test_pace_is_written_read_and_multiplied_into_the_speed(releases, monkeypatch):
    plain, paced, valle = releases
    assert "pace" not in json.loads((plain / "config.json").read_text())  # 1.0 is not written: older readers agree
    assert load_token_model(plain).pace == 1.0 and load_token_model(paced).pace == 1.5
    synth = Synthesizer.from_pretrained(paced)
    asked = []
    monkeypatch.setattr(synth.model, "generate", lambda request: asked.append(request.speed) or [])
    prompt = synth.prepare_prompt(ROOT / "examples" / "prompt.wav", "")
    synth.decode_batch(prompt, synth.prepare_sentences(["Hello there."]), speed=0.8)
    assert asked == [pytest.approx(1.2)]


def test_bad_paces_are_refused(releases, tmp_path):
    plain, paced, valle = releases
    model = load_token_model(valle)
    with pytest.raises(ReleaseError, match="does not set its own pace"):
        save_token_model(model.model, tmp_path / "no", model.symbols, codec=model.codec, pace=1.2)
    ms = load_token_model(plain)
    for pace in (0.0, 5.0, float("nan"), True):
        with pytest.raises(ReleaseError, match="pace must be a number"):
            save_token_model(ms.model, tmp_path / "no", ms.symbols, codec=ms.codec, pace=pace)
    assert not (tmp_path / "no").exists()
    broken = tmp_path / "broken"
    subprocess.run(["cp", "-r", str(paced), str(broken)], check=True)
    config = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**config, "pace": "fast"}))
    with pytest.raises(ReleaseError, match=r"config.json: pace must be a number .* got 'fast'"):
        load_token_model(broken)


def pace_recipe(*args):
    return subprocess.run([sys.executable, str(ROOT / "recipes" / "eval" / "pace.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=600)


def test_pace_recipe_measures_the_ratio(built, releases):
    _, config, _ = built
    plain, paced, valle = releases
    cuts = config.work_dir / "cuts_train.jsonl.gz"
    recorded = []
    for release in (plain, paced):
        proc = pace_recipe("--checkpoint", release, "--cuts", cuts, "--limit", "2", "--steps", "2", "--threads", "1")
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.strip().splitlines()
        assert len(lines) == 4 and all(" s generated\tratio " in line for line in lines[:2]), proc.stdout
        ratio = float(re.search(r"ratio (\d+\.\d+) \(median", lines[2]).group(1))
        record = float(lines[3].rsplit(" ", 1)[1])
        pace = load_token_model(release).pace
        assert f"the release's pace {pace}" in lines[2] and record == pytest.approx(pace * ratio, abs=2e-3)
        recorded.append(ratio)
    assert all(r > 0 for r in recorded)
    proc = pace_recipe("--checkpoint", valle, "--cuts", cuts, "--limit", "2")
    assert proc.returncode == 2 and "nothing to calibrate" in proc.stderr.strip().splitlines()[-1], proc.stderr
    proc = pace_recipe("--checkpoint", plain, "--cuts", cuts, "--except-speakers", "*")
    assert proc.returncode == 2 and "has two whole recordings" in proc.stderr.strip().splitlines()[-1], proc.stderr
