"""Training packs (``toolkit.pack``, ``tts.data.pack``) and the GPU sprint (``recipes/gpu/sprint.py``), on the CPU:
a pack holds what the corpus holds, fits its budget, batches and resumes like the Lhotse path, and a sprint on a tiny
pack, on a Python that has only the sprint's packages, writes loadable sharded releases and its summary."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from lhotse import CutSet

from tests.support import minimal_site, snippet
from toolkit.pack import BASE_REQUIREMENTS, Pack, PackError, PackSampler
from toolkit.weights import INDEX_NAME
from tts.data.dataset import Curriculum, TokenDataset, make_sampler
from tts.data.pack import folder_bytes, write_pack
from tts.release import load_token_model, weights_sha256
from tts.text import SymbolTable

ROOT = Path(__file__).resolve().parents[2]
PIP_NAMES = {"yaml": "pyyaml"}  # import name -> distribution, where they differ


def manifests(work: Path, kind: str) -> dict:
    suffix = ".raw" if kind == "audio" else ""
    return {"train": work / f"cuts_train{suffix}.jsonl.gz", "valid": work / f"cuts_test{suffix}.jsonl.gz"}


@pytest.fixture(scope="module")
def pack(built, tmp_path_factory):
    """A pack of the whole smoke corpus: tokens, and whole clips of 2 MB of audio."""
    root, config, _ = built
    out = tmp_path_factory.mktemp("pack") / "pack"
    info = write_pack(out, root / "codec", config.work_dir / "symbols.json", manifests(config.work_dir, "tokens"),
                      manifests(config.work_dir, "audio"), max_mb=6, audio_mb=2, clip_seconds=60)
    return Pack(out), info, config.work_dir


def test_pack_cuts_collate_as_the_corpus_cuts(pack):
    pack, info, work = pack
    cuts = CutSet.from_file(work / "cuts_train.jsonl.gz").to_eager()
    packed = pack.token_cuts("train")
    assert [c.id for c in packed] == [c.id for c in cuts]  # the budget holds the whole smoke corpus
    assert info["tokens"]["splits"]["train"]["items"] == len(cuts)
    symbols = SymbolTable.load(pack.symbols)
    dataset = TokenDataset(symbols, seed=3)
    ids = [c.id for c in cuts][:6]
    a, b = dataset[cuts.subset(cut_ids=ids)], dataset[[c for c in packed if c.id in ids]]
    for name in ("phonemes", "phoneme_lens", "codes", "code_lens", "prompt_codes", "prompt_lens", "prompt_is_prefix",
                 "durations", "durations_known"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None and y is None) or torch.equal(x, y), name
    assert a.cut_ids == b.cut_ids and a.speakers == b.speakers
    assert b.durations_known is not None and bool(b.durations_known.any())  # the espeak voices' exact durations


def test_pack_audio_is_the_corpus_audio(pack):
    pack, info, work = pack
    clips = pack.audio_clips("train")
    assert 0 < len(clips) < len(CutSet.from_file(manifests(work, "audio")["train"]))  # 2 MB: a subset
    corpus = {c.id: c for c in CutSet.from_file(manifests(work, "audio")["train"])}
    for clip in clips:
        ref = corpus[clip.id].resample(24000).load_audio().mean(axis=0)
        got = clip.load_audio()[0]
        assert got.shape == ref.shape and np.abs(got - ref).max() <= 1.01 / 32768  # int16, lossless beyond that
    crop = clips[0].truncate(offset=0.5, duration=0.25, preserve_id=True)
    assert crop.num_samples == 6000 and np.array_equal(crop.load_audio(), clips[0].load_audio()[:, 12000:18000])


def test_pack_fits_its_budget_and_is_written_whole(built, tmp_path):
    root, config, _ = built
    work, codec = config.work_dir, root / "codec"
    write_pack(tmp_path / "whole", codec, work / "symbols.json", manifests(work, "tokens"), max_mb=10)
    whole = folder_bytes(tmp_path / "whole")
    shutil.rmtree(tmp_path / "whole")
    limit = (whole - 0.3 * (whole - folder_bytes(codec))) / 1e6  # room for a part of the codes
    info = write_pack(tmp_path / "a", codec, work / "symbols.json", manifests(work, "tokens"), max_mb=limit)
    assert folder_bytes(tmp_path / "a") <= limit * 1e6
    kept = info["tokens"]["splits"]["train"]["items"]
    assert 0 < kept < len(CutSet.from_file(work / "cuts_train.jsonl.gz"))
    again = write_pack(tmp_path / "b", codec, work / "symbols.json", manifests(work, "tokens"), max_mb=limit)
    assert [c.id for c in Pack(tmp_path / "a").token_cuts()] == [c.id for c in Pack(tmp_path / "b").token_cuts()]
    assert again["tokens"] == info["tokens"]  # the choice is seeded
    with pytest.raises(PackError, match="exists"):
        write_pack(tmp_path / "a", codec, work / "symbols.json", manifests(work, "tokens"))
    with pytest.raises(PackError, match="alone take .* over the budget of 0.1 MB"):
        write_pack(tmp_path / "c", codec, work / "symbols.json", manifests(work, "tokens"), max_mb=0.1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # nothing half-written left behind
    (tmp_path / "a" / "data.h5").unlink()
    with pytest.raises(PackError, match="incomplete: data.h5 missing"):
        Pack(tmp_path / "a")


def test_pack_sampler_buckets_splits_ranks_and_resumes(pack):
    cuts = pack[0].token_cuts("train")
    sampler = PackSampler(cuts, max_duration=12.0, seed=5, num_buckets=3)
    batches = [[c.id for c in b] for b in sampler]
    assert sorted(i for b in batches for i in b) == sorted(c.id for c in cuts)  # every cut once per epoch
    durations = {c.id: c.duration for c in cuts}
    assert all(len(b) == 1 or sum(durations[i] for i in b) <= 12.0 for b in batches)
    sampler.set_epoch(1)
    assert [[c.id for c in b] for b in sampler] != batches  # reshuffled
    sampler.set_epoch(0)
    stream = iter(sampler)
    next(stream), next(stream)
    resumed = PackSampler(cuts, max_duration=12.0, seed=5, num_buckets=3)
    resumed.load_state_dict(json.loads(json.dumps(sampler.state_dict())))
    assert [[c.id for c in b] for b in resumed] == batches[2:]
    ranks = [[c.id for b in PackSampler(cuts, max_duration=12.0, seed=5, num_buckets=3, world_size=2, rank=r)
              for c in b] for r in (0, 1)]
    assert not set(ranks[0]) & set(ranks[1]) and len(PackSampler(cuts, max_duration=12.0, world_size=2, rank=0)) == \
        len(PackSampler(cuts, max_duration=12.0, world_size=2, rank=1))
    fixed = PackSampler(cuts, max_cuts=4, seed=1, drop_last=True)
    assert [len(b) for b in fixed] == [4] * (len(cuts) // 4)
    with pytest.raises(ValueError, match="had num_cuts"):
        PackSampler(cuts[:-1], max_duration=12.0, seed=5).load_state_dict(sampler.state_dict())


def test_pack_sampler_follows_a_curriculum_and_resumes(pack):
    cuts = pack[0].token_cuts("train")
    median = float(np.median([c.duration for c in cuts]))
    sampler = make_sampler(cuts, 12.0, seed=5, num_buckets=3, curriculum=Curriculum([[1, median]]))
    first = [[c.id for c in b] for b in sampler]
    assert {i for b in first for i in b} == {c.id for c in cuts if c.duration <= median}
    sampler.set_epoch(1)
    assert sorted(c.id for b in sampler for c in b) == sorted(c.id for c in cuts)
    sampler.set_epoch(0)
    stream = iter(sampler)
    next(stream)
    resumed = make_sampler(cuts, 12.0, seed=5, num_buckets=3, curriculum=Curriculum([[1, median]]))
    resumed.load_state_dict(json.loads(json.dumps(sampler.state_dict())))
    assert [[c.id for c in b] for b in resumed] == first[1:]


TOKEN_PLAN = """
stages:
  - {name: valle, recipe: recipes/valle/train.py, config: recipes/valle/configs/tiny.yaml}
  - {name: mobilespeech, recipe: recipes/mobilespeech/train.py, config: recipes/mobilespeech/configs/tiny.yaml,
     share: 2}
