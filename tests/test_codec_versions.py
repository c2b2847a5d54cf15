"""Codec releases with a version of their own (``"version"`` in ``config.json``): written by ``save_pretrained`` and
``recipes/codec/export.py --version``, read by ``codec.read_release_version``, recorded by the token models'
releases trained on them, and named when a token model meets another codec."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from codec import CodecConfig, CodecError, LanguageCodec, read_release_version
from tests.support import tiny_release
from tts.release import load_token_model, save_token_model
from tts.synthesizer import SynthesisError, _load_release_codec

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def unversioned(tmp_path_factory):
    """A tiny token release and its codec, saved without a version."""
    root = tmp_path_factory.mktemp("versions")
    return tiny_release(root), root / "codec"


def test_versioned_codec_round_trip(unversioned, tmp_path):
    _, codec_dir = unversioned
    assert read_release_version(codec_dir) is None
    codec = LanguageCodec.from_pretrained(codec_dir)
    codec.save_pretrained(tmp_path / "v2", version=2)
    assert read_release_version(tmp_path / "v2") == 2
    assert json.loads((tmp_path / "v2" / "config.json").read_text())["version"] == 2
    loaded = LanguageCodec.from_pretrained(tmp_path / "v2")
    assert loaded.config == codec.config
    wav = torch.randn(1, 4800) * 0.1
    assert torch.equal(loaded.encode(wav), codec.encode(wav))
    for bad in (0, -1, True, "2", 1.5):
        with pytest.raises(CodecError, match="positive integer"):
            codec.save_pretrained(tmp_path / f"bad_{bad}", version=bad)
        assert not (tmp_path / f"bad_{bad}").exists()  # refused before anything is written
    config = json.loads((tmp_path / "v2" / "config.json").read_text())
    shutil.copytree(tmp_path / "v2", tmp_path / "edited")
    (tmp_path / "edited" / "config.json").write_text(json.dumps({**config, "version": "two"}))
    with pytest.raises(CodecError, match="positive integer"):
        read_release_version(tmp_path / "edited")


def test_token_release_records_the_codec_version(unversioned, tmp_path):
    single, codec_dir = unversioned
    release = load_token_model(single)
    assert release.codec_version is None and "version" not in json.loads((single / "config.json").read_text())["codec"]
    LanguageCodec.from_pretrained(codec_dir).save_pretrained(tmp_path / "codec_v2", version=2)
    versioned = save_token_model(release.model, tmp_path / "valle", release.symbols, codec=str(tmp_path / "codec_v2"))
    assert json.loads((versioned / "config.json").read_text())["codec"]["version"] == 2
    loaded = load_token_model(versioned)
    assert loaded.codec_version == 2
    assert _load_release_codec(loaded).config == LanguageCodec.from_pretrained(codec_dir).config
    # the codec replaced by another one: the refusal names the version the model was trained on
    other = LanguageCodec(CodecConfig.tiny())
    other.save_pretrained(tmp_path / "codec_v2", version=3)
    with pytest.raises(SynthesisError, match="SHA-256 differs, version 2"):
        _load_release_codec(load_token_model(versioned))


def test_a_path_to_the_bundled_codec_is_recorded_as_bundled(unversioned, tmp_path, monkeypatch):
    from codec import BUNDLED_DIR

    release = load_token_model(unversioned[0])
    monkeypatch.chdir(BUNDLED_DIR.parent)
    for name, codec in (("absolute", str(BUNDLED_DIR)), ("relative", f"./{BUNDLED_DIR.name}"), ("named", "bundled")):
        written = save_token_model(release.model, tmp_path / name, release.symbols, codec=codec)
        assert json.loads((written / "config.json").read_text())["codec"]["path"] == "bundled", name
    written = save_token_model(release.model, tmp_path / "other", release.symbols, codec=str(unversioned[1]))
    assert json.loads((written / "config.json").read_text())["codec"]["path"] == str(unversioned[1].resolve())


def test_export_recipe_version_option(unversioned, tmp_path):
    _, codec_dir = unversioned
    run = tmp_path / "run"
    (run / "checkpoints" / "step-00000002").mkdir(parents=True)
    shutil.copy(codec_dir / "model.safetensors", run / "checkpoints" / "step-00000002" / "model.safetensors")
    (run / "train_config.json").write_text(json.dumps({"codec": CodecConfig.tiny().to_dict()}))

    def export(*args):
        return subprocess.run([sys.executable, str(ROOT / "recipes" / "codec" / "export.py"), "--run", str(run),
                               *map(str, args)], capture_output=True, text=True, timeout=300)

    proc = export("--out", tmp_path / "v2", "--version", 2)
    assert proc.returncode == 0, proc.stderr
    assert read_release_version(tmp_path / "v2") == 2
    proc = export("--out", tmp_path / "never", "--version", 0)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "--version" in proc.stderr
    assert not (tmp_path / "never").exists()


def test_a_decoder_fine_tuned_alone_keeps_the_model_running(unversioned, tmp_path):
    """A token release records the digest of what its codec computes codes from; a codec whose weights differ only
    where the codes do not depend on them (the decoder, the codebooks' EMA statistics) is accepted, any other not."""
    single, codec_dir = unversioned
    original = LanguageCodec.from_pretrained(codec_dir)
    release = load_token_model(single)
    assert release.codec_codes_sha256 == original.codes_sha256()
    shutil.copytree(codec_dir, tmp_path / "codec")
    save_token_model(release.model, tmp_path / "valle", release.symbols, codec=str(tmp_path / "codec"))
    wav = torch.randn(1, 4800) * 0.1

    def rewrite(edit) -> LanguageCodec:
        codec = LanguageCodec.from_pretrained(codec_dir)
        with torch.no_grad():
            edit(codec)
        codec.save_pretrained(tmp_path / "codec")
        return codec

    def bump(params) -> None:
        for p in params:
            p.add_(0.01)

    tuned = rewrite(lambda c: bump([*c.backbone.parameters(), *c.head.parameters()]))
    assert tuned.codes_sha256() == original.codes_sha256()
    loaded = _load_release_codec(load_token_model(tmp_path / "valle"))
    assert torch.equal(loaded.encode(wav), original.encode(wav))
    assert not torch.equal(loaded.decode(original.encode(wav)), original.decode(original.encode(wav)))
    rewrite(lambda c: bump(layer.codebook.cluster_size for layer in c.quantizer.layers))  # training-only statistics
    _load_release_codec(load_token_model(tmp_path / "valle"))
    for edit in (lambda c: bump(c.encoder.parameters()),
                 lambda c: c.quantizer.layers[-1].codebook.embed.mul_(1.5)):
        assert rewrite(edit).codes_sha256() != original.codes_sha256()
        with pytest.raises(SynthesisError, match="SHA-256 differs; its codes differ too"):
            _load_release_codec(load_token_model(tmp_path / "valle"))
    # a release written before the digest was recorded accepts its own codec's weights only
    config = json.loads((tmp_path / "valle" / "config.json").read_text())
    del config["codec"]["codes_sha256"]
    (tmp_path / "valle" / "config.json").write_text(json.dumps(config))
    rewrite(lambda c: bump(c.head.parameters()))
    with pytest.raises(SynthesisError, match=r"SHA-256 differs\)"):
        _load_release_codec(load_token_model(tmp_path / "valle"))


def test_codes_digest_is_that_of_the_loaded_weights(unversioned, tmp_path):
    """A float16 release hashes as the float32 model it loads as, a zero as a zero whatever its sign; the
    architecture is part of it."""
    _, codec_dir = unversioned
    codec = LanguageCodec.from_pretrained(codec_dir)
    codec.save_pretrained(tmp_path / "half", dtype=torch.float16)
    half = LanguageCodec.from_pretrained(tmp_path / "half")
    half.save_pretrained(tmp_path / "upcast")
    assert LanguageCodec.from_pretrained(tmp_path / "upcast").codes_sha256() == half.codes_sha256()
    assert half.codes_sha256() != codec.codes_sha256()  # rounded encoder weights: other codes
    fresh = LanguageCodec(CodecConfig.tiny(quantizer_kind="rvq"))
    assert fresh.codes_sha256() != codec.codes_sha256()
    signs = []
    for zero in (0.0, -0.0):  # an average of checkpoints may turn -0.0 into 0.0: the codes are the same
        with torch.no_grad():
            next(codec.encoder.parameters()).view(-1)[0] = zero
        signs.append(codec.codes_sha256())
    assert signs[0] == signs[1]


def test_export_recipe_averages_checkpoints(unversioned, tmp_path):
    """``--average-with``: the generator weights of two runs of the decoder alone from one release, averaged; the
    average keeps the release's codes. Checkpoints of another config, or folders that are none, are refused."""
    _, codec_dir = unversioned
    base = LanguageCodec.from_pretrained(codec_dir)

    def fake_run(name: str, codec: LanguageCodec, config: CodecConfig) -> Path:
        step = tmp_path / name / "checkpoints" / "step-00000002"
        codec.save_pretrained(step)
        (tmp_path / name / "train_config.json").write_text(json.dumps({"codec": config.to_dict()}))
        return step

    tuned = LanguageCodec.from_pretrained(codec_dir)
    with torch.no_grad():
        for p in tuned.head.parameters():
            p.add_(0.02)
    fake_run("a", base, base.config)
    other = fake_run("b", tuned, base.config)

    def export(*args):
        return subprocess.run([sys.executable, str(ROOT / "recipes" / "codec" / "export.py"), "--run",
                               str(tmp_path / "a"), *map(str, args)], capture_output=True, text=True, timeout=300)

    proc = export("--out", tmp_path / "mean", "--average-with", other)
    assert proc.returncode == 0, proc.stderr
    mean = LanguageCodec.from_pretrained(tmp_path / "mean")
    assert mean.codes_sha256() == base.codes_sha256()
    expected = {k: (v + tuned.state_dict()[k]) / 2 for k, v in base.state_dict().items() if k.startswith("head.")}
    assert all(torch.allclose(mean.state_dict()[k], v, atol=1e-6) for k, v in expected.items())
    assert not torch.equal(mean.state_dict()["head.out.weight"], base.state_dict()["head.out.weight"])
    assert "averaged with step-00000002 of b" in (tmp_path / "mean" / "SOURCE.txt").read_text()
    rvq = CodecConfig.tiny(quantizer_kind="rvq")
    alien = fake_run("c", LanguageCodec(rvq), rvq)
    for args, code, message in ((("--average-with", alien), 1, "another codec config"),
                                (("--average-with", tmp_path / "a"), 2, "is not a checkpoint folder"),
                                (("--average-with", "step-00000002"), 2, "is not a checkpoint folder")):
        proc = export("--out", tmp_path / "never", *args)
        assert proc.returncode == code and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "never").exists()
