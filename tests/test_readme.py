"""README and docs snippets run: the Python examples, the codec command lines, the recipes and the benchmark (tiny
settings). The VALL-E commands run in tests/tts/test_valle_training.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.support import snippets as blocks

ROOT = Path(__file__).resolve().parents[1]


def setup(tmp_path, tiny_codec) -> Path:
    tiny_codec.save_pretrained(tmp_path / "path" / "to" / "release")
    t = np.arange(16000) / 16000  # 1 s at 16 kHz: resampled to 24000 samples, 75 frames
    sf.write(tmp_path / "speech.flac", (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), 16000)
    sf.write(tmp_path / "speech.wav", (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), 16000)
    return tmp_path


def test_python_snippet(tmp_path, tiny_codec, monkeypatch):
    """The codec's Python example (README and the codec page)."""
    setup(tmp_path, tiny_codec)
    monkeypatch.chdir(tmp_path)
    examples = list(dict.fromkeys(b for b in blocks("python") if "from codec import" in b))
    assert examples
    for code in examples:
        code = "\n".join(line for line in code.splitlines() if "from_official_checkpoint" not in line)
        scope: dict = {}
        exec(compile(code, "snippet", "exec"), scope)
        assert scope["codes"].shape == (1, 8, 75)
        assert sf.info(tmp_path / "resynth.wav").frames == 24000


def test_cli_snippet(tmp_path, tiny_codec):
    setup(tmp_path, tiny_codec)
    cli = next(b for b in blocks("bash") if "python -m codec encode" in b)
    for line in cli.strip().splitlines():
        args = line.split()
        assert args[:3] == ["python", "-m", "codec"]
        proc = subprocess.run([sys.executable, *args[1:]], cwd=tmp_path, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    assert np.load(tmp_path / "codes.npy").shape == (8, 75)
    assert sf.info(tmp_path / "resynth.wav").samplerate == 24000


@pytest.mark.slow
def test_benchmark_runs():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "codec_speed.py"), "--seconds", "1",
                           "--repeats", "1", "--batch-utterances", "2"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "official v2 architecture" in proc.stdout and "codes identical" in proc.stdout
    assert "EnCodec 24 kHz" in proc.stdout  # the README's install puts encodec in place


def test_text_snippet():
    import shutil

    import pytest

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    code = next(b for b in blocks("python") if "build_phonemizer" in b)
    scope: dict = {}
    exec(compile(code.replace('build_phonemizer("espeak")(', 'tokens = build_phonemizer("espeak")('), "README.md",
                 "exec"), scope)
    assert "ˈ" in scope["tokens"][0] and "_" in scope["tokens"][0]


@pytest.mark.slow
def test_recipe_snippets(tmp_path, tiny_codec):
    """The mini recipe (smoke size) builds a corpus; the LibriTTS recipe then prepares that LibriTTS-layout corpus."""
    import shutil

    import pytest

    from tests.conftest import SHARED

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    tiny_codec.save_pretrained(tmp_path / "path" / "to" / "release")
    lines = next(b for b in blocks("bash") if "recipes/mini/prepare.py" in b).strip().splitlines()
    mini = next(line for line in lines if "recipes/mini" in line).replace("--size small", "--size smoke")
    libritts = next(line for line in lines if "recipes/libritts" in line).replace(" --download", "")
    folder = SHARED / "corpus" / "vctk"
    mini = mini.replace("../shared/corpus", str(folder) if folder.exists() else str(tmp_path / "none"))
    sentences = SHARED / "text" / "all_sentences.tsv"
    if not sentences.exists():
        sentences = tmp_path / "s.txt"
        sentences.write_text("\n".join(f"Here is spoken sentence number {i}." for i in range(10)))
    mini = mini.replace("../shared/text/all_sentences.tsv", str(sentences))
    libritts = libritts.replace("data/LibriTTS", "data/mini/corpus").replace(
        "train-clean-100 dev-clean test-clean", "train test")
    for line in (mini, libritts):
        args = line.split()
        proc = subprocess.run([sys.executable, str(ROOT / args[1]), *args[2:]], cwd=tmp_path, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "data" / "libritts" / "cuts_train.jsonl.gz").exists()
    assert '"cuts"' in proc.stdout


@pytest.mark.slow
def test_codec_training_snippet(tmp_path):
    """README's training command (tiny config, 4 steps, one process) and evaluation command on its release."""
    import numpy as np
    import pytest
    from lhotse import CutSet, Recording

    pytest.importorskip("pesq")
    rng = np.random.default_rng(0)
    recordings = []
    for i in range(3):
        sf.write(tmp_path / f"a{i}.wav", (0.1 * rng.standard_normal(24000)).astype(np.float32), 24000)
        recordings.append(Recording.from_file(tmp_path / f"a{i}.wav"))
    (tmp_path / "data" / "mini").mkdir(parents=True)
    for part in ("train", "test"):
        CutSet.from_manifests(recordings=recordings).to_file(tmp_path / "data" / "mini" / f"cuts_{part}.raw.jsonl.gz")
    (tmp_path / "clips").mkdir()
    sf.write(tmp_path / "clips" / "c.wav", (0.1 * rng.standard_normal(12000)).astype(np.float32), 16000)
    train, evaluate, scored = next(b for b in blocks("bash") if "recipes/codec/train.py" in b).strip().splitlines()
    assert scored == evaluate + " --intelligibility"  # tested in tests/codec/test_evaluate_recipe.py
    train = train.replace("recipes/codec/configs/mini.yaml", str(ROOT / "recipes/codec/configs/tiny.yaml"))
    args = train.split()
    assert args[:2] == ["accelerate", "launch"]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--cpu",
           str(ROOT / args[2]), *args[3:], "--set", "train.max_steps=4", "--wandb", "disabled"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "runs" / "codec_mini" / "release" / "model.safetensors").exists()
    args = evaluate.replace("../shared/speech", "clips").split()
    proc = subprocess.run([sys.executable, str(ROOT / args[1]), *args[2:], "--no-vuv"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| release | 8 | 6 |" in proc.stdout and "| paper (LibriTTS test-clean) | 4 | 3 |" in proc.stdout
