"""Every code block of README.md and docs/*.md runs in a test.

``CLAIMS`` names, for each block, the strings that identify it and the test that runs it (most run with tiny
configs, a few steps and temporary paths in place of the documented ones). ``test_every_block_is_claimed`` fails when
a block is added without a test, or a claim no longer finds its block. The blocks no other test module runs are run
here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import pytest
import soundfile as sf

from codec import BUNDLED_DIR, read_release_version
from tests.support import DOC_PAGES, snippet, snippets

ROOT = Path(__file__).resolve().parents[1]

CLAIMS = [  # (strings that are all in the block, where it runs)
    (("apt-get install",), "CI (.ci/run): README's install block"),
    (("ruff check . && python -m pytest -q",), "CI (.ci/run): README's test block"),
    (("tts synthesize --prompt examples/prompt.wav --text \"The birch canoe",), "CI (.ci/run): README's main job"),
    (("recipes/libritts/prepare.py", "tts synthesize"),
     "tests/tts/test_valle_training.py::test_train_your_own_commands"),
    (("from tts import Synthesizer",), "tests/test_docs.py::test_synthesizer_snippets"),
    (("from codec import",), "tests/test_readme.py::test_python_snippet"),
    (("python -m codec encode",), "tests/test_readme.py::test_cli_snippet"),
    (("accelerate launch recipes/codec/train.py",), "tests/test_readme.py::test_codec_training_snippet"),
    (("--init-from bundled",), "tests/test_docs.py::test_fine_tuning_commands"),
    (("--init-from languagecodec_paper.ckpt",), "tests/test_docs.py::test_fine_tuning_commands"),
    (("--init-from tts/assets/languagecodec-mini-step7000",), "tests/test_docs.py::test_bundled_codec_commands"),
    (("build_phonemizer",), "tests/test_readme.py::test_text_snippet"),
    (("recipes/mini/prepare.py",), "tests/test_readme.py::test_recipe_snippets"),
    (("recipes/valle/train.py", "recipes/valle/export.py"), "tests/tts/test_valle_training.py::test_readme_commands"),
    (("recipes/mobilespeech/train.py",), "tests/tts/test_mobilespeech.py::test_documented_commands"),
    (("recipes/ablation/run.py",), "tests/tts/test_ablation.py::test_smoke_run"),
    (("tts synthesize --prompt examples/prompt.wav --text \"Any text.",),
     "tests/test_docs.py::test_synthesis_commands"),
    (("codec: {preset: mini",), "tests/test_docs.py::test_run_config_examples"),
    (("model: {type: mobilespeech",), "tests/test_docs.py::test_run_config_examples"),
    (("tts evaluate",), "tests/tts/test_evaluation.py: test_cli_evaluate_with_local_models_and_plot (lines 1, 3), "
                        "test_cli_manifest_writes_json_and_markdown (line 2)"),
    (('pip install -e ".[serve]"', "curl"), "tests/serve/test_server.py::test_readme_serve_commands"),
    (("tts serve --model mobilespeech",), "tests/serve/test_server.py::test_serve_page_commands (parsed, checked)"),
    (("curl", "/v1/voices", "DELETE"), "tests/serve/test_server.py::test_serve_page_commands"),
    (("benchmarks/serve_load.py",), "tests/serve/test_server.py::test_load_benchmark_command"),
    (("recipes/gpu/pack.py", "recipes/gpu/sprint.py"), "tests/tts/test_pack.py::test_documented_sprint_commands"),
    (("--num_machines 2", "shar"),
     "tests/tts/test_shar_training.py::test_two_processes_on_shar_read_disjoint_data_in_sync_and_resume"),
]


def test_every_block_is_claimed():
    blocks = [(page.relative_to(ROOT), lang, body) for page in DOC_PAGES
              for lang, body in re.findall(r"```(\w+)\n(.*?)```", page.read_text(), flags=re.S)]
    assert blocks
    for page, lang, body in blocks:
        owners = [where for strings, where in CLAIMS if all(s in body for s in strings)]
        assert len(owners) == 1, f"{page}: a {lang} block is claimed by {owners or 'no test'}: {body[:80]!r}"
    for strings, where in CLAIMS:
        assert any(all(s in body for s in strings) for _, _, body in blocks), f"no block holds {strings} ({where})"


def run(line: str, cwd: Path, replace: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    """One documented command line, with documented paths replaced, run with this interpreter (repository files
    named relative to the root, ``recipes/...``, are found from anywhere)."""
    for old, new in (replace or {}).items():
        line = line.replace(old, new)
    args = [str(ROOT / a) if a.startswith("recipes/") else a for a in shlex.split(line, comments=True)]
    if args[0] == "tts":
        args = [sys.executable, "-m", "tts.cli", *args[1:]]
    elif args[0] == "python":
        args = [sys.executable, *args[1:]]
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{line}\n{proc.stderr[-3000:]}"
    return proc


def noise_cuts(folder: Path, name: str, count: int = 3) -> Path:
    """A manifest of ``count`` 1 s noise recordings at 24 kHz."""
    from lhotse import CutSet, Recording

    rng = np.random.default_rng(0)
    recordings = []
    for i in range(count):
        sf.write(folder / f"{name}{i}.wav", (0.1 * rng.standard_normal(24000)).astype(np.float32), 24000)
        recordings.append(Recording.from_file(folder / f"{name}{i}.wav"))
    path = folder / f"{name}.jsonl.gz"
    CutSet.from_manifests(recordings=recordings).to_file(path)
    return path


@pytest.mark.slow
def test_synthesizer_snippets(monkeypatch):
    """The Python API snippet (README and the synthesis page) with the bundled model."""
    monkeypatch.chdir(ROOT)
    for code in dict.fromkeys(b for b in snippets("python") if "from tts import Synthesizer" in b):
        scope: dict = {}
        exec(compile(code, "snippet", "exec"), scope)
        wav = scope["wav"]
        assert wav.ndim == 1 and wav.size > 24000 * 0.2 and np.isfinite(wav).all()


@pytest.mark.slow
def test_synthesis_commands(tmp_path):
    """The synthesis page's commands: the bundled default, the bundled VALL-E with a transcript from a file (through
    bash, as the command substitutes it), a release of one's own (an untrained tiny VALL-E here), and a text file."""
    import torch

    from codec import CodecConfig, LanguageCodec
    from tts.models.valle import Valle, ValleConfig
    from tts.release import save_token_model
    from tts.synthesizer import BUNDLED_MODELS
    from tts.text import SymbolTable

    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    shutil.copy(ROOT / "examples" / "prompt.wav", tmp_path / "prompt.wav")
    (tmp_path / "lines.txt").write_text("The first line.\n\nThe third line.\n")  # a blank line keeps its number
    torch.manual_seed(0)
    codec = LanguageCodec(CodecConfig.tiny()).train()
    codec(torch.randn(2, 24000) * 0.1, num_quantizers=8)
    codec.eval().save_pretrained(tmp_path / "codec")
    symbols = SymbolTable.load(BUNDLED_MODELS / "valle-mini" / "symbols.json")
    save_token_model(Valle(ValleConfig.tiny(len(symbols))).eval(), tmp_path / "runs" / "valle_mini" / "release_fp16",
                     symbols, codec=str(tmp_path / "codec"))
    block = snippet("bash", 'tts synthesize --prompt examples/prompt.wav --text "Any text.')
    script = tmp_path / "synthesis.sh"
    script.write_text("set -euo pipefail\n" + block)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("hello.wav", "hello_valle.wav", "mine.wav", "outputs/0001.wav", "outputs/0003.wav"):
        audio, rate = sf.read(tmp_path / name)
        assert rate == 24000 and audio.size > 0, name


