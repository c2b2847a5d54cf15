"""The token-model trainer (VALL-E AR and NAR; MobileSpeech, any registered model) on the training engine
(``toolkit.engine.Trainer``).

Each model provides its losses on a ``TokenBatch`` (a dict of ``StageOutput``); the trainer sums them, and with the
engine owns everything else: duration-bucketed batches per rank, gradient accumulation, clipping, AdamW with warm-up
and cosine decay, autocast, a non-finite-loss guard agreed by all ranks, logging (tqdm, Accelerate trackers,
``metrics.jsonl``), validation, atomic checkpoints with exact resume (model, optimizer, scheduler, sampler, RNG, step)
and release export.
"""

from __future__ import annotations

import functools
import json
import os
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from toolkit.engine import RunConfig, Trainer, add_run_arguments, open_pack, process_rank, run_budget, start_run
from toolkit.config import build, preset_section, read_run_file
from toolkit.cuts import beside, open_cuts
from toolkit.runs import LOOP_FIELDS, NonFiniteLossError, agree_finite, warmup_cosine, warmup_stable_decay
from tts.data.dataset import Curriculum, PromptPool, TokenBatch, TokenDataset, check_curriculum, cut_codes, \
    make_sampler
from tts.models.base import TokenModel
from tts.models.registry import model_class
from tts.text import SymbolTable

__all__ = ["NonFiniteLossError", "TokenTrainConfig", "TokenTrainer", "build_model", "load_token_train_config"]


@dataclass(frozen=True, kw_only=True)
class TokenTrainConfig(RunConfig):
    """A token-model run; stored in ``train_config.json`` of the run directory.

    Attributes:
        model_type: a registered model (``tts.models.registry``): ``valle`` or ``mobilespeech``.
        model: the model's config (its ``config_class``), sized for the data's symbols and codec.
        stages: what to train (summed losses), a subset of the model's ``all_stages``. VALL-E: ``("ar",)``,
            ``("nar",)`` or both. MobileSpeech: ``("smd",)`` (its mask decoder, duration predictor and aligner always
            train together).
        max_duration: seconds of target audio per batch per process (Lhotse dynamic bucketing).
        grad_accumulation: batches per optimizer step.
        prompt_seconds: longest acoustic prompt (a prefix of the target; VALL-E's ``prefix_mode 1``).
        other_utterance_prob: chance that the prompt is instead the start of another training utterance of the same
            speaker (0: always a prefix). The pool holds references to stored codes, not cuts (``PromptPool``).
        frame_rate: the codec's frames per second.
        min_lr_ratio: the decay ends at this fraction of ``learning_rate``.
        decay_steps: 0: after the warm-up, a cosine decay to ``max_steps``. N > 0: the peak rate held after the
            warm-up, then a linear decay over the last N steps before ``max_steps`` (``warmup_stable_decay``). A
            checkpoint of the held phase can then be finished with a decay: copy its run folder and resume the copy
            with ``train.max_steps`` set N steps after it.
        validation_batches: validation batches per validation (0: all).
        curriculum: a short-utterance curriculum, ``[[epochs, max_seconds], ...]``: the first stage's epochs draw
            only the cuts of at most its seconds, then the next stage's, then every cut (``Curriculum``). Empty: none.
    """

    model_type: str
    model: object
    stages: tuple = ("ar", "nar")
    max_duration: float = 60.0
    num_buckets: int = 10
    prompt_seconds: float = 3.0
    other_utterance_prob: float = 0.0
    frame_rate: int = 75
    learning_rate: float = 5e-4
    betas: tuple = (0.9, 0.95)
    warmup_steps: int = 1000
    min_lr_ratio: float = 0.05
    decay_steps: int = 0
    grad_accumulation: int = 1
    validation_batches: int = 20
    curriculum: tuple = ()

    FIELDS = {
        **LOOP_FIELDS, "max_duration": "positive number", "num_buckets": "positive int",
        "prompt_seconds": "number >= 0", "other_utterance_prob": "number in [0, 1]",
        "frame_rate": "positive int", "warmup_steps": "int >= 0",
        "min_lr_ratio": "number in [0, 1]", "decay_steps": "int >= 0", "grad_accumulation": "positive int",
        "validation_batches": "int >= 0",
    }

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "curriculum", check_curriculum(self.curriculum))
        if self.decay_steps > self.max_steps:
            raise ValueError(f"train.decay_steps ({self.decay_steps}) is more than train.max_steps ({self.max_steps})")



