"""The engine's time budgets: a run stops in time, checkpoints on the way and at the end, logs its start-up times."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest
import torch

from toolkit.engine import BudgetClock, RunConfig, Trainer, run_budget


class CountingSampler:
    """A stand-in for a Lhotse sampler: an epoch counter and a position, both in its state."""

    def __init__(self):
        self.epoch, self.position = 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = state["epoch"], state["position"]


class SlowTrainer(Trainer):
    """Fits one weight to 3; each step sleeps ``seconds`` so that a time budget ends the run after a known count."""

    def __init__(self, out_dir, seconds: float, **config):
        super().__init__(RunConfig(log_every=1, checkpoint_every=1000, validate_every=1000, **config), out_dir, "toy")
        self.seconds = seconds
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.optimizer = torch.optim.SGD([self.weight], lr=0.1)
        self.weight, self.optimizer = self.acc.prepare(self.weight, self.optimizer)
        self.sampler = CountingSampler()
        self.loader = [torch.tensor([3.0])] * 4

    def train_step(self, batches):
        time.sleep(self.seconds)
        loss = ((self.weight - batches[0]) ** 2).sum()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.finish_step(False)
        return {"loss": float(loss.detach())}


def records(out) -> list:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_time_budget_stops_with_a_checkpoint_and_logs_start_up_times(tmp_path):
    trainer = SlowTrainer(tmp_path, seconds=0.05)
    since_start = time.time() - BudgetClock(trainer.acc, None, None).started  # budgets count from the process's start
    trainer.train(max_minutes=(since_start + 0.6) / 60)  # 0.6 s from now
    assert 3 <= trainer.step <= 12  # ~0.6 s of 0.05 s steps, never the config's 100,000
    assert [p.name for p in trainer.checkpoints()] == [f"step-{trainer.step:08d}"]
    logged = records(tmp_path)
    start = next(r for r in logged if "time/startup_s" in r)
    assert start["step"] == 1 and start["time/first_step_s"] >= 0.05 and start["time/startup_s"] > 0
    assert any(r.get("time/budget_stop_step") == trainer.step for r in logged)
    # the run resumes from where the budget stopped it, and a step budget still works beside a time budget
    resumed = SlowTrainer(tmp_path, seconds=0.0)
    assert resumed.resume() and resumed.step == trainer.step
    resumed.train(stop_after=2, max_minutes=60)
    assert resumed.step == trainer.step + 2


def test_checkpoints_every_few_minutes_on_the_way(tmp_path):
    trainer = SlowTrainer(tmp_path, seconds=0.05, keep_checkpoints=100)
    trainer.train(stop_after=30, checkpoint_minutes=0.25 / 60)  # a checkpoint whenever 0.25 s have passed
    steps = [int(p.name.split("-")[1]) for p in trainer.checkpoints()]
    assert steps[-1] == 30 and len(steps) >= 3  # 1.5 s of steps: several timed checkpoints and the last one
    assert all(b - a >= 3 for a, b in zip(steps, steps[1:-1]))  # none before 0.25 s (5 steps) had passed, minus slack


@pytest.mark.parametrize("option", ["stop_after", "max_minutes", "checkpoint_minutes"])
def test_budget_options_must_be_positive(option):
    args = SimpleNamespace(stop_after=None, max_minutes=None, checkpoint_minutes=None)
    setattr(args, option, 0)
    with pytest.raises(SystemExit, match=f"--{option.replace('_', '-')} must be positive"):
        run_budget(args)
    args = SimpleNamespace(stop_after=None, max_minutes=10.0, checkpoint_minutes=None)
    assert run_budget(args) == {"stop_after": None, "max_minutes": 10.0, "checkpoint_minutes": 5.0}


def test_a_second_training_in_the_process_counts_its_start_up_from_the_first_ones_end(tmp_path):
    SlowTrainer(tmp_path / "first", seconds=0.0).train(stop_after=2)
    ended = time.time()
    time.sleep(0.3)  # the set-up between two stages (the ablation trains several models in one process)
    second = SlowTrainer(tmp_path / "second", seconds=0.0)
    second.train(stop_after=2)
    startup = next(r for r in records(tmp_path / "second") if "time/startup_s" in r)["time/startup_s"]
    assert 0.3 <= startup < time.time() - ended + 0.05
    assert startup < time.time() - BudgetClock(second.acc, None, None).started - 0.3  # not from the process's start