@pytest.mark.slow
def test_fine_tuning_commands(tmp_path):
    """The codec page's fine-tuning commands, a few steps each: from the bundled codec, and from an official
    checkpoint (the small official fixture saved as a Lightning checkpoint, with a run config of its architecture)."""
    import torch
    import yaml
    from safetensors.torch import load_file

    from codec import LanguageCodec
    from tests.conftest import shared_path

    from codec import BUNDLED_DIR

    noise_cuts(tmp_path, "my_cuts")
    steps = " --set train.max_steps=2 train.batch_size=2 --wandb disabled --threads 1"
    bundled = snippet("bash", "--init-from bundled").strip()
    run(bundled + steps, tmp_path)
    info = json.loads((tmp_path / "runs" / "ft" / "init_from.json").read_text())
    assert info["source"] == str(BUNDLED_DIR)
    fixture = shared_path("fixtures", "languagecodec_official", "state_dict.safetensors")
    torch.save({"state_dict": load_file(str(fixture))}, tmp_path / "languagecodec_paper.ckpt")
    codec = LanguageCodec.from_official_checkpoint(tmp_path / "languagecodec_paper.ckpt").config.to_dict()
    (tmp_path / "my_official_arch.yaml").write_text(yaml.safe_dump(
        {"codec": {"preset": "official", **codec}, "discriminators": "tiny",
         "train": {"batch_size": 2, "segment_seconds": 0.5, "lr_warmup_steps": 1}}))
    official = snippet("bash", "--init-from languagecodec_paper.ckpt").strip()
    run(official + steps, tmp_path)
    assert (tmp_path / "runs" / "ft_official" / "release" / "model.safetensors").is_file()


