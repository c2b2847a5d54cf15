"""Checkpoint averaging: ``export.py --average N`` writes a release whose weights are the mean of N consecutive
checkpoints of a run (``toolkit.weights.average_states``), and refuses in one line what cannot be averaged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.support import tiny_release
from toolkit.errors import InputError
from toolkit.weights import WEIGHTS_NAME, average_states
from tts.release import export_runs, load_token_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A VALL-E run folder with checkpoints step-00000001..3 whose floating-point weights are those of a tiny release
    plus 0, 1 and 2; returns (run, the release's weights)."""
    root = tmp_path_factory.mktemp("averaging")
    release = tiny_release(root)
    weights = load_file(str(release / WEIGHTS_NAME))
    run = root / "run"
    for step in (1, 2, 3):
        folder = run / "checkpoints" / f"step-{step:08d}"
        folder.mkdir(parents=True)
        save_file({k: v + (step - 1) if v.is_floating_point() else v for k, v in weights.items()},
                  str(folder / "model.safetensors"))
    config = json.loads((release / "config.json").read_text())
    (run / "train_config.json").write_text(json.dumps({"model_type": "valle", "model": config["config"],
                                                       "stages": config["stages"]}))
    (run / "symbols.json").write_bytes((release / "symbols.json").read_bytes())
    (run / "codec.json").write_text(json.dumps({"codec": str(root / "codec")}))
    return run, weights


def exported_offsets(release: Path, weights) -> set:
    """The offsets of an exported release's floating-point weights from the tiny release's, to 0.01 (an fp16
    export rounds)."""
    state = load_token_model(release).model.state_dict()
    return {round(float((state[k] - v).mean()), 2) for k, v in weights.items() if v.is_floating_point()}


@pytest.mark.parametrize("checkpoint, average, offset", [(None, 1, 2.0), (None, 2, 1.5), (None, 3, 1.0),
                                                         ("step-00000002", 2, 0.5), ("step-00000001", 1, 0.0)])
def test_export_averages_consecutive_checkpoints(run, tmp_path, checkpoint, average, offset):
    folder, weights = run
    lines = export_runs([folder], tmp_path / "release", checkpoint, average=average)
    assert exported_offsets(tmp_path / "release", weights) == {offset}
    assert ("the mean of" in lines[0]) == (average > 1)


def test_export_recipe_averages_and_refuses_too_many(run, tmp_path):
    folder, weights = run
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    export = [sys.executable, str(ROOT / "recipes" / "valle" / "export.py"), "--run", str(folder)]
    proc = subprocess.run([*export, "--average", "3", "--dtype", "float16", "--out", str(tmp_path / "avg")],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "the mean of step-00000001, step-00000002, step-00000003" in proc.stdout
    assert exported_offsets(tmp_path / "avg", weights) == {1.0}
    for average, message in (("4", "has 3 checkpoint(s) up to step-00000003, not the 4 to average"),
                             ("0", "cannot average 0 checkpoints")):
        proc = subprocess.run([*export, "--average", average, "--out", str(tmp_path / "never")],
                              capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert message in proc.stderr and "Traceback" not in proc.stderr
        assert not (tmp_path / "never").exists()


def test_average_states_keeps_dtypes_and_refuses_what_differs():
    half = {"w": torch.tensor([1.0, 3.0], dtype=torch.float16), "n": torch.tensor([7])}
    other = {"w": torch.tensor([2.0, 6.0], dtype=torch.float16), "n": torch.tensor([7])}
    averaged = average_states([half, other], "runs/x")
    assert averaged["w"].dtype == torch.float16 and torch.equal(averaged["w"], torch.tensor([1.5, 4.5]).half())
    assert torch.equal(averaged["n"], torch.tensor([7]))
    with pytest.raises(InputError, match="n .* differs between the checkpoints"):
        average_states([half, {**other, "n": torch.tensor([8])}], "runs/x")
    with pytest.raises(InputError, match="missing 1 key"):
        average_states([half, {"w": other["w"]}], "runs/x")
    with pytest.raises(InputError, match="w has shape"):
        average_states([half, {**other, "w": torch.zeros(3)}], "runs/x")
