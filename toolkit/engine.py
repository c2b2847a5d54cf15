"""The training engine: what a training run of any model owns, so that each trainer only builds its model and defines
its step and its validation.

``Trainer`` owns the run directory (``train_config.json``, ``metrics.jsonl``, tracker files), the Accelerator and the
seed, the step counter, the non-finite guard, the loop with its logging window and progress bar, validation and
checkpoint cadence, step budgets (``max_steps``, ``stop_after``), time budgets (``max_minutes`` from the process's
start, checkpoints every ``checkpoint_minutes``), and checkpoints with exact resume (Accelerate's state plus the step,
the guard's count, the sampler's position and whatever ``extra_state`` adds, e.g. schedulers).

A subclass sets ``self.sampler`` and ``self.loader`` and implements:

- ``train_step(batches) -> logs``: one optimizer step over ``accumulation`` batches; it calls
  ``self.finish_step(skipped)`` once its update is done (or skipped);
- ``amount(batch) -> float``: how much a batch holds, for the throughput figure (``throughput_key``);
- ``validate()`` (when it has validation data), ``extra_state()`` / ``load_extra_state(state)``;
- ``progress_keys``: the logged means shown on the progress bar.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

from toolkit.memory import release_memory
from toolkit.runs import LOOP_FIELDS, CheckpointStore, MetricsLog, NonFiniteLossError, check_fields, endless, flat, \
    sampler_state


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """The fields every training run has (keyword-only; a trainer's config adds its own and may change defaults).

    Attributes:
        learning_rate, betas, weight_decay: AdamW's.
        max_steps: length of the learning-rate schedule and default end of training.
        grad_clip: gradient-norm clip (0: none).
        mixed_precision: ``no``, ``fp16`` or ``bf16`` (Accelerate's autocast).
        log_every, checkpoint_every, validate_every: cadences in steps; ``keep_checkpoints``: how many stay.
        max_nonfinite: skipped (non-finite) steps in a row before the run stops.
        num_workers: DataLoader workers; seed: every random draw of the run.
        fused_optimizer: AdamW's fused kernel (about 3x faster optimizer steps on a CPU: 28 ms instead of 85 ms for
            VALL-E mini). Equal to the plain kernel up to rounding, not bit for bit, so it is off unless a config
            turns it on: runs started without it resume exactly as they began.
    """

    learning_rate: float = 2e-4
    betas: tuple = (0.9, 0.999)
    weight_decay: float = 0.01
    max_steps: int = 100_000
    grad_clip: float = 1.0
    mixed_precision: str = "no"
    log_every: int = 50
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    validate_every: int = 1000
    max_nonfinite: int = 20
    num_workers: int = 0
    seed: int = 0
    fused_optimizer: bool = False

    FIELDS = LOOP_FIELDS  # kinds of the fields, checked when a config is made

    def __post_init__(self):
        check_fields(self, self.FIELDS)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class Trainer:
    """Args:
        config: the run's config dataclass (``to_dict``; fields ``seed``, ``mixed_precision``, ``max_steps``,
            ``log_every``, ``validate_every``, ``checkpoint_every``, ``keep_checkpoints``, ``max_nonfinite``).
        out_dir: the run directory.
        name: the tracker project (and the progress bar's label unless ``label`` is set).
        accelerator: an ``accelerate.Accelerator``; by default one is made from the config.
        log_with, tracker_kwargs: Accelerate trackers (e.g. ``"wandb"``).
        kwargs_handlers: Accelerate kwargs handlers (e.g. DDP settings) for the default accelerator.
    """

    progress_keys: Sequence[str] = ()
    throughput_key = "items_per_second"
    seconds_per_amount = 1.0  # seconds of audio per unit of ``amount`` (a token model counts frames)
    accumulation = 1
    label: Optional[str] = None

    def __init__(self, config, out_dir: os.PathLike, name: str, accelerator=None, log_with: Optional[str] = None,
                 tracker_kwargs: Optional[dict] = None, kwargs_handlers: Optional[list] = None):
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        self.config, self.name = config, name
        self.out = Path(out_dir)
        self.acc = accelerator or Accelerator(mixed_precision=config.mixed_precision, log_with=log_with,
                                              project_dir=str(self.out), kwargs_handlers=kwargs_handlers or [])
        set_seed(config.seed)
        self.step = 0
        self.nonfinite = 0
        self.valid_cuts = None
        self.store = CheckpointStore(self.acc, self.out, config.keep_checkpoints)
        self.metrics = MetricsLog(self.out, enabled=self.acc.is_main_process)
        if self.acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "train_config.json").write_text(json.dumps(config.to_dict(), indent=1) + "\n")
        if log_with:
            self.acc.init_trackers(name, config=flat(config.to_dict()), init_kwargs=tracker_kwargs or {})

    # What a subclass defines --------------------------------------------------------------------------------------

    def train_step(self, batches: List) -> Dict[str, float]:
        raise NotImplementedError

    def amount(self, batch) -> float:
        return 1.0

    def validate(self) -> Dict[str, float]:
        return {}

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    # The guard ----------------------------------------------------------------------------------------------------

    def finish_step(self, skipped: bool) -> None:
        """Count the step; after ``max_nonfinite`` skipped steps in a row, stop the run with a message."""
        self.step += 1
        self.nonfinite = self.nonfinite + 1 if skipped else 0
        if self.nonfinite > self.config.max_nonfinite:
            raise NonFiniteLossError(f"non-finite losses in {self.nonfinite} steps in a row at step {self.step}; "
                                     f"weights were not updated by them. Resume from the last checkpoint with a "
                                     f"lower learning rate.")

    # The loop -----------------------------------------------------------------------------------------------------

    def log(self, values: Dict[str, float]) -> None:
        """To the trackers and to ``<out>/metrics.jsonl``."""
        self.acc.log(values, step=self.step)
        self.metrics.write(values, self.step)

    def batches(self) -> Iterator:
        return endless(self.loader, self.sampler)

    def train(self, max_steps: Optional[int] = None, stop_after: Optional[int] = None,
              max_minutes: Optional[float] = None, checkpoint_minutes: Optional[float] = None) -> None:
        """Train until ``max_steps`` (default: the config's), with a checkpoint at the end.

        Args:
            stop_after: end the call after this many steps.
            max_minutes: end it before this many minutes from the process's start have passed: the loop stops when
                one more step and the final checkpoint (timed by the last one) would not fit.
            checkpoint_minutes: also checkpoint whenever this many minutes have passed since the last checkpoint
                (or the start of training).

        The times to start up (from the process's start, or from the end of the previous call in this process, to
        this call), to the first batch and of the first step (which holds any compilation) are logged as
        ``time/startup_s``, ``time/first_batch_s`` and ``time/first_step_s``; a run that ends by its time budget
        logs ``time/budget_stop_step``. At the end, what this call did: ``call/steps``, ``call/seconds`` (of
        training, checkpoints and validation included) and ``call/audio_seconds`` (of training audio, all processes
        together).
        """
        from tqdm import tqdm

        max_steps = max_steps or self.config.max_steps
        end = min(max_steps, self.step + stop_after) if stop_after else max_steps
        clock = BudgetClock(self.acc, max_minutes, checkpoint_minutes)
        bar = tqdm(total=max_steps, initial=self.step, disable=not self.acc.is_main_process,
                   desc=self.label or self.name, unit="step", dynamic_ncols=True)
        stream = self.batches()
        last, window, amount = time.perf_counter(), [], 0.0
        first, start_step, began_training, seen = True, self.step, time.perf_counter(), 0.0
        saved = self.step if self.step % self.config.checkpoint_every == 0 else None  # the step last checkpointed
        while self.step < end:
            fetch = time.perf_counter()
            group = [next(stream) for _ in range(self.accumulation)]
            began = time.perf_counter()
            logs = self.train_step(group)
            if self.acc.device.type == "cpu":  # batch shapes never repeat, so glibc's heap would only grow; on an
                release_memory()  # accelerator the tensors are not on that heap, and the call would be pure cost
            clock.stepped(time.perf_counter() - began)
            if first:
                first = False
                self.log_start_times(clock, began - fetch, time.perf_counter() - began)
            held = sum(self.amount(b) for b in group) * self.acc.num_processes
            amount, seen = amount + held, seen + held
            window.append(logs)
            bar.update(1)
            if self.step % self.config.log_every == 0:
                mean = self._log_window(window, amount, last)
                bar.set_postfix({k: f"{mean[k]:.3f}" for k in self.progress_keys if k in mean})
                last, window, amount = time.perf_counter(), [], 0.0
            if self.valid_cuts is not None and self.step % self.config.validate_every == 0:
                self.validate()
                if self.acc.device.type == "cpu":
                    release_memory()
            if self.step % self.config.checkpoint_every == 0:
                clock.checkpointed(self.save_checkpoint)
                saved = self.step
            decision = clock.decide(at_end=self.step >= end)
            if decision == BudgetClock.STOP:
                self.acc.print(f"time budget of {max_minutes:g} min reached: stopping at step {self.step}")
                self.log({"time/budget_stop_step": self.step})
                break
            if decision == BudgetClock.CHECKPOINT and saved != self.step:
                clock.checkpointed(self.save_checkpoint)
                saved = self.step
        bar.close()
        if window:  # the steps since the last log line (a budget can end a run between two)
            self._log_window(window, amount, last)
        if saved != self.step:
            self.save_checkpoint()
        self.log({"call/steps": self.step - start_step, "call/seconds": time.perf_counter() - began_training,
                  "call/audio_seconds": seen * self.seconds_per_amount})
        BudgetClock.last_training_end = time.time()

    def _log_window(self, window: List[dict], amount: float, since: float) -> dict:
        """Log the means of a window of step logs and the throughput since ``since``; returns the means."""
        # over the steps that logged the key (an output with nothing to learn from in a batch logs nothing)
        keys = dict.fromkeys(k for d in window for k in d)
        mean = {k: sum(d[k] for d in window if k in d) / sum(k in d for d in window) for k in keys}
        mean[self.throughput_key] = amount / max(time.perf_counter() - since, 1e-9)
        self.log({f"train/{k}": v for k, v in mean.items()})
        return mean

    def log_start_times(self, clock: "BudgetClock", first_batch: float, first_step: float) -> None:
        times = {"time/startup_s": clock.startup, "time/first_batch_s": first_batch, "time/first_step_s": first_step}
        self.log(times)
        self.acc.print(f"start-up {clock.startup:.1f} s (to training), first batch {first_batch:.1f} s, "
                       f"first step {first_step:.1f} s")

    # Checkpoints --------------------------------------------------------------------------------------------------

    def save_checkpoint(self) -> Path:
        state = {"step": self.step, "nonfinite": self.nonfinite, "sampler": self.sampler.state_dict(),
                 **self.extra_state()}
        return self.store.save(self.step, state)

    def checkpoints(self) -> List[Path]:
        return self.store.list()

    def resume(self, checkpoint: Optional[os.PathLike] = None) -> bool:
        """Load ``checkpoint`` (default: the latest complete one); False when there is none."""
        state = self.store.load(checkpoint)
        if state is None:
            return False
        self.step, self.nonfinite = state["step"], state["nonfinite"]
        self.sampler.load_state_dict(sampler_state(state["sampler"]))
        self.load_extra_state(state)
        return True


class BudgetClock:
    """When a time-budgeted run checkpoints and stops, decided by the main process and shared by every process (so
    that all of them stop after the same step).

    Minutes count from the process's start (``psutil``, which Accelerate depends on), so a budget covers the start-up
    as well. The decision each step is CONTINUE, CHECKPOINT (``checkpoint_minutes`` since the last checkpoint) or
    STOP (one more step, at the mean of the last ten, and a checkpoint as long as the last one would not fit).
    """

    CONTINUE, CHECKPOINT, STOP = 0, 1, 2
    last_training_end: Optional[float] = None  # when a Trainer.train call of this process last returned

    def __init__(self, accelerator, max_minutes: Optional[float], checkpoint_minutes: Optional[float]):
        import psutil

        for name, value in (("max_minutes", max_minutes), ("checkpoint_minutes", checkpoint_minutes)):
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")
        self.acc = accelerator
        self.started = psutil.Process().create_time()
        # a process that trains several times (the ablation's stages) counts each start-up from the previous
        # training's end, not from the process's start; budgets still count from the process's start
        self.startup = time.time() - max(self.started, BudgetClock.last_training_end or 0.0)
        self.deadline = self.started + 60 * max_minutes if max_minutes else None
        self.every = 60 * checkpoint_minutes if checkpoint_minutes else None
        self.last_checkpoint = time.time()
        self.steps: List[float] = []
        self.checkpoint_seconds = 0.0

    @property
    def active(self) -> bool:
        return self.deadline is not None or self.every is not None

    def stepped(self, seconds: float) -> None:
        self.steps = (self.steps + [seconds])[-10:]

    def checkpointed(self, save) -> None:
        start = time.time()
        save()
        self.last_checkpoint = time.time()
        self.checkpoint_seconds = self.last_checkpoint - start

    def decide(self, at_end: bool = False) -> int:
        if not self.active or at_end:
            return self.CONTINUE
        decision = self.CONTINUE
        if self.acc.is_main_process:
            now = time.time()
            step = sum(self.steps) / max(len(self.steps), 1)
            if self.deadline is not None and now + step + self.checkpoint_seconds > self.deadline:
                decision = self.STOP
            elif self.every is not None and now - self.last_checkpoint >= self.every:
                decision = self.CHECKPOINT
        if self.acc.num_processes > 1:
            import torch
            from accelerate.utils import broadcast

            decision = int(broadcast(torch.tensor([decision], device=self.acc.device), from_process=0).item())
        return decision


# The recipes' shared options ----------------------------------------------------------------------------------------

def add_run_arguments(parser) -> None:
    """The options every training recipe takes: config and overrides, data (cuts or a pack), run directory, resume,
    step and time budgets, trackers, export precision and shards, threads."""
    from pathlib import Path

    from toolkit.weights import add_shard_size_option

    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--set", nargs="*", action="extend", default=[],  # repeatable
                        metavar="SECTION.FIELD=VALUE", help="config overrides")
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--train-cuts", type=Path)
    data.add_argument("--pack", type=Path, help="a training pack (recipes/gpu/pack.py): its training and validation "
                      "data, symbols and codec, read without Lhotse")
    parser.add_argument("--valid-cuts", type=Path)
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out-dir")
    parser.add_argument("--stop-after", type=int, help="stop (with a checkpoint) after this many steps")
    parser.add_argument("--max-minutes", type=float, help="time budget from the process's start: the run stops in "
                        "time to checkpoint and export within it (exit 0)")
    parser.add_argument("--checkpoint-minutes", type=float, help="also checkpoint every this many minutes (default "
                        "with --max-minutes: 5)")
    parser.add_argument("--wandb", choices=["online", "offline", "disabled"], default="offline")
    parser.add_argument("--export-dtype", choices=["float32", "float16"], default="float32")
    add_shard_size_option(parser)
    parser.add_argument("--threads", type=int, help="torch threads per process")


def process_rank() -> tuple:
    """(rank, world size) of this process before the trainer's Accelerator exists (to open this rank's data), from
    the state the Accelerator will take: ``ACCELERATE_USE_CPU`` must reach it, or a CPU launch counts one process."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    return state.process_index, state.num_processes


def open_pack(args):
    """The training pack of ``--pack`` (``toolkit.pack.Pack``); a ``ValueError`` with one line when it is not one or
    ``--valid-cuts`` is given too (a pack holds its validation data)."""
    from toolkit.pack import Pack

    if args.valid_cuts:
        raise ValueError("--valid-cuts does not go with --pack: the pack holds its validation data")
    return Pack(args.pack)


def run_budget(args) -> dict:
    """``Trainer.train``'s budget arguments from the recipe options (``--stop-after``, ``--max-minutes``,
    ``--checkpoint-minutes``); a non-positive budget is a ``SystemExit`` with one line."""
    for option in ("stop_after", "max_minutes", "checkpoint_minutes"):
        value = getattr(args, option)
        if value is not None and not value > 0:
            raise SystemExit(f"error: --{option.replace('_', '-')} must be positive, got {value}")
    every = args.checkpoint_minutes or (5.0 if args.max_minutes else None)
    return {"stop_after": args.stop_after, "max_minutes": args.max_minutes, "checkpoint_minutes": every}


def start_run(args) -> dict:
    """Apply ``--threads`` and ``--wandb``; the tracker keyword arguments of a trainer (``log_with``,
    ``tracker_kwargs``)."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.wandb == "disabled":
        return {"log_with": None, "tracker_kwargs": None}
    os.environ.setdefault("WANDB_MODE", args.wandb)
    return {"log_with": "wandb", "tracker_kwargs": {"wandb": {"dir": str(args.out_dir)}}}