def build_model(config: TokenTrainConfig) -> TokenModel:
    return model_class(config.model_type).build(config.model, config.stages)


PRESETS = ("paper", "mini", "tiny")


def load_token_train_config(path: os.PathLike, num_symbols: int, num_codebooks: int, codebook_size: int,
                            overrides: Optional[Sequence[str]] = None) -> TokenTrainConfig:
    """A token-model run config in the project's YAML layout (``toolkit.config``), sized for the data.

    Sections: ``model`` (``type``: a registered model, default ``valle``; ``preset``: ``paper``/``mini``/``tiny``;
    then field overrides, e.g. ``transformer: {layers: 4}`` for VALL-E or ``decoder: {layers: 4}`` for MobileSpeech)
    and ``train`` (``TokenTrainConfig`` fields). ``overrides`` are ``a.b=value`` strings
    (``model.transformer.layers=3``). The earlier layout's ``model_type``, ``preset`` and ``model_overrides`` still
    load.
    """
    data, train = read_run_file(path, overrides, ("model",), _LEGACY_KEYS)
    model = dict(data["model"])
    model_type = model.pop("type", "valle")
    try:
        kind = model_class(model_type)
    except ValueError as err:
        raise ValueError(f"{path}: model.type: {err}") from None
    presets = {name: functools.partial(getattr(kind.config_class, name), num_symbols, num_codebooks, codebook_size)
               for name in PRESETS}
    config = build(kind.config_class, preset_section(model, presets, "model", "mini"), "model")
    if {"model", "model_type"} & set(train):
        raise ValueError(f"{path}: the model is a section of its own, not a train field")
    train["stages"] = kind.check_stages(train.get("stages", kind.all_stages))
    return build(TokenTrainConfig, {**train, "model_type": model_type, "model": config}, "train")


_LEGACY_KEYS = {"model_type": "model.type", "preset": "model.preset", "model_overrides": "model"}


