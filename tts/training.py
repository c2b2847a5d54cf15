"""The one training loop of the token models (VALL-E AR and NAR; MobileSpeech), with Accelerate.

Each model provides its losses on a ``TokenBatch`` (a dict of ``StageOutput``); the loop sums them and owns everything
else: duration-bucketed batches per rank, gradient accumulation, clipping, AdamW with warm-up and cosine decay,
autocast, a non-finite-loss guard agreed by all ranks, logging (tqdm, Accelerate trackers), validation, atomic
checkpoints with exact resume (model, optimizer, scheduler, sampler, RNG, step) and release export.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, Optional, Sequence, Union

import torch
from torch import nn

from codec.runs import (LOOP_FIELDS, CheckpointStore, NonFiniteLossError, agree_finite, check_fields, endless, flat,
                        read_yaml, sampler_state, tuples, unknown_keys, warmup_cosine)
from tts.data.dataset import TokenBatch, TokenDataset, make_sampler
from tts.models.mobilespeech import MobileSpeech, MobileSpeechConfig
from tts.models.valle import Valle, ValleConfig
from tts.text import SymbolTable

__all__ = ["NonFiniteLossError", "TokenTrainConfig", "TokenTrainer", "build_model", "load_token_train_config"]


@dataclass(frozen=True)
class TokenTrainConfig:
    """A token-model run; stored in ``train_config.json`` of the run directory.

    Attributes:
        model_type: ``valle`` or ``mobilespeech``.
        model: the model's config (``ValleConfig`` or ``MobileSpeechConfig``), sized for the data's symbols and codec.
        stages: VALL-E: what to train, ``("ar",)``, ``("nar",)`` or both (summed losses). MobileSpeech: ``("smd",)``
            (its mask decoder, duration predictor and aligner always train together).
        max_duration: seconds of target audio per batch per process (Lhotse dynamic bucketing).
        grad_accumulation: batches per optimizer step.
        prompt_seconds: longest acoustic prompt (a prefix of the target; VALL-E's ``prefix_mode 1``).
        frame_rate: the codec's frames per second.
        min_lr_ratio: the cosine decay ends at this fraction of ``learning_rate``.
        validation_batches: validation batches per validation (0: all).
    """

    model_type: str
    model: Union[ValleConfig, MobileSpeechConfig]
    stages: tuple = ("ar", "nar")
    max_duration: float = 60.0
    num_buckets: int = 10
    prompt_seconds: float = 3.0
    frame_rate: int = 75
    learning_rate: float = 5e-4
    betas: tuple = (0.9, 0.95)
    weight_decay: float = 0.01
    max_steps: int = 100_000
    warmup_steps: int = 1000
    min_lr_ratio: float = 0.05
    grad_accumulation: int = 1
    grad_clip: float = 1.0
    mixed_precision: str = "no"
    log_every: int = 50
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    validate_every: int = 1000
    validation_batches: int = 20
    max_nonfinite: int = 20
    num_workers: int = 0
    seed: int = 0

    def __post_init__(self):
        check_fields(self, TOKEN_TRAIN_FIELDS)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


TOKEN_TRAIN_FIELDS = {
    **LOOP_FIELDS, "max_duration": "positive number", "num_buckets": "positive int", "prompt_seconds": "number >= 0",
    "frame_rate": "positive int", "warmup_steps": "int >= 0", "min_lr_ratio": "number in [0, 1]",
    "grad_accumulation": "positive int", "validation_batches": "int >= 0",
}


def build_model(config: TokenTrainConfig) -> nn.Module:
    if config.model_type == "valle":
        return Valle(config.model, config.stages)
    if config.model_type == "mobilespeech":
        return MobileSpeech(config.model)
    raise ValueError(f"unknown model type {config.model_type!r}")


MODEL_CONFIGS = {"valle": ValleConfig, "mobilespeech": MobileSpeechConfig}
MODEL_PRESETS = {name: {"paper": kind.paper, "mini": kind.mini, "tiny": kind.tiny}
                 for name, kind in MODEL_CONFIGS.items()}
LOSS_ONLY = {"duration", "aligner"}  # MobileSpeech outputs without token accuracies
DEFAULT_STAGES = {"valle": ("ar", "nar"), "mobilespeech": ("smd",)}


def load_token_train_config(path: os.PathLike, num_symbols: int, num_codebooks: int, codebook_size: int,
                            overrides: Optional[Sequence[str]] = None) -> TokenTrainConfig:
    """A YAML run config (``base:`` file, then ``section.field=value`` overrides), sized for the data.

    Keys: ``model_type``, ``preset`` (``paper``/``mini``/``tiny``), ``model_overrides`` (e.g.
    ``transformer: {layers: 4}`` for VALL-E, ``decoder: {layers: 4}`` for MobileSpeech), ``train``
    (``TokenTrainConfig`` fields).
    """
    data = read_yaml(path, overrides)
    unknown = set(data) - {"model_type", "preset", "model_overrides", "train"}
    if unknown:
        raise ValueError(f"unknown section(s) in {path}: {', '.join(sorted(unknown))}")
    model_type = data.get("model_type", "valle")
    presets = MODEL_PRESETS.get(model_type)
    if presets is None or data.get("preset", "mini") not in presets:
        raise ValueError(f"unknown model {model_type!r} / preset {data.get('preset')!r} in {path}")
    model = presets[data.get("preset", "mini")](num_symbols, num_codebooks, codebook_size).to_dict()
    overrides = data.get("model_overrides", {})
    if not isinstance(overrides, dict):
        raise ValueError(f"model_overrides must be a mapping, got {overrides!r}")
    unknown = unknown_keys(model, overrides)
    if unknown:
        raise ValueError(f"unknown key(s) in model_overrides: {', '.join(unknown)}")
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(model.get(key), dict):
            model[key].update(value)  # a nested transformer config
        else:
            model[key] = value
    if not isinstance(data.get("train", {}), dict):
        raise ValueError(f"train must be a mapping, got {data['train']!r}")
    train = dict(data.get("train", {}))
    fields = {f.name for f in dataclasses.fields(TokenTrainConfig)} - {"model_type", "model"}
    if set(train) - fields:
        raise ValueError(f"unknown train field(s): {', '.join(sorted(set(train) - fields))}")
    train.setdefault("stages", DEFAULT_STAGES[model_type])
    allowed = {"valle": {"ar", "nar"}, "mobilespeech": {"smd"}}[model_type]
    if not train["stages"] or set(train["stages"]) - allowed:
        raise ValueError(f"stages of a {model_type} run are {sorted(allowed)}, got {train['stages']}")
    try:
        config = MODEL_CONFIGS[model_type].from_dict(model)
    except TypeError as err:
        raise ValueError(f"invalid model config in {path}: {err}") from None
    return TokenTrainConfig(model_type=model_type, model=config, **{k: tuples(v) for k, v in train.items()})


class TokenTrainer:
    """Args:
        config: the run's ``TokenTrainConfig``.
        train_cuts, valid_cuts: tokenized Lhotse cuts (``cut.codes``, ``supervision.custom["phonemes"]``).
        symbols: the data's symbol table.
        out_dir: run directory (``checkpoints/``, ``release/``, ``train_config.json``, tracker files).
        codec: what the data was tokenized with (recorded in the release).
    """

    def __init__(self, config: TokenTrainConfig, train_cuts, symbols: SymbolTable, out_dir: os.PathLike,
                 valid_cuts=None, codec: str = "bundled", accelerator=None, log_with: Optional[str] = None,
                 tracker_kwargs: Optional[dict] = None):
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs, set_seed

        self.config, self.symbols, self.codec = config, symbols, codec
        self.out = Path(out_dir)
        # The NAR trains one head per step (its stage is drawn): the others get no gradient on that rank.
        ddp = DistributedDataParallelKwargs(find_unused_parameters="nar" in config.stages)
        self.acc = accelerator or Accelerator(mixed_precision=config.mixed_precision, log_with=log_with,
                                              project_dir=str(self.out), kwargs_handlers=[ddp])
        set_seed(config.seed)
        model = build_model(config)
        # Weight decay on linear weights only: not on embeddings, norms (AdaLN tables included) or biases.
        linear = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
        decay = [p for p in model.parameters() if id(p) in linear]
        no_decay = [p for p in model.parameters() if id(p) not in linear]
        self.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                            {"params": no_decay, "weight_decay": 0.0}],
                                           lr=config.learning_rate, betas=tuple(config.betas))
        # Stepped here once per optimizer step (Accelerate would step a prepared scheduler once per process).
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_cosine(config.max_steps, config.warmup_steps, config.min_lr_ratio))
        self.dataset = TokenDataset(symbols, frame_rate=config.frame_rate, prompt_seconds=config.prompt_seconds,
                                    seed=config.seed)
        self.sampler = make_sampler(train_cuts, config.max_duration, shuffle=True, seed=config.seed,
                                    world_size=self.acc.num_processes, rank=self.acc.process_index,
                                    num_buckets=config.num_buckets, drop_last=self.acc.num_processes > 1)
        self.loader = torch.utils.data.DataLoader(self.dataset, sampler=self.sampler, batch_size=None,
                                                  num_workers=config.num_workers,
                                                  # its own generator: an epoch's start must not draw from the
                                                  # global RNG, or a resumed run would drift from an unbroken one
                                                  generator=torch.Generator().manual_seed(config.seed))
        self.valid_cuts = valid_cuts
        self.model, self.optimizer = self.acc.prepare(model, self.optimizer)
        self.step = 0
        self.nonfinite = 0
        self.store = CheckpointStore(self.acc, self.out, config.keep_checkpoints)
        if self.acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "train_config.json").write_text(json.dumps(config.to_dict(), indent=1) + "\n")
            symbols.save(self.out / "symbols.json")
            (self.out / "codec.json").write_text(json.dumps({"codec": codec}) + "\n")
        if log_with:
            self.acc.init_trackers(config.model_type, config=flat(config.to_dict()),
                                   init_kwargs=tracker_kwargs or {})

    @property
    def unwrapped(self) -> nn.Module:
        return self.acc.unwrap_model(self.model)

    # The step ---------------------------------------------------------------------------------------------------

    def _nar_stage(self, micro: int) -> Optional[int]:
        """The NAR's codebook for this batch: drawn from a generator of (seed, step, rank, micro-batch), so a resumed
        run draws what an unbroken one would."""
        if "nar" not in self.config.stages:
            return None
        return int(torch.randint(1, self.config.model.num_codebooks, (1,), generator=self._step_generator(micro)))

    def _step_generator(self, micro: int) -> torch.Generator:
        """A generator seeded by (seed, step, rank, micro-batch): what a step draws is the same after a resume."""
        return torch.Generator().manual_seed(((self.config.seed * 1_000_003 + self.step) * 1009
                                              + self.acc.process_index) * 17 + micro)

    def _forward(self, model: nn.Module, batch: TokenBatch, micro: int, nar_stage: Optional[int] = None):
        """The model's outputs on a batch. MobileSpeech draws its masks from a generator of (seed, step, rank,
        micro-batch), like the NAR stage, so that a resumed run repeats an unbroken one."""
        if self.config.model_type == "mobilespeech":
            return model(batch, generator=self._step_generator(micro))
        return model(batch, nar_stage=self._nar_stage(micro) if nar_stage is None else nar_stage)

    def train_step(self, batches: Sequence[TokenBatch]) -> Dict[str, float]:
        """One optimizer step over ``grad_accumulation`` batches (the loss of each scaled by 1/N)."""
        n = len(batches)
        logs: Dict[str, float] = {}
        skipped = False
        self.optimizer.zero_grad(set_to_none=True)
        for i, batch in enumerate(batches):
            batch = batch.to(self.acc.device)
            # Gradients are all-reduced once, on the last micro-batch.
            with self.acc.no_sync(self.model) if i < n - 1 else nullcontext():
                with self.acc.autocast():
                    outputs = self._forward(self.model, batch, i)
                loss = sum(o.loss for o in outputs.values())
                if not agree_finite(self.acc, loss):
                    skipped = True
                    continue
                self.acc.backward(loss / n)
            for name, o in outputs.items():
                metrics = (("loss", o.loss),) if name in LOSS_ONLY else (("loss", o.loss), ("accuracy", o.accuracy),
                                                                           ("top10", o.top10))
                for key, value in metrics:
                    logs[f"{name}_{key}"] = logs.get(f"{name}_{key}", 0.0) + value.item() / n
                logs[f"{name}_tokens"] = logs.get(f"{name}_tokens", 0.0) + o.tokens
        if skipped:
            self.optimizer.zero_grad(set_to_none=True)
        else:
            if self.config.grad_clip > 0:
                logs["grad_norm"] = float(self.acc.clip_grad_norm_(self.model.parameters(), self.config.grad_clip))
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.step += 1
        self.nonfinite = self.nonfinite + 1 if skipped else 0
        if self.nonfinite > self.config.max_nonfinite:
            raise NonFiniteLossError(f"non-finite losses in {self.nonfinite} steps in a row at step {self.step}; "
                                     f"weights were not updated by them. Resume from the last checkpoint with a "
                                     f"lower learning rate.")
        logs["skipped"] = float(skipped)
        logs["lr"] = self.scheduler.get_last_lr()[0]
        return logs

    # The loop ---------------------------------------------------------------------------------------------------

    def batches(self) -> Iterator[TokenBatch]:
        return endless(self.loader, self.sampler)

    def train(self, max_steps: Optional[int] = None, stop_after: Optional[int] = None) -> None:
        """Train until ``max_steps`` (default: the config's); ``stop_after`` ends the call after that many steps,
        with a checkpoint."""
        from tqdm import tqdm

        max_steps = max_steps or self.config.max_steps
        end = min(max_steps, self.step + stop_after) if stop_after else max_steps
        bar = tqdm(total=max_steps, initial=self.step, disable=not self.acc.is_main_process,
                   desc=self.config.model_type, unit="step", dynamic_ncols=True)
        stream = self.batches()
        last, window, frames = time.perf_counter(), [], 0
        while self.step < end:
            group = [next(stream) for _ in range(self.config.grad_accumulation)]
            logs = self.train_step(group)
            frames += sum(int(b.code_lens.sum()) for b in group)
            window.append(logs)
            bar.update(1)
            if self.step % self.config.log_every == 0:
                now = time.perf_counter()
                mean = {k: sum(d.get(k, 0.0) for d in window) / len(window) for k in window[-1]}
                mean["frames_per_second"] = frames * self.acc.num_processes / (now - last)
                self.acc.log({f"train/{k}": v for k, v in mean.items()}, step=self.step)
                bar.set_postfix({k: f"{mean[k]:.3f}" for k in ("ar_loss", "ar_accuracy", "nar_loss", "nar_accuracy",
                                                               "smd_loss", "smd_accuracy", "duration_loss")
                                 if k in mean})
                last, window, frames = now, [], 0
            if self.valid_cuts is not None and self.step % self.config.validate_every == 0:
                self.validate()
            if self.step % self.config.checkpoint_every == 0:
                self.save_checkpoint()
        bar.close()
        if self.step % self.config.checkpoint_every:
            self.save_checkpoint()

    @torch.no_grad()
    def validate(self, cuts=None) -> Dict[str, float]:
        """Token-weighted loss, accuracy and top-10 accuracy per stage on held-out cuts (every NAR codebook on every
        batch); every rank computes the same numbers."""
        cuts = cuts if cuts is not None else self.valid_cuts
        model = self.unwrapped
        was_training = model.training
        model.eval()
        sampler = make_sampler(cuts, self.config.max_duration, shuffle=False, num_buckets=1)
        totals: Dict[str, float] = {}
        for index, cuts_batch in enumerate(sampler):
            if self.config.validation_batches and index >= self.config.validation_batches:
                break
            batch = self.dataset[cuts_batch].to(self.acc.device)
            stages = range(1, self.config.model.num_codebooks) if "nar" in self.config.stages else [None]
            for nar_stage in stages:
                with self.acc.autocast():
                    if self.config.model_type == "mobilespeech":  # masks drawn the same way at every validation
                        outputs = model(batch, generator=torch.Generator().manual_seed(index))
                    else:
                        outputs = model(batch, nar_stage=nar_stage)
                for name, o in outputs.items():
                    if name == "ar" and nar_stage not in (None, 1):
                        continue  # the AR's numbers do not depend on the NAR stage
                    for key, value in (("loss", o.loss), ("accuracy", o.accuracy), ("top10", o.top10)):
                        totals[f"{name}_{key}"] = totals.get(f"{name}_{key}", 0.0) + float(value) * o.tokens
                    totals[f"{name}_tokens"] = totals.get(f"{name}_tokens", 0.0) + o.tokens
        results = {}
        for name in dict.fromkeys(key.rsplit("_", 1)[0] for key in totals):
            tokens = totals.get(f"{name}_tokens", 0.0)
            for key in ("loss",) if name in LOSS_ONLY else ("loss", "accuracy", "top10"):
                if tokens:
                    results[f"valid/{name}_{key}"] = totals[f"{name}_{key}"] / tokens
        model.train(was_training)
        self.acc.log(results, step=self.step)
        return results

    # Checkpoints ------------------------------------------------------------------------------------------------

    def save_checkpoint(self) -> Path:
        state = {"step": self.step, "nonfinite": self.nonfinite, "sampler": self.sampler.state_dict(),
                 "scheduler": self.scheduler.state_dict()}
        return self.store.save(self.step, state)

    def resume(self, checkpoint: Optional[os.PathLike] = None) -> bool:
        """Load ``checkpoint`` (default: the latest complete one); False when there is none."""
        state = self.store.load(checkpoint)
        if state is None:
            return False
        self.step, self.nonfinite = state["step"], state["nonfinite"]
        self.sampler.load_state_dict(sampler_state(state["sampler"]))
        self.scheduler.load_state_dict(state["scheduler"])
        return True

    def export(self, directory: Optional[os.PathLike] = None, dtype: Optional[torch.dtype] = None,
               copy_codec: bool = False) -> Path:
        """The model as a release directory (config, weights, symbols, codec reference or copy)."""
        from tts.release import save_token_model

        directory = Path(directory) if directory else self.out / "release"
        if self.acc.is_main_process:
            save_token_model(self.unwrapped, self.config.model_type, directory, self.symbols, self.codec,
                             copy_codec=copy_codec, dtype=dtype)
        self.acc.wait_for_everyone()
        return directory


def codec_dimensions(codec: str) -> Dict[str, int]:
    """``num_codebooks``, ``codebook_size`` and ``frame_rate`` of a codec (release directory, official checkpoint or
    ``"bundled"``). The codec is loaded whole, so weights that do not fit its config fail here, before training."""
    from codec import load_codec

    model = load_codec(None if codec == "bundled" else Path(codec))
    return {"num_codebooks": model.num_codebooks, "codebook_size": model.codebook_size,
            "frame_rate": model.frame_rate}
