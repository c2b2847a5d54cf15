"""Training from Lhotse Shar shards on several processes (``toolkit.cuts``): each rank reads its own shards, the
ranks stay in sync, and a resumed run continues from the shard position an unbroken run was at."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest

from tests.support import launch_two_ranks, snippet
from toolkit.cuts import open_cuts, shar_shards
from toolkit.errors import InputError
from tts.data.pipeline import Pipeline, PipelineConfig
from tts.release import load_token_model

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shar(built, tmp_path_factory):
    """The smoke corpus's training cuts as Shar shards of 4 cuts (the pipeline's --shar stage), with symbols.json
    two folders up, as the pipeline lays them out."""
    _, config, _ = built
    work = tmp_path_factory.mktemp("shar_work")
    for name in ("cuts_train.jsonl.gz", "cuts_test.jsonl.gz", "symbols.json"):
        shutil.copy(config.work_dir / name, work / name)  # the manifests name their codes' files by absolute paths
    Pipeline(PipelineConfig(corpus_dir=config.corpus_dir, work_dir=work, parts=("train",))).shar(shard_size=4)
    return work / "shar" / "train"


def test_each_rank_opens_its_own_shards(shar):
    shards = shar_shards(shar)
    assert len(shards) == 5  # 18 cuts, 4 a shard
    everything = {c.id for c in open_cuts(shar).cuts}
    parts = [open_cuts(shar, rank, 2) for rank in (0, 1)]
    ids = [{c.id for c in p.cuts} for p in parts]
    assert all(p.per_rank for p in parts) and [p.shards for p in parts] == [3, 2]
    assert not ids[0] & ids[1] and ids[0] | ids[1] == everything and len(everything) == 18
    with pytest.raises(InputError, match="5 Shar shards for 8 processes"):
        open_cuts(shar, 0, 8)
    assert not open_cuts(shar.parent.parent / "cuts_train.jsonl.gz").per_rank  # a manifest: the sampler splits it


SCRIPT = """
import hashlib, json, os
from pathlib import Path
from tts import training

seen = []
train_step = training.TokenTrainer.train_step


def spy(self, batches):
    seen.append(sorted(c for b in batches for c in b.cut_ids))
    return train_step(self, batches)


training.TokenTrainer.train_step = spy
training.main(argv=ARGV)
out = ARGV[ARGV.index("--out-dir") + 1]
weights = b"".join(p.read_bytes() for p in sorted(Path(out, "release").glob("*.safetensors")))
with open(out + f"/rank{os.environ['RANK']}.json", "w") as f:  # the launcher's (the process group is gone)
    json.dump({"world": int(os.environ["WORLD_SIZE"]), "seen": seen, "release": hashlib.sha256(weights).hexdigest()}, f)
"""


def documented_recipe_args(root: Path, shar: Path, out: Path) -> list:
    """README's multi-node line: its launcher options checked, its recipe part with the fixture's data, the tiny
    config and a few steps (the test runs it as 2 CPU processes of one machine)."""
    args = shlex.split(snippet("bash", "--num_machines 2", "shar").strip())
    assert args[:2] == ["accelerate", "launch"]
    at = next(i for i, a in enumerate(args) if a.startswith("recipes/"))
    for option in ("--num_machines", "--machine_rank", "--main_process_ip", "--main_process_port", "--num_processes"):
        assert option in args[2:at]
    assert args[at] == "recipes/valle/train.py"
    recipe = args[at + 1:]
    for option, value in (("--config", ROOT / "recipes/valle/configs/tiny.yaml"), ("--train-cuts", shar),
                          ("--codec", root / "codec"), ("--out-dir", out)):
        recipe[recipe.index(option) + 1] = str(value)
    assert "--resume" in recipe
    return recipe + ["--wandb", "disabled", "--threads", "1", "--set", "train.max_steps=4", "train.max_duration=5",
                     "train.checkpoint_every=2", "train.validate_every=100", "train.num_buckets=2"]


def launch(tmp_path: Path, name: str, argv: list) -> list:
    out = Path(argv[argv.index("--out-dir") + 1])
    out.mkdir(exist_ok=True)
    script = tmp_path / f"{name}.py"
    script.write_text(SCRIPT.replace("ARGV", repr(argv)))
    return launch_two_ranks(script, out)


@pytest.mark.slow
def test_two_processes_on_shar_read_disjoint_data_in_sync_and_resume(built, shar, tmp_path):
    """README's multi-node command (as 2 CPU processes): each rank reads its own shards, one model comes out, and a
    run stopped after 2 steps resumes on the batches an unbroken run drew."""
    root, _, _ = built
    argv = documented_recipe_args(root, shar, tmp_path / "unbroken")
    unbroken = launch(tmp_path, "unbroken", argv)
    for rank in unbroken:
        assert len(rank["seen"]) == 4
    ids = [{c for batch in rank["seen"] for c in batch} for rank in unbroken]
    assert not ids[0] & ids[1]  # each rank read its own shards only
    assert unbroken[0]["release"] == unbroken[1]["release"]  # gradients all-reduced: one model
    assert load_token_model(tmp_path / "unbroken" / "release").model_type == "valle"
    argv = documented_recipe_args(root, shar, tmp_path / "resumed")
    first = launch(tmp_path, "first", argv + ["--stop-after", "2"])
    assert [r["seen"] for r in first] == [r["seen"][:2] for r in unbroken]
    rest = launch(tmp_path, "rest", argv)
    assert [r["seen"] for r in rest] == [r["seen"][2:] for r in unbroken]  # from the shard position it was at
    assert rest[0]["release"] == unbroken[0]["release"]
