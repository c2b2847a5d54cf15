"""Checkpoints written before the training engine existed still resume exactly.

``tests/fixtures/checkpoints_v1`` holds a tiny codec run and a tiny VALL-E run made with the code of commit c281294:
the step-2 checkpoint of a run stopped there, and the weights that an unbroken run of the same config reached at
step 4. Today's trainers resume the checkpoint, train to step 4, and must reach those weights (bit for bit on the
machine that made them, within rounding on another CPU).
(The fixture's scripts: a 4-cut noise corpus for the codec, 6 synthetic tokenized cuts for VALL-E, tiny configs,
``checkpoint_every=2``, ``max_steps=4``.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "checkpoints_v1"


# Bit for bit on the machine that made the fixture; another CPU's kernels round differently (an AMD EPYC ends 2.3e-6
# away). Two steps of a resume that drew other batches or lost the optimizer state move weights by about the learning
# rate (1e-3), hundreds of times this tolerance: `moved` checks that the fixture's own steps do.
TOLERANCE = 2e-5


def distance(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].cpu().double() - b[k].double()).abs().max()) for k in a if a[k].numel())


def same_weights(model: torch.nn.Module, path: Path) -> bool:
    """The model's weights within ``TOLERANCE`` of the fixture's, which are far from the step-2 weights."""
    expected = load_file(str(path))
    start = load_file(str(path.parent / "run" / "checkpoints" / "step-00000002" / "model.safetensors"))
    moved = distance(start, expected)
    assert moved > 50 * TOLERANCE, moved
    return distance(model.state_dict(), expected) <= TOLERANCE


@pytest.fixture
def copy_of(tmp_path, monkeypatch):
    def copy(name: str) -> Path:
        folder = tmp_path / name
        shutil.copytree(FIXTURES / name, folder)
        monkeypatch.chdir(folder)  # the fixture's manifests name their files relative to it
        return folder
    return copy


def test_codec_checkpoint_of_the_earlier_loop_resumes_exactly(copy_of):
    from lhotse import CutSet, Recording

    from codec.training import CodecTrainer, load_train_config

    folder = copy_of("codec")
    torch.set_num_threads(1)
    cuts = CutSet.from_manifests(recordings=[Recording.from_file(f"a{i}.wav") for i in range(4)]).to_eager()
    config = load_train_config(ROOT / "recipes" / "codec" / "configs" / "tiny.yaml",
                               ["train.checkpoint_every=2", "train.max_steps=4", "train.reconstruction_only_steps=1"])
    trainer = CodecTrainer(config, cuts, folder / "run")
    assert trainer.resume() and trainer.step == 2
    trainer.train()
    assert trainer.step == 4
    assert same_weights(trainer.codec, folder / "unbroken_step4.safetensors")


def test_token_model_checkpoint_of_the_earlier_loop_resumes_exactly(copy_of):
    from lhotse import CutSet

    from tts.text import SymbolTable
    from tts.training import TokenTrainer, load_token_train_config

    folder = copy_of("valle")
    torch.set_num_threads(1)
    symbols = SymbolTable.load("symbols.json")
    config = load_token_train_config(ROOT / "recipes" / "valle" / "configs" / "tiny.yaml", len(symbols), 8, 64,
                                     ["train.max_steps=4", "train.checkpoint_every=2", "train.max_duration=4",
                                      "train.warmup_steps=1"])
    trainer = TokenTrainer(config, CutSet.from_file("cuts.jsonl.gz"), symbols, folder / "run", codec="bundled")
    assert trainer.resume() and trainer.step == 2
    trainer.train()
    assert trainer.step == 4
    assert same_weights(trainer.unwrapped, folder / "unbroken_step4.safetensors")
