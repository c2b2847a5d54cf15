"""Releases whose weights are Hugging Face shards (``model-00001-of-0000N.safetensors`` ... plus
``model.safetensors.index.json``): written by ``save_pretrained`` / ``save_token_model`` / the export recipes with a
shard limit, read by every loader like a single ``model.safetensors``, refused in one line when a shard is missing or
does not match the index, and never left beside the other layout."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file, save_file

from codec import CodecConfig, LanguageCodec
from tests.support import tiny_release
from toolkit.errors import InputError
from toolkit.runs import OneLineParser
from toolkit.weights import (INDEX_NAME, WEIGHTS_NAME, add_shard_size_option, has_weights, load_weights,
                             tensor_bytes)
from tts.release import ReleaseError, load_token_model, save_token_model, weights_sha256

ROOT = Path(__file__).resolve().parents[1]
CODEC_LIMIT = 100_000  # the tiny codec: 750 kB in 144 tensors, the largest 164 kB (a shard of its own)
MODEL_LIMIT = 200_000  # the tiny VALL-E: 872 kB in 87 tensors, none over 33 kB


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    """(single-file token release, its single-file codec, the same two saved sharded; the sharded token release
    references the sharded codec)."""
    root = tmp_path_factory.mktemp("sharded")
    single = tiny_release(root)  # root/valle, with root/codec
    codec = LanguageCodec.from_pretrained(root / "codec")
    codec.save_pretrained(root / "codec_sharded", max_shard_bytes=CODEC_LIMIT)
    release = load_token_model(single)
    sharded = save_token_model(release.model, root / "valle_sharded", release.symbols,
                               codec=str(root / "codec_sharded"), max_shard_bytes=MODEL_LIMIT)
    return single, root / "codec", sharded, root / "codec_sharded"


def shards(directory: Path):
    return sorted(p.name for p in directory.glob("model-*.safetensors"))


def check_layout(directory: Path, limit: int, state: dict):
    """``directory`` holds only the sharded layout: shards numbered 1..N of N, each within ``limit`` bytes of tensor
    data unless it holds one larger tensor, and an index whose weight_map and total_size describe them."""
    names = shards(directory)
    assert len(names) >= 3 and not (directory / WEIGHTS_NAME).exists()
    assert names == [f"model-{i:05d}-of-{len(names):05d}.safetensors" for i in range(1, len(names) + 1)]
    index = json.loads((directory / INDEX_NAME).read_text())
    assert index["metadata"]["total_size"] == sum(tensor_bytes(t) for t in state.values())
    assert set(index["weight_map"]) == set(state) and set(index["weight_map"].values()) == set(names)
    oversized = 0
    for name in names:
        tensors = load_file(str(directory / name))
        assert {k for k, v in index["weight_map"].items() if v == name} == set(tensors)
        size = sum(tensor_bytes(t) for t in tensors.values())
        assert size <= limit or len(tensors) == 1, (name, size, len(tensors))
        oversized += size > limit
    return oversized


def assert_same_tensors(a: dict, b: dict):
    assert set(a) == set(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def test_codec_release_shards_and_loads_the_same(releases):
    _, codec, _, sharded = releases
    single = load_file(str(codec / WEIGHTS_NAME))
    assert check_layout(sharded, CODEC_LIMIT, single) >= 1  # the largest tensor got a shard of its own
    assert has_weights(sharded) and has_weights(codec)
    assert_same_tensors(load_weights(sharded), single)
    one, many = LanguageCodec.from_pretrained(codec), LanguageCodec.from_pretrained(sharded)
    assert_same_tensors(one.state_dict(), many.state_dict())
    wav = torch.randn(1, 4800) * 0.1
    assert torch.equal(one.encode(wav), many.encode(wav))


def test_token_release_shards_and_loads_the_same(releases):
    single, _, sharded, sharded_codec = releases
    check_layout(sharded, MODEL_LIMIT, load_file(str(single / WEIGHTS_NAME)))
    one, many = load_token_model(single), load_token_model(sharded)
    assert_same_tensors(one.model.state_dict(), many.model.state_dict())
    assert Path(many.codec) == sharded_codec.resolve() and many.codec_sha256 == weights_sha256(sharded_codec)


def test_codec_digest(releases, tmp_path):
    """A single-file codec keeps the digest of its model.safetensors (older releases verify); a sharded one is the
    SHA-256 of its index and then its shards in name order, and changes with any shard."""
    _, codec, _, sharded = releases
    assert weights_sha256(codec) == hashlib.sha256((codec / WEIGHTS_NAME).read_bytes()).hexdigest()
    stream = b"".join((sharded / name).read_bytes() for name in [INDEX_NAME, *shards(sharded)])
    assert weights_sha256(sharded) == hashlib.sha256(stream).hexdigest()
    LanguageCodec.from_pretrained(sharded).save_pretrained(tmp_path / "again", max_shard_bytes=CODEC_LIMIT)
    assert weights_sha256(tmp_path / "again") == weights_sha256(sharded)  # stable across saves
    last = tmp_path / "again" / shards(sharded)[-1]
    tensors = load_file(str(last))
    name = next(iter(tensors))
    tensors[name] = tensors[name] + 1
    save_file(tensors, str(last), metadata={"format": "pt"})
    assert weights_sha256(tmp_path / "again") != weights_sha256(sharded)


def test_resaving_in_the_other_layout_removes_the_old_one(tmp_path):
    model = LanguageCodec(CodecConfig.tiny()).eval()
    target = tmp_path / "release"
    model.save_pretrained(target, max_shard_bytes=CODEC_LIMIT)
    many = shards(target)
    model.save_pretrained(target, max_shard_bytes=4 * CODEC_LIMIT)  # fewer shards: the old numbering is removed
    fewer = shards(target)
    assert 1 < len(fewer) < len(many) and all(name.endswith(f"-of-{len(fewer):05d}.safetensors") for name in fewer)
    model.save_pretrained(target)
    assert sorted(p.name for p in target.iterdir()) == ["config.json", WEIGHTS_NAME]
    model.save_pretrained(target, max_shard_bytes=CODEC_LIMIT)
    assert sorted(p.name for p in target.iterdir()) == sorted(["config.json", INDEX_NAME, *many])
    assert_same_tensors(LanguageCodec.from_pretrained(target).state_dict(), model.state_dict())


def test_an_interrupted_save_reads_as_the_old_weights_or_none(tmp_path, monkeypatch):
    """A save killed before its last weights file is written: the old weights, or (shards over shards, whose names
    are reused) none, never a mixture of old and new shards."""
    import toolkit.weights

    old = {k: v.clone() for k, v in LanguageCodec(CodecConfig.tiny()).state_dict().items()}
    new = {k: v + 1 if v.is_floating_point() else v.clone() for k, v in old.items()}
    write = toolkit.weights._write_safetensors
    for before, after in ((None, CODEC_LIMIT), (CODEC_LIMIT, None), (CODEC_LIMIT, CODEC_LIMIT)):
        directory = tmp_path / f"{before}-{after}"
        toolkit.weights.save_weights(old, directory, before)
        written = []

        def killed(*args):  # the second shard, or the one file
            written.append(args)
            if len(written) == (1 if after is None else 2):
                raise KeyboardInterrupt
            write(*args)

        monkeypatch.setattr(toolkit.weights, "_write_safetensors", killed)
        with pytest.raises(KeyboardInterrupt):
            toolkit.weights.save_weights(new, directory, after)
        monkeypatch.setattr(toolkit.weights, "_write_safetensors", write)
        if before == after:
            assert not has_weights(directory)
            with pytest.raises(InputError, match="holds no weights"):
                load_weights(directory)
        else:
            assert_same_tensors(load_weights(directory), old)


def broken_copy(source: Path, folder: Path) -> Path:
    shutil.copytree(source, folder)
    return folder


def test_missing_shard_is_refused_naming_it(releases, tmp_path):
    _, _, sharded, sharded_codec = releases
    codec = broken_copy(sharded_codec, tmp_path / "codec")
    gone = shards(codec)[1]
    (codec / gone).unlink()
    with pytest.raises(InputError, match=rf"^shard .*/codec/{gone} is missing \(named in .*/codec/{INDEX_NAME}\)$"):
        LanguageCodec.from_pretrained(codec)
    model = broken_copy(sharded, tmp_path / "valle")
    gone = shards(model)[-1]
    (model / gone).unlink()
    with pytest.raises(ReleaseError, match=rf"shard .*/valle/{gone} is missing"):
        load_token_model(model)


def test_index_that_disagrees_with_the_shards_is_refused(releases, tmp_path):
    _, _, _, sharded_codec = releases
    codec = broken_copy(sharded_codec, tmp_path / "codec")
    index = json.loads((codec / INDEX_NAME).read_text())
    first, second = shards(codec)[:2]
    # one tensor of the first shard said to be in the second
    moved = next(k for k, v in index["weight_map"].items() if v == first)
    index["weight_map"][moved] = second
    (codec / INDEX_NAME).write_text(json.dumps(index))
    with pytest.raises(InputError, match=rf"shard .*{first} does not match .*{INDEX_NAME}: unexpected 1 key\(s\): "
                                         rf"{re.escape(moved)}$"):
        load_weights(codec)
    # a tensor the index names that no shard holds
    index["weight_map"][moved] = first
    index["weight_map"]["ghost.weight"] = second
    (codec / INDEX_NAME).write_text(json.dumps(index))
    with pytest.raises(InputError, match=rf"shard .*{second} does not match .*: missing 1 key\(s\): ghost\.weight$"):
        LanguageCodec.from_pretrained(codec)
    # shards outside the directory, an index that is not JSON
    (codec / INDEX_NAME).write_text(json.dumps({"weight_map": {moved: "../elsewhere.safetensors"}}))
    with pytest.raises(InputError, match="not safetensors files in its directory"):
        load_weights(codec)
    (codec / INDEX_NAME).write_text("{")
    with pytest.raises(InputError, match=f"cannot read .*{INDEX_NAME}"):
        load_weights(codec)


def test_synthesize_with_a_sharded_release(releases, tmp_path, capsys):
    """`tts synthesize` on the sharded release (whose codec is sharded too) writes what the single-file release
    writes; a codec shard changed after export is caught by the digests."""
    from tts import cli

    single, _, sharded, sharded_codec = releases
    t = np.arange(48000) / 24000
    prompt = tmp_path / "prompt.wav"
    sf.write(prompt, (0.3 * np.sin(2 * np.pi * 140 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32), 24000)
    audio = []
    for name, release in (("one", single), ("many", sharded)):
        code = cli.main(["synthesize", "--checkpoint", str(release), "--prompt", str(prompt), "--prompt-text",
                         "hello there", "--text", "Hi.", "--out", str(tmp_path / f"{name}.wav"), "--seed", "0"])
        assert code == 0, capsys.readouterr().err
        audio.append(sf.read(tmp_path / f"{name}.wav")[0])
    assert audio[0].size > 0 and np.array_equal(audio[0], audio[1])
    # the same release, pointing at a copy of its codec with the shard of an encoder weight rewritten (a rewritten
    # decoder alone would be accepted: the codes stay the same, see tests/test_codec_versions.py)
    codec = broken_copy(sharded_codec, tmp_path / "codec")
    index = json.loads((codec / INDEX_NAME).read_text())
    shard = codec / next(file for name, file in index["weight_map"].items() if name.startswith("encoder."))
    tensors = {k: v + 1 for k, v in load_file(str(shard)).items()}
    save_file(tensors, str(shard), metadata={"format": "pt"})
    release = broken_copy(sharded, tmp_path / "valle")
    config = json.loads((release / "config.json").read_text())
    config["codec"]["path"] = str(codec)
    (release / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    code = cli.main(["synthesize", "--checkpoint", str(release), "--prompt", str(prompt), "--prompt-text",
                     "hello there", "--text", "Hi.", "--out", str(tmp_path / "bad.wav")])
    err = capsys.readouterr().err
    assert code == 1 and "not the one the model was trained with" in err and len(err.strip().splitlines()) == 1


def test_shard_size_option_refuses_bad_values(capsys):
    parser = OneLineParser(prog="export.py")
    add_shard_size_option(parser)
    assert parser.parse_args([]).max_shard_bytes is None
    assert parser.parse_args(["--shard-size-mb", "2"]).max_shard_bytes == 2 * 2 ** 20
    assert parser.parse_args(["--shard-size-mb", "0.5"]).max_shard_bytes == 2 ** 19
    for bad, message in (("0", "positive"), ("-3", "positive"), ("nan", "positive"), ("inf", "positive"),
                         ("1e-9", "positive"), ("ten", "expected a number")):
        with pytest.raises(SystemExit) as exit:
            parser.parse_args(["--shard-size-mb", bad])
        err = capsys.readouterr().err
        assert exit.value.code == 2 and len(err.strip().splitlines()) == 1, (bad, err)
        assert err.startswith("export.py: error: argument --shard-size-mb:") and message in err, (bad, err)


def recipe(*args):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_export_recipes_write_shards(releases, tmp_path):
    single, codec, _, _ = releases
    # a codec run and a VALL-E run, each with one checkpoint holding the tiny releases' weights
    codec_run, valle_run = tmp_path / "codec_run", tmp_path / "valle_run"
    for run, weights in ((codec_run, codec / WEIGHTS_NAME), (valle_run, single / WEIGHTS_NAME)):
        (run / "checkpoints" / "step-00000002").mkdir(parents=True)
        (run / "checkpoints" / "step-00000002" / "model.safetensors").write_bytes(weights.read_bytes())
    (codec_run / "train_config.json").write_text(json.dumps({"codec": CodecConfig.tiny().to_dict()}))
    config = json.loads((single / "config.json").read_text())
    (valle_run / "train_config.json").write_text(json.dumps({"model_type": "valle", "model": config["config"],
                                                             "stages": config["stages"]}))
    (valle_run / "symbols.json").write_bytes((single / "symbols.json").read_bytes())
    (valle_run / "codec.json").write_text(json.dumps({"codec": str(codec)}))

    proc = recipe(ROOT / "recipes" / "codec" / "export.py", "--run", codec_run, "--out", tmp_path / "codec_out",
                  "--shard-size-mb", CODEC_LIMIT / 2 ** 20)
    assert proc.returncode == 0, proc.stderr
    check_layout(tmp_path / "codec_out", CODEC_LIMIT, load_file(str(codec / WEIGHTS_NAME)))
    assert_same_tensors(LanguageCodec.from_pretrained(tmp_path / "codec_out").state_dict(),
                        LanguageCodec.from_pretrained(codec).state_dict())

    proc = recipe(ROOT / "recipes" / "valle" / "export.py", "--run", valle_run, "--out", tmp_path / "valle_out",
                  "--shard-size-mb", MODEL_LIMIT / 2 ** 20)
    assert proc.returncode == 0, proc.stderr
    check_layout(tmp_path / "valle_out", MODEL_LIMIT, load_file(str(single / WEIGHTS_NAME)))
    assert_same_tensors(load_token_model(tmp_path / "valle_out").model.state_dict(),
                        load_token_model(single).model.state_dict())

    proc = recipe(ROOT / "recipes" / "valle" / "export.py", "--run", valle_run, "--out", tmp_path / "never",
                  "--shard-size-mb", "0")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "--shard-size-mb" in proc.stderr and not (tmp_path / "never").exists()
