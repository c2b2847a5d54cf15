"""Audio file helpers and the ``python -m codec`` command line, including refusals of bad input."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from codec import load_audio, save_audio
from codec.__main__ import main
from toolkit.errors import InputError


def tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wav = 0.3 * np.sin(2 * np.pi * 220 * t).astype(np.float32)
    return np.stack([wav] * channels, axis=1) if channels > 1 else wav


def test_load_audio_resamples_and_downmixes(tmp_path):
    sf.write(tmp_path / "a.flac", tone(1.0, 16000, channels=2) * np.array([1.0, 0.0], dtype=np.float32), 16000)
    wav = load_audio(tmp_path / "a.flac", 24000)
    assert wav.dtype == torch.float32 and wav.shape == (24000,)
    assert abs(float(wav.abs().max()) - 0.15) < 0.01  # mean of a 0.3 tone and silence
    sf.write(tmp_path / "b.wav", tone(0.5, 24000), 24000)
    assert torch.allclose(load_audio(tmp_path / "b.wav", 24000), torch.from_numpy(tone(0.5, 24000)), atol=1e-4)


def test_load_audio_refusals(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_audio(tmp_path / "none.wav", 24000)
    (tmp_path / "text.wav").write_text("not audio")
    with pytest.raises(InputError, match="cannot read audio"):
        load_audio(tmp_path / "text.wav", 24000)
    sf.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 24000)
    with pytest.raises(InputError, match="empty"):
        load_audio(tmp_path / "empty.wav", 24000)
    sf.write(tmp_path / "nan.wav", np.full(100, np.nan, dtype=np.float32), 24000, subtype="FLOAT")
    with pytest.raises(InputError, match="NaN"):
        load_audio(tmp_path / "nan.wav", 24000)


def test_save_audio_atomic_and_refusals(tmp_path):
    save_audio(tmp_path / "o.wav", torch.zeros(1, 1, 2400), 24000)
    info = sf.info(tmp_path / "o.wav")
    assert (info.samplerate, info.channels, info.frames) == (24000, 1, 2400)
    with pytest.raises(InputError, match="does not exist"):
        save_audio(tmp_path / "missing" / "o.wav", torch.zeros(100), 24000)
    with pytest.raises(InputError, match="unsupported audio format"):
        save_audio(tmp_path / "o.xyz", torch.zeros(100), 24000)
    with pytest.raises(InputError, match="NaN"):
        save_audio(tmp_path / "n.wav", torch.full((100,), float("nan")), 24000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.wav"]  # no temporary files left


@pytest.fixture
def release(tmp_path, tiny_codec):
    return tiny_codec.save_pretrained(tmp_path / "release")


def test_cli_round_trip(tmp_path, release, tiny_codec):
    sf.write(tmp_path / "in.wav", tone(1.0, 44100, channels=2), 44100)
    assert main(["encode", str(tmp_path / "in.wav"), str(tmp_path / "c.npy"), "--checkpoint", str(release)]) == 0
    codes = np.load(tmp_path / "c.npy")
    assert codes.shape == (8, 75) and codes.dtype == np.int16
    expected = tiny_codec.encode(load_audio(tmp_path / "in.wav", 24000)[None])[0].numpy()
    np.testing.assert_array_equal(codes, expected)
    assert main(["decode", str(tmp_path / "c.npy"), str(tmp_path / "out.wav"), "--checkpoint", str(release)]) == 0
    out, rate = sf.read(tmp_path / "out.wav")
    assert rate == 24000 and out.shape == (24000,)
    assert main(["encode", str(tmp_path / "in.wav"), str(tmp_path / "c4.npy"), "--checkpoint", str(release),
                 "--num-quantizers", "4"]) == 0
    assert np.load(tmp_path / "c4.npy").shape == (4, 75)


def test_cli_official_checkpoint(tmp_path):
    from tests.conftest import shared_path

    ckpt = shared_path("fixtures", "languagecodec_official", "state_dict.safetensors")
    np.save(tmp_path / "in.npy", np.zeros(1))
    sf.write(tmp_path / "in.wav", tone(0.5, 24000), 24000)
    assert main(["encode", str(tmp_path / "in.wav"), str(tmp_path / "c.npy"), "--checkpoint", str(ckpt)]) == 0
    assert np.load(tmp_path / "c.npy").shape == (8, 38)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "codec", *args], capture_output=True, text=True)


def test_cli_refusals_are_one_line(tmp_path, release, capsys):
    """Every case in-process through ``codec.__main__.main`` (what ``python -m codec`` runs); the first and the bad
    command line also as real processes, for their exit status and stderr."""
    sf.write(tmp_path / "in.wav", tone(0.2, 24000), 24000)
    np.save(tmp_path / "bad.npy", np.full((8, 5), 5000, dtype=np.int16))
    np.save(tmp_path / "float.npy", np.zeros((8, 5), dtype=np.float32))
    cases = [
        ("encode", str(tmp_path / "none.wav"), str(tmp_path / "o.npy"), "--checkpoint", str(release)),
        ("encode", str(tmp_path / "in.wav"), str(tmp_path / "o.npy"), "--checkpoint", str(tmp_path / "nope")),
        ("encode", str(tmp_path / "in.wav"), str(tmp_path / "o.npy"), "--checkpoint", str(tmp_path / "in.wav")),
        ("decode", str(tmp_path / "bad.npy"), str(tmp_path / "o.wav"), "--checkpoint", str(release)),
        ("decode", str(tmp_path / "float.npy"), str(tmp_path / "o.wav"), "--checkpoint", str(release)),
        ("decode", str(tmp_path / "in.wav"), str(tmp_path / "o.wav"), "--checkpoint", str(release)),
        ("encode", str(tmp_path / "in.wav"), str(tmp_path / "in.wav"), "--checkpoint", str(release)),
        ("encode", str(tmp_path / "in.wav"), str(tmp_path / "o.npy"), "--checkpoint", str(release),
         "--num-quantizers", "9"),
        ("decode", str(tmp_path / "bad.npy"), str(tmp_path), "--checkpoint", str(release)),
    ]
    for index, args in enumerate(cases):
        if index == 0:
            proc = run_cli(*args)
            code, stderr = proc.returncode, proc.stderr
        else:
            code, stderr = main(list(args)), capsys.readouterr().err
        assert code == 1, (args, stderr)
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr, stderr
    assert not (tmp_path / "o.npy").exists() and not (tmp_path / "o.wav").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    proc = run_cli("encode", str(tmp_path / "in.wav"), str(tmp_path / "o.npy"), "--num-quantizers", "x")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr  # a bad command line


def test_written_files_have_the_usual_mode(tmp_path):
    import os
    import stat

    save_audio(tmp_path / "m.wav", torch.zeros(100), 24000)
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "m.wav").stat().st_mode) == 0o666 & ~mask