"""
CODEC_PLAN = """
stages:
  - {name: codec, recipe: recipes/codec/train.py, config: recipes/codec/configs/tiny.yaml,
     args: ["--init-from", "{pack}/codec"]}
"""


def sprint(*args: str, env: dict = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "recipes/gpu/sprint.py"), *args], capture_output=True,
                          text=True, timeout=600, cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def test_documented_sprint_commands(built, tmp_path):
    """The GPU page's commands on the smoke corpus, each sprint with a 0.2-minute budget on the CPU, on a Python that
    has torch, accelerate, einops, numpy, safetensors, pyyaml, h5py and tqdm and nothing else (no Lhotse, soundfile,
    text frontend or wandb): a token pack and a sprint of VALL-E and MobileSpeech, an audio pack and a codec sprint;
    each stage writes a loadable sharded release and its part of the summary."""
    root, config, _ = built
    site = minimal_site(tmp_path / "site", [PIP_NAMES.get(n, n) for n in BASE_REQUIREMENTS])
    (tmp_path / "tokens.yaml").write_text(TOKEN_PLAN)
    (tmp_path / "codec.yaml").write_text(CODEC_PLAN)
    cpu = "--minutes 0.2 --device cpu --threads 1 --shard-size-mb 0.3"
    lines = snippet("bash", "recipes/gpu/pack.py", "recipes/gpu/sprint.py").strip().splitlines()
    for line in lines:
        line = line.replace("--corpus data/mini", f"--corpus {config.work_dir}")
        line = line.replace("--codec bundled", f"--codec {root / 'codec'}")
        line = line.replace("--plan recipes/gpu/codec.yaml --minutes 10", f"--plan codec.yaml {cpu}")
        line = line.replace("--minutes 10", f"--plan tokens.yaml {cpu}")
        args = shlex.split(line)
        assert args[0] == "python" and args[1].startswith("recipes/gpu/"), line
        sprinting = args[1].endswith("sprint.py")
        proc = subprocess.run([sys.executable, str(ROOT / args[1]), *args[2:]], capture_output=True, text=True,
                              timeout=600, cwd=tmp_path,
                              env={**os.environ, "OMP_NUM_THREADS": "1", **({"PYTHONPATH": str(site)} if sprinting
                                                                            else {})})
        assert proc.returncode == 0, line + "\n" + proc.stdout[-2000:] + proc.stderr[-2000:]
    assert Pack(tmp_path / "packs/mini").has("tokens") and not Pack(tmp_path / "packs/mini").has("audio")
    assert Pack(tmp_path / "packs/mini-audio").has("audio") and not Pack(tmp_path / "packs/mini-audio").has("tokens")
    stages = {}
    for out in ("sprint", "sprint-codec"):
        for stage in json.loads((tmp_path / out / "summary.json").read_text())["stages"]:
            stages[stage["name"]] = stage
            assert stage["exit_code"] == 0 and stage["steps_this_call"] >= 1 and stage["audio_seconds_this_call"] > 0
            assert stage["train"] and stage["times"]["startup_s"] > 0
            files = stage["release"]["files"]
            assert INDEX_NAME in files and sum(n.startswith("model-") for n in files) >= 2, files  # sharded
    assert sorted(stages) == ["codec", "mobilespeech", "valle"]
    pack = Pack(tmp_path / "packs/mini")
    for name in ("valle", "mobilespeech"):
        release = load_token_model(tmp_path / "sprint" / name / "release")
        assert release.model_type == name and release.codec_sha256 == weights_sha256(pack.codec)
        assert release.codec == pack.codec_reference == str(root / "codec")  # the codec the pack was written from
    from codec import load_codec

    assert load_codec(tmp_path / "sprint-codec" / "codec" / "release").num_codebooks == 8


def one_line_error(proc: subprocess.CompletedProcess, *contains: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-2000:]
    assert all(c in lines[0] for c in contains), lines[0]


def test_sprint_fails_fast_in_one_line(pack, tmp_path):
    pack, _, _ = pack
    one_line_error(sprint("--pack", str(tmp_path), "--minutes", "1", "--out", str(tmp_path / "o"), "--device", "cpu"),
                   "not a training pack")
    if not torch.cuda.is_available():
        one_line_error(sprint("--pack", str(pack.root), "--minutes", "1", "--out", str(tmp_path / "o")),
                       "CUDA is not available")
    needy = tmp_path / "needy"
    shutil.copytree(pack.root, needy)
    info = json.loads((needy / "pack.json").read_text())
    (needy / "pack.json").write_text(json.dumps({**info, "requires": ["no_such_package_here"]}))
    one_line_error(sprint("--pack", str(needy), "--minutes", "1", "--out", str(tmp_path / "o"), "--device", "cpu"),
                   "missing Python packages: no_such_package_here")
    audio_only = tmp_path / "plan.yaml"
    audio_only.write_text("stages:\n  - {name: codec, recipe: recipes/codec/train.py, config: "
                          "recipes/codec/configs/tiny.yaml, share: 0}\n")
    one_line_error(sprint("--pack", str(pack.root), "--minutes", "1", "--out", str(tmp_path / "o"), "--plan",
                          str(audio_only), "--device", "cpu"), "share must be a positive number")
    assert not (tmp_path / "o").exists()  # nothing started