@pytest.mark.slow
def test_bundled_codec_commands(tmp_path):
    """The commands that made the bundled codec, two steps a run: continue from the step-7,000 release, export, continue
    from that export (its run's other settings) six more times, export the last as the fp16 release, evaluate it on
    a clip."""
    data = tmp_path / "data" / "mini"
    data.mkdir(parents=True)
    for part in ("train", "test"):
        shutil.move(noise_cuts(data, f"cuts_{part}"), data / f"cuts_{part}.raw.jsonl.gz")
    (tmp_path / "clips").mkdir()
    sf.write(tmp_path / "clips" / "c.wav", np.random.default_rng(1).standard_normal(24000).astype(np.float32) * 0.1,
             24000)
    lines = snippet("bash", "--init-from tts/assets/languagecodec-mini-step7000").strip().splitlines()
    train_v2, export_v2, train_v3, export_v3, train_v4, export_v4, train_v5, export_v5, train_v7, export_v7 = lines[:10]
    train_v8, export_v8, train_v10p, export_v10p, train_v11d, export_v11d, evaluate = lines[10:]
    short = {"--threads 1": "--threads 1 --wandb disabled --set train.checkpoint_every=2 train.batch_size=2"}

    def config(run):
        return json.loads((tmp_path / "runs" / run / "train_config.json").read_text())

    def started_from(run):
        return json.loads((tmp_path / "runs" / run / "init_from.json").read_text())["source"]

    run(train_v2, tmp_path, {"tts/assets": str(ROOT / "tts" / "assets"), "--stop-after 17500": "--stop-after 2",
                             **short})
    assert config("codec_v2")["noise_floor_db"] is None and config("codec_v2")["repeat_factors"] is None
    run(export_v2, tmp_path, {"step-00017500": "step-00000002"})
    run(train_v3, tmp_path, {"--stop-after 18000": "--stop-after 2", **short})
    assert started_from("codec_v3").endswith("v2_17500") and config("codec_v3")["repeat_factors"] is None
    assert config("codec_v3")["noise_floor_db"] is not None
    run(export_v3, tmp_path, {"step-00018000": "step-00000002"})
    run(train_v4, tmp_path, {"--stop-after 2000": "--stop-after 2", **short})
    assert started_from("codec_v4").endswith("v3_18000") and config("codec_v4")["repeat_factors"]
    run(export_v4, tmp_path, {"step-00002000": "step-00000002"})
    run(train_v5, tmp_path, {"train.max_steps=5000": "train.max_steps=2", **short})
    assert started_from("codec_v5").endswith("v4_2000") and config("codec_v5")["repeat_factors"]
    assert (config("codec_v5")["max_steps"], config("codec_v5")["learning_rate"]) == (2, 3e-4)
    run(export_v5, tmp_path, {"step-00005000": "step-00000002"})
    run(train_v7, tmp_path, {"--stop-after 13000": "--stop-after 2", **short})
    assert started_from("codec_v7").endswith("v5_5000") and config("codec_v7")["repeat_factors"]
    assert (config("codec_v7")["max_steps"], config("codec_v7")["lr_warmup_steps"]) == (15000, 200)
    run(export_v7, tmp_path, {"step-00013000": "step-00000002"})
    run(train_v8, tmp_path, {"--stop-after 10000": "--stop-after 2", **short})
    assert started_from("codec_v8").endswith("v7_13000") and config("codec_v8")["repeat_factors"] == {"espeak-*": 1,
                                                                                                       "*": 12}
    assert (config("codec_v8")["max_steps"], config("codec_v8")["lr_warmup_steps"]) == (15000, 200)
    run(export_v8, tmp_path, {"step-00010000": "step-00000002"})
    run(train_v10p, tmp_path, {"train.max_steps=4000": "train.max_steps=2", **short})
    assert started_from("codec_v10p").endswith("v8_10000") and config("codec_v10p")["repeat_factors"]["*"] == 16
    assert (config("codec_v10p")["max_steps"], config("codec_v10p")["learning_rate"]) == (2, 2e-4)
    assert config("codec_v10p")["losses"]["phase_derivative"] == config("codec_v10p")["losses"]["complex_stft"] == 45
    run(export_v10p, tmp_path, {"step-00004000": "step-00000002"})
    run(train_v11d, tmp_path, {"train.max_steps=4500": "train.max_steps=2", **short})
    assert started_from("codec_v11d").endswith("v10p_4000") and config("codec_v11d")["decoder_only"] is True
    assert config("codec_v11d")["losses"]["phase_derivative"] == 45 and config("codec_v11d")["max_steps"] == 2
    run(export_v11d, tmp_path, {"step-00004500": "step-00000002", "codec/assets": "out"})
    assert (tmp_path / "out" / "languagecodec-mini" / "model.safetensors").is_file()
    assert read_release_version(tmp_path / "out" / "languagecodec-mini") == read_release_version(BUNDLED_DIR) == 2
    out = run(evaluate, tmp_path, {"codec/assets": "out", "../shared/speech": "clips --no-vuv",
                                   " --intelligibility": ""}).stdout
    assert "| languagecodec-mini | 8 | 6 |" in out


def test_run_config_examples(tmp_path):
    """The design page's example run configs load, with the fields they name."""
    from codec.training import load_train_config
    from tts.training import load_token_train_config

    (tmp_path / "codec.yaml").write_text(snippet("yaml", "codec: {preset: mini"))
    (tmp_path / "token.yaml").write_text(snippet("yaml", "model: {type: mobilespeech"))
    codec = load_train_config(tmp_path / "codec.yaml")
    assert (codec.codec.quantizer.kind, codec.discriminators, codec.losses.mel, codec.batch_size) == (
        "rvq", load_train_config(ROOT / "recipes" / "codec" / "configs" / "mini.yaml").discriminators, 45, 8)
    token = load_token_train_config(tmp_path / "token.yaml", 80, 8, 1024)
    assert (token.model_type, token.model.decoder.layers, token.max_steps) == ("mobilespeech", 4, 30000)
