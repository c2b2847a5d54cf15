"""`tts synthesize` end to end on a small release, the Python API, and every bad input refused in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from lhotse import CutSet

from tts import Synthesizer
from tts.models.sampling import SamplingConfig
from tts.models.valle import Valle, ValleConfig
from tts.release import save_token_model
from tts.synthesizer import SynthesisError, speech_start, split_sentences
from tts.text import SymbolTable


@pytest.fixture(scope="module")
def release(built, tmp_path_factory):
    """An (untrained) tiny VALL-E release on the test corpus's symbols and tiny codec, plus a prompt clip and its
    transcript from that corpus."""
    root, config, _ = built
    symbols = SymbolTable.load(config.work_dir / "symbols.json")
    torch.manual_seed(0)
    model = Valle(ValleConfig.tiny(len(symbols)), ("ar", "nar"))
    directory = save_token_model(model, tmp_path_factory.mktemp("release") / "valle", symbols,
                                 codec=str(root / "codec"))
    cut = max(CutSet.from_file(config.work_dir / "cuts_train.jsonl.gz"), key=lambda c: c.duration)
    folder = tmp_path_factory.mktemp("prompt")
    prompt = folder / "prompt.flac"
    audio = cut.load_audio()
    # stereo at 16 kHz with half a second of leading silence: the CLI resamples, downmixes and skips the silence
    wav = np.concatenate([np.zeros(12000, np.float32), audio[0]])
    from toolkit.audio import resample
    mono16 = resample(wav, cut.sampling_rate, 16000)
    sf.write(prompt, np.stack([mono16, mono16], axis=1), 16000)
    return directory, prompt, cut.supervisions[0].text


def tts(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "tts.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def test_split_sentences_and_speech_start():
    assert split_sentences("One. Two!  Three? four") == ["One.", "Two!", "Three?", "four"]
    assert split_sentences("  ") == []
    wav = torch.zeros(24000)
    wav[7200:] = 0.3 * torch.sin(torch.arange(16800) * 0.1)
    assert 6720 <= speech_start(wav, 24000) <= 7200
    with pytest.raises(SynthesisError, match="silent"):
        speech_start(torch.zeros(48000), 24000)


def test_cli_end_to_end(release, tmp_path):
    directory, prompt, transcript = release
    out = tmp_path / "hello.wav"
    result = tts("synthesize", "--checkpoint", directory, "--prompt", prompt, "--prompt-text", transcript,
                 # each sentence holds phonemes of the smoke corpus, also when it is built without ../shared
                 "--text", "Hello there. Is this the test?", "--out", out, "--seed", "1")
    assert result.returncode == 0, result.stderr
    audio, rate = sf.read(out)
    assert rate == 24000 and audio.ndim == 1
    # two sentences of ~10 phonemes each: between 2 and 20 frames per phoneme at 75 Hz, plus the pause
    assert 0.5 < len(audio) / rate < 8.0
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0
    # a text file: one output per non-blank line, numbered by line, in a folder made for them
    lines = tmp_path / "lines.txt"
    lines.write_text("Good morning.\n\nSee you soon.\n")
    result = tts("synthesize", "--checkpoint", directory, "--prompt", prompt, "--prompt-text", transcript,
                 "--text-file", lines, "--out", tmp_path / "many", "--greedy")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == ["0001.wav", "0003.wav"]


def test_prompt_without_transcript_is_transcribed_offline(release, tmp_path):
    directory, prompt, _ = release
    result = tts("synthesize", "--checkpoint", directory, "--prompt", prompt, "--text", "Hello.", "--out",
                 tmp_path / "a.wav", "--greedy")
    assert result.returncode == 0, result.stderr
    assert "transcribed offline" in result.stderr and (tmp_path / "a.wav").is_file()


def test_python_api_is_seeded_and_batched(release):
    directory, prompt, transcript = release
    synth = Synthesizer.from_pretrained(directory)
    kwargs = dict(prompt_text=transcript, sampling=SamplingConfig(), seed=3)
    one = synth.synthesize(prompt, "A short test.", **kwargs)
    again = synth.synthesize(prompt, "A short test.", **kwargs)
    assert isinstance(one, np.ndarray) and np.array_equal(one, again)
    wav, rate = sf.read(prompt, dtype="float32")
    both = synth.synthesize(wav.T, ["A short test.", "And another one."], sample_rate=rate, **kwargs)
    assert len(both) == 2 and all(w.ndim == 1 and w.size > 0 for w in both)


@pytest.mark.slow
def test_bad_inputs_are_refused_in_one_line(release, tmp_path, capsys, monkeypatch):
    """Every case in-process through ``tts.cli.main`` (what the ``tts`` entry point runs); the first also as a real
    process, for its exit status and stderr."""
    from tts import cli

    directory, prompt, transcript = release
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("not audio")
    silent, short = tmp_path / "silent.wav", tmp_path / "short.wav"
    sf.write(silent, np.zeros(72000, np.float32), 24000)
    sf.write(short, 0.3 * np.sin(np.arange(12000, dtype=np.float32) * 0.05), 24000)
    not_release = tmp_path / "empty_dir"
    not_release.mkdir()
    base = ["--checkpoint", directory, "--prompt", prompt, "--prompt-text", transcript]
    cases = {
        "missing prompt": ["--checkpoint", directory, "--prompt", tmp_path / "nope.wav", "--prompt-text", "hi",
                           "--text", "Hello."],
        "unreadable prompt": ["--checkpoint", directory, "--prompt", not_audio, "--prompt-text", "hi", "--text",
                              "Hello."],
        "silent prompt": ["--checkpoint", directory, "--prompt", silent, "--prompt-text", "hi", "--text", "Hello."],
        "short prompt": ["--checkpoint", directory, "--prompt", short, "--prompt-text", "hi", "--text", "Hello."],
        "empty text": [*base, "--text", "   "],
        "unpronounceable": [*base, "--text", "?!... --"],
        "unknown model": [*base, "--model", "tacotron", "--text", "Hello."],
        "not a release": ["--checkpoint", not_release, "--prompt", prompt, "--prompt-text", transcript, "--text",
                          "Hello."],
        "unwritable output": [*base, "--text", "Hello.", "--out", tmp_path / "no" / "such" / "dir.wav"],
        "bad output suffix": [*base, "--text", "Hello.", "--out", tmp_path / "out.txt"],
        "speed without durations": [*base, "--text", "Hello.", "--speed", "1.5"],  # this VALL-E has no pointer
    }
    monkeypatch.chdir(tmp_path)
    for index, (name, args) in enumerate(cases.items()):
        out = [] if "--out" in args else ["--out", tmp_path / f"{name.replace(' ', '_')}.wav"]
        if index == 0:
            result = tts("synthesize", *args, *out, cwd=tmp_path)
            code, stderr = result.returncode, result.stderr
        else:
            code = cli.main(["synthesize", *map(str, args), *map(str, out)])
            stderr = capsys.readouterr().err
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert code == 1, (name, code, stderr)
        assert len(lines) == 1 and lines[0].startswith("tts: error:") and "Traceback" not in stderr, (name, stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty_dir", "notes.wav", "short.wav", "silent.wav"]


@pytest.mark.slow
def test_zero_shot_recipe(release, tmp_path):
    from tests.conftest import shared_path
    from tests.support import shortest_speaker_clips

    clips = shortest_speaker_clips(shared_path("speech"), tmp_path / "clips")
    directory, _, _ = release
    script = Path(__file__).resolve().parents[2] / "recipes" / "eval" / "zero_shot.py"
    result = subprocess.run([sys.executable, str(script), "--checkpoint", str(directory), "--clips", str(clips),
                             "--out-dir", str(tmp_path), "--limit", "1", "--no-dnsmos", "--threads", "1",
                             "--draws", "2"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert set(scores["summary"]) == {"ground truth", "codec resynthesis", "valle draw 1", "valle draw 2", "valle"}
    assert all("wer" in s and "speaker_similarity" in s for s in scores["summary"].values())
    assert "pesq" in scores["summary"]["codec resynthesis"]
    draws = [scores["summary"][f"valle draw {d}"]["speaker_similarity"] for d in (1, 2)]
    assert scores["summary"]["valle"]["speaker_similarity"] == pytest.approx(sum(draws) / 2)
    assert scores["spread"]["valle"]["speaker_similarity"] == pytest.approx(abs(draws[0] - draws[1]) / 2 ** 0.5)
    assert draws[0] != draws[1]  # other seeds, other audio
    assert len((tmp_path / "manifest.jsonl").read_text().splitlines()) == 4
    assert "between the 2 draws, standard deviation: wer" in result.stdout
    # the decoding options are checked as tts synthesize checks them, before anything runs
    for option, message in [("--top-p", "must be above 0 (greedy decoding is its own option)"),
                            ("--speed", "must be between 0.25 and 4.0, got 0.0")]:
        bad = subprocess.run([sys.executable, str(script), "--checkpoint", str(directory), "--clips", str(clips),
                              "--out-dir", str(tmp_path / "bad"), option, "0"], capture_output=True, text=True,
                             timeout=600)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr
        assert bad.stderr.strip().splitlines()[-1] == f"zero_shot.py: error: argument {option}: {message}"
        assert not (tmp_path / "bad").exists()
    bad = subprocess.run([sys.executable, str(script), "--checkpoint", str(directory), "--clips", str(clips),
                          "--out-dir", str(tmp_path / "bad"), "--draws", "0"], capture_output=True, text=True,
                         timeout=600)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].endswith("--draws must be from 1 to 100, got 0")
    assert not (tmp_path / "bad").exists()
    # the decoding options reach the model: this VALL-E has no durations, so it refuses a speed, before any output
    bad = subprocess.run([sys.executable, str(script), "--checkpoint", str(directory), "--clips", str(clips),
                          "--out-dir", str(tmp_path / "bad"), "--limit", "1", "--no-dnsmos", "--speed", "1.5"],
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr, bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("zero_shot.py: error: this valle model cannot follow --speed")
    assert not (tmp_path / "bad").exists()