class TokenTrainer(Trainer):
    """Args:
        config: the run's ``TokenTrainConfig``.
        train_cuts, valid_cuts: tokenized Lhotse cuts (``cut.codes``, ``supervision.custom["phonemes"]``).
        symbols: the data's symbol table.
        out_dir: run directory (``checkpoints/``, ``release/``, ``train_config.json``, tracker files).
        codec: what the data was tokenized with (recorded in the release).
        codec_files: where that codec's files are when not at ``codec`` (a training pack's copy).
        per_rank: ``train_cuts`` are this process's share already (Shar shards per rank, ``toolkit.cuts``).
    """

    throughput_key = "frames_per_second"

    def __init__(self, config: TokenTrainConfig, train_cuts, symbols: SymbolTable, out_dir: os.PathLike,
                 valid_cuts=None, codec: str = "bundled", accelerator=None, log_with: Optional[str] = None,
                 tracker_kwargs: Optional[dict] = None, codec_files: Optional[os.PathLike] = None,
                 per_rank: bool = False):
        from accelerate.utils import DistributedDataParallelKwargs

        self.symbols, self.codec, self.codec_files = symbols, codec, codec_files
        self.seconds_per_amount = 1.0 / config.frame_rate
        self.kind = model_class(config.model_type)
        self.progress_keys = self.kind.progress_keys
        self.accumulation = config.grad_accumulation
        ddp = DistributedDataParallelKwargs(find_unused_parameters=self.kind.unused_parameters(config.stages))
        super().__init__(config, out_dir, config.model_type, accelerator, log_with, tracker_kwargs, [ddp])
        model = build_model(config)
        if model.needs_codebooks():
            from tts.release import codec_source

            model.use_codebooks(codec_codebooks(codec_source(codec, codec_files)))
        # Weight decay on linear weights only: not on embeddings, norms (AdaLN tables included) or biases.
        linear = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
        decay = [p for p in model.parameters() if id(p) in linear]
        no_decay = [p for p in model.parameters() if id(p) not in linear]
        self.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                            {"params": no_decay, "weight_decay": 0.0}],
                                           lr=config.learning_rate, betas=tuple(config.betas),
                                           fused=config.fused_optimizer or None)
        # Stepped here once per optimizer step (Accelerate would step a prepared scheduler once per process).
        c = config
        schedule = (warmup_stable_decay(c.max_steps, c.warmup_steps, c.decay_steps, c.min_lr_ratio) if c.decay_steps
                    else warmup_cosine(c.max_steps, c.warmup_steps, c.min_lr_ratio))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        pool = PromptPool(train_cuts) if config.other_utterance_prob > 0 else None
        self.dataset = self._token_dataset(symbols, config.other_utterance_prob, pool)
        world, rank = (1, 0) if per_rank else (self.acc.num_processes, self.acc.process_index)
        self.sampler = make_sampler(train_cuts, config.max_duration, shuffle=True, seed=config.seed,
                                    world_size=world, rank=rank, num_buckets=config.num_buckets,
                                    drop_last=self.acc.num_processes > 1,
                                    curriculum=Curriculum(config.curriculum) if config.curriculum else None)
        self.loader = torch.utils.data.DataLoader(self.dataset, sampler=self.sampler, batch_size=None,
                                                  num_workers=config.num_workers,
                                                  # its own generator: an epoch's start must not draw from the
                                                  # global RNG, or a resumed run would drift from an unbroken one
                                                  generator=torch.Generator().manual_seed(config.seed))
        self.valid_cuts = valid_cuts
        self._valid_sets = None  # validation's datasets on valid_cuts, made at the first validation
        self.model, self.optimizer = self.acc.prepare(model, self.optimizer)
        if self.acc.is_main_process:
            symbols.save(self.out / "symbols.json")
            (self.out / "codec.json").write_text(json.dumps({"codec": codec}) + "\n")

    @property
    def unwrapped(self) -> nn.Module:
        return self.acc.unwrap_model(self.model)

    # The step ---------------------------------------------------------------------------------------------------

    def _step_generator(self, micro: int) -> torch.Generator:
        """A generator seeded by (seed, step, rank, micro-batch) for what the model draws in a step (VALL-E's NAR
        codebook, MobileSpeech's masks): the same after a resume as in an unbroken run."""
        return torch.Generator().manual_seed(((self.config.seed * 1_000_003 + self.step) * 1009
                                              + self.acc.process_index) * 17 + micro)

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
                    outputs = self.model(batch, generator=self._step_generator(i))
                loss = sum(o.loss for o in outputs.values())
                if not agree_finite(self.acc, loss):
                    skipped = True
                    continue
                self.acc.backward(loss / n)
            for name, o in outputs.items():
                if not o.tokens:  # nothing to learn from in this batch (e.g. no stored durations in it)
                    continue
                metrics = (("loss", o.loss),) if name in self.kind.loss_only else (
                    ("loss", o.loss), ("accuracy", o.accuracy), ("top10", o.top10))
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
        self.finish_step(skipped)
        logs["skipped"] = float(skipped)
        logs["lr"] = self.scheduler.get_last_lr()[0]
        return logs

    def amount(self, batch: TokenBatch) -> float:
        return float(batch.code_lens.sum())

    def _token_dataset(self, symbols: SymbolTable, other_utterance_prob: float = 0.0,
                       prompt_pool: Optional[PromptPool] = None) -> TokenDataset:
        """The run's dataset settings with the given prompting (training's, or validation's)."""
        c = self.config
        return TokenDataset(symbols, frame_rate=c.frame_rate, prompt_seconds=c.prompt_seconds,
                            other_utterance_prob=other_utterance_prob, prompt_pool=prompt_pool, seed=c.seed)

    def _validation_sets(self, cuts) -> Tuple[TokenDataset, Optional[TokenDataset]]:
        """Validation's datasets on ``cuts``: prefix prompts, and other utterances' prompts for a
        ``validates_prompt_free`` model (else None). Those of the run's own held-out cuts are made once (the pool is a
        pass over them)."""
        if cuts is self.valid_cuts and self._valid_sets is not None:
            return self._valid_sets
        prefixed = self._token_dataset(self.dataset.symbols)
        free = self._token_dataset(self.dataset.symbols, 1.0, PromptPool(cuts)) if (
            self.unwrapped.validates_prompt_free) else None
        if cuts is self.valid_cuts:
            self._valid_sets = prefixed, free
        return prefixed, free

    @torch.no_grad()
    def validate(self, cuts=None) -> Dict[str, float]:
        """Token-weighted loss, accuracy and top-10 accuracy per stage on held-out cuts (every NAR codebook on every
        batch); every rank computes the same numbers.

        Prompts are prefixes of the targets whatever ``other_utterance_prob`` trains with, so that runs compare; a
        ``validates_prompt_free`` model is also scored with prompts from other held-out utterances of each speaker."""
        cuts = cuts if cuts is not None else self.valid_cuts
        model = self.unwrapped
        was_training = model.training
        model.eval()
        sampler = make_sampler(cuts, self.config.max_duration, shuffle=False, num_buckets=1)
        prefixed, free = self._validation_sets(cuts)
        totals: Dict[str, float] = {}
        for index, cuts_batch in enumerate(sampler):
            if self.config.validation_batches and index >= self.config.validation_batches:
                break
            batch = prefixed[cuts_batch].to(self.acc.device)
            with self.acc.autocast():
                passes = model.validation_outputs(batch, index)
                if free is not None:
                    passes.append(model.prompt_free_outputs(free[cuts_batch].to(self.acc.device)))
            for outputs in passes:
                for name, o in outputs.items():
                    for key, value in (("loss", o.loss), ("accuracy", o.accuracy), ("top10", o.top10)):
                        totals[f"{name}_{key}"] = totals.get(f"{name}_{key}", 0.0) + float(value) * o.tokens
                    totals[f"{name}_tokens"] = totals.get(f"{name}_tokens", 0.0) + o.tokens
        results = {}
        for name in dict.fromkeys(key.rsplit("_", 1)[0] for key in totals):
            tokens = totals.get(f"{name}_tokens", 0.0)
            for key in ("loss",) if name in self.kind.loss_only else ("loss", "accuracy", "top10"):
                if tokens:
                    results[f"valid/{name}_{key}"] = totals[f"{name}_{key}"] / tokens
        model.train(was_training)
        self.log(results)
        return results

    # Checkpoints ------------------------------------------------------------------------------------------------

    def extra_state(self) -> dict:
        return {"scheduler": self.scheduler.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        sched = self.scheduler
        sched.load_state_dict(state["scheduler"])
        # The next step's rate is this run's schedule's, which may differ from the checkpoint's (a decay started from a
        # held checkpoint); LambdaLR would apply it only from the step after, the optimizer holding the saved rate.
        for group, base, factor in zip(sched.optimizer.param_groups, sched.base_lrs, sched.lr_lambdas):
            group["lr"] = base * factor(sched.last_epoch)
        sched._last_lr = [group["lr"] for group in sched.optimizer.param_groups]

    def init_from(self, source: Union[str, os.PathLike]) -> Dict[str, object]:
        """Start this run from a token-model release instead of a random init: fine-tuning on other data, or
        continuing a bundled model whose run folder is gone.

        ``source`` is a release directory or ``"bundled"`` (the bundled release of this run's model type). The
        release must hold a model of this run's type and architecture (its config may differ only in dropout and in
        the fields its config class lists as ``training_only``: loss weights and how training draws), every
        stage this run trains (a VALL-E release of both stages can start an AR-only run), and this run's symbol
        table. Its codec may differ from the one the run's codes come from (a model carried over to a new codec):
        the returned info says whether it does (``same_codec``; a codec whose decoder alone differs gives the same
        codes and counts as the same, ``LanguageCodec.codes_sha256``). The optimizer, the schedule with its warm-up
        and the step start anew. Call before training, on every rank. Returns what was loaded (also written to
        ``<out>/init_from.json``); a ``ValueError`` says why a release cannot start this run.
        """
        from toolkit.weights import load_strict
        from tts.release import bundled_release, codec_source, load_token_model, weights_sha256

        path = bundled_release(self.config.model_type) if str(source) == "bundled" else Path(source)
        release = load_token_model(path)
        if release.model_type != self.config.model_type:
            raise ValueError(f"{path} holds a {release.model_type} model; this run trains {self.config.model_type}")
        free = getattr(self.config.model, "training_only", ())  # loss weights and draws, not weights
        differ = [key for key in differing_fields(release.model.config.to_dict(), self.config.model.to_dict())
                  if "dropout" not in key.rsplit(".", 1)[-1] and key not in free]
        if differ:
            raise ValueError(f"{path} has another architecture than this run's model: {', '.join(differ)} differ")
        if release.symbols.symbols != self.symbols.symbols:
            raise ValueError(f"{path} was trained on another symbol table ({len(release.symbols)} symbols) than "
                             f"this run's ({len(self.symbols)}): the phoneme ids would mean other phonemes")
        missing = [stage for stage in self.config.stages if stage not in release.model.stages]
        if missing:
            raise ValueError(f"{path} holds the stages {', '.join(release.model.stages)}, not {', '.join(missing)}")
        state = release.model.state_dict()
        if self.kind.separable_stages:  # the weights of stage s are those under "s."
            state = {k: v for k, v in state.items() if k.split(".", 1)[0] in self.config.stages}
        load_strict(self.unwrapped, state, source=str(path))
        source = codec_source(self.codec, self.codec_files)
        ours = weights_sha256(source)
        same = None if ours is None or release.codec_sha256 is None else ours == release.codec_sha256
        if same is False and release.codec_codes_sha256 is not None:  # another decoder on the same codes
            from codec import load_codec

            same = load_codec(source).codes_sha256() == release.codec_codes_sha256
        info: Dict[str, object] = {"source": str(path), "stages": list(self.config.stages), "codec": release.codec,
                                   "same_codec": same}
        if self.acc.is_main_process:
            (self.out / "init_from.json").write_text(json.dumps(info, indent=1) + "\n")
        self.acc.wait_for_everyone()
        return info

    def export(self, directory: Optional[os.PathLike] = None, dtype: Optional[torch.dtype] = None,
               copy_codec: bool = False, max_shard_bytes: Optional[int] = None) -> Path:
        """The model as a release directory (config, weights, symbols, codec reference or copy); the weights as shards
        of at most ``max_shard_bytes`` when given."""
        from tts.release import save_token_model

        directory = Path(directory) if directory else self.out / "release"
        if self.acc.is_main_process:
            save_token_model(self.unwrapped, directory, self.symbols, self.codec, copy_codec=copy_codec, dtype=dtype,
                             max_shard_bytes=max_shard_bytes, codec_files=self.codec_files)
        self.acc.wait_for_everyone()
        return directory


def differing_fields(a: dict, b: dict, prefix: str = "") -> list:
    """Dotted names of the fields where two nested config dicts differ (a field only one of them has counts)."""
    out = []
    for key in sorted(set(a) | set(b), key=str):
        left, right = a.get(key), b.get(key)
        if isinstance(left, dict) and isinstance(right, dict):
            out += differing_fields(left, right, f"{prefix}{key}.")
        elif left != right or (key in a) != (key in b):
            out.append(f"{prefix}{key}")
    return out


def codec_dimensions(codec: str) -> Dict[str, int]:
    """``num_codebooks``, ``codebook_size`` and ``frame_rate`` of a codec (release directory, official checkpoint or
    ``"bundled"``). The codec is loaded whole, so weights that do not fit its config fail here, before training."""
    from codec import load_codec

    model = load_codec(None if codec == "bundled" else Path(codec))
    return {"num_codebooks": model.num_codebooks, "codebook_size": model.codebook_size,
            "frame_rate": model.frame_rate}


def codec_codebooks(codec: os.PathLike) -> torch.Tensor:
    """The codewords ``[K, C, D]`` of a codec's quantizer layers (a release directory or official checkpoint)."""
    from codec import load_codec

    quantizer = load_codec(Path(codec)).quantizer
    return torch.stack([layer.codebook.embed.detach().float() for layer in quantizer.layers])


def main(description: Optional[str] = None, argv: Optional[Sequence[str]] = None) -> None:
    """The training command of the token-model recipes (``recipes/valle/train.py``, ``recipes/mobilespeech/train.py``):
    the config's ``model_type`` selects the model."""
    import argparse

    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    parser.add_argument("--symbols", type=Path, help="default: symbols.json beside --train-cuts (or up to two folders "
                        "above a Shar directory), or the pack's")
    parser.add_argument("--codec", help="codec release directory, official checkpoint or bundled (default: bundled; "
                        "with --pack, the pack's)")
    parser.add_argument("--copy-codec", action="store_true", help="copy the codec into the release")
    parser.add_argument("--init-from", metavar="RELEASE", help="start from a token-model release directory or "
                        "'bundled' (this model type's bundled release); ignored when --resume finds a checkpoint")
    args = parser.parse_args(argv)
    trackers = start_run(args)
    per_rank = False
    if args.pack:
        pack = open_pack(args)
        train_cuts = pack.token_cuts("train")
        valid_cuts = pack.token_cuts("valid") if pack.has("tokens", "valid") else None
        symbols = SymbolTable.load(args.symbols or pack.symbols)
        codec, codec_files = (args.codec, None) if args.codec else (pack.codec_reference, pack.codec)
    else:  # the symbols and the codec first, as before lazy reading: their errors come before the data's
        symbols = SymbolTable.load(args.symbols or beside(args.train_cuts, "symbols.json"))
        codec, codec_files = args.codec or "bundled", None
    dims = codec_dimensions(str(codec_files or codec))
    if not args.pack:
        opened = open_cuts(args.train_cuts, *process_rank())
        train_cuts, per_rank = opened.cuts, opened.per_rank
        valid_cuts = open_cuts(args.valid_cuts).cuts if args.valid_cuts else None
    stored = cut_codes(next(iter(train_cuts))).shape[1]
    if stored != dims["num_codebooks"]:
        raise SystemExit(f"error: the cuts hold {stored} codebooks, the codec {codec} has "
                         f"{dims['num_codebooks']}: they were tokenized with another codec")
    config = load_token_train_config(args.config, len(symbols), dims["num_codebooks"], dims["codebook_size"],
                                     args.set + [f"train.frame_rate={dims['frame_rate']}"])
    trainer = TokenTrainer(config, train_cuts, symbols, args.out_dir, valid_cuts=valid_cuts, codec=codec,
                           codec_files=codec_files, per_rank=per_rank, **trackers)
    if args.resume and trainer.resume():  # a checkpoint that cannot be restored: run_cli's one line
        trainer.acc.print(f"resumed at step {trainer.step}")
    elif args.init_from:
        info = trainer.init_from(args.init_from)
        other = "" if info["same_codec"] is not False else f" (its codes came from another codec: {info['codec']})"
        trainer.acc.print(f"started from {info['source']}{other}")
    trainer.train(**run_budget(args))
    release = trainer.export(dtype=getattr(torch, args.export_dtype), copy_codec=args.copy_codec,
                             max_shard_bytes=args.max_shard_bytes)
    trainer.acc.print(f"release written to {release}")
    trainer.acc.end_training()
