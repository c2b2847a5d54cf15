"""GAN training of the codec with Accelerate: one process, several CPU processes, or many GPUs, unchanged.

Per step: a discriminator update on real and generated crops (hinge loss), then a generator update with
``45 x mel + 1000 x commitment + adversarial + feature matching`` (official weights, ``LossWeights``; an optional
compressed complex STFT term, ``losses.complex_stft``, and a phase-derivative term, ``losses.phase_derivative``, are
off by default). An optional
reconstruction-only warm-up leaves the discriminators out. Checkpoints hold everything a resumed run needs (weights,
optimizers, schedulers, sampler position, RNG states, step) and appear atomically; a run resumed from one ends with the
same weights as a run that never stopped. The loop, logging, guard and checkpoints are the training engine's
(``toolkit.engine.Trainer``).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Union

import torch
from torch import nn

from toolkit.config import build, preset_section, read_run_file
from toolkit.engine import RunConfig, Trainer
from toolkit.pack import is_pack_data
from toolkit.runs import LOOP_FIELDS, NonFiniteLossError, agree_finite, warmup_cosine

from .config import CodecConfig
from .data import AudioCropDataset, clip_sampler, repeat_cuts
from .discriminators import DiscriminatorConfig, Discriminators, SubOutput
from .losses import (VOCOS_MEL_SCALE, ComplexSTFTLoss, LossWeights, MelSpectrogram, MultiScaleMelLoss,
                     PhaseDerivativeLoss, discriminator_loss, feature_matching_loss, generator_adversarial_loss)
from .model import LanguageCodec
from .warm_start import (DISCRIMINATORS_CONFIG, DISCRIMINATORS_WEIGHTS, check_architecture, resolve_init_source,
                         save_discriminators)

__all__ = ["CodecTrainer", "NonFiniteLossError", "TrainConfig", "load_train_config", "resolve_init_source"]



@dataclass(frozen=True, kw_only=True)
class TrainConfig(RunConfig):
    """Everything a codec training run is made of; stored in every checkpoint and in the run directory. The loop's
    fields (learning rate, cadences, guard, seed, ...) are ``RunConfig``'s; these are the codec's own."""

    codec: CodecConfig = field(default_factory=CodecConfig)
    discriminators: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    losses: LossWeights = field(default_factory=LossWeights)
    batch_size: int = 8
    segment_seconds: float = 1.0
    lr_warmup_steps: int = 0
    reconstruction_only_steps: int = 0
    # the discriminators start training this many steps before the generator's adversarial losses do (at
    # reconstruction_only_steps), so that fresh discriminators judge the generator before it learns from them
    discriminator_lead_steps: int = 0
    # the first steps of a run decode the encoder's latent unquantized ("continuous first, discrete later"); the
    # quantizer's k-means then initializes its codebooks from the trained latents at the switch
    continuous_steps: int = 0
    grad_clip: float = 10.0
    validation_clips: int = 4
    noise_floor_db: Optional[tuple] = None
    # speaker pattern -> times each such cut appears per epoch (codec.data.repeat_cuts); null: each once
    repeat_factors: Optional[dict] = None
    # [[n_fft, hop, n_mels], ...] of the mel loss, averaged (codec.losses.MultiScaleMelLoss); null: the one Vocos
    # scale, [[1024, 256, 100]]
    mel_scales: Optional[list] = None
    # seconds: the discriminators (and the generator's adversarial and feature-matching losses) see one random window
    # this long of each crop, the same window of the real and the generated crop; the mel loss still covers the whole
    # crop. null: the whole crop. HiFi-GAN and DAC judge segments of about 0.35 s; the discriminators are most of an
    # adversarial step's cost on CPU (docs/speed.md) and it scales with their input's length.
    discriminator_seconds: Optional[float] = None
    # decoder-only fine-tuning: the encoder and the quantizer are frozen (no gradients, eval mode, codebooks and their
    # EMA state fixed), so the run's codes are those of the release it started from (--init-from) and token models
    # trained on them stay valid while the decoder keeps improving; each step also skips the encoder's backward pass
    decoder_only: bool = False

    FIELDS = {
        **LOOP_FIELDS, "batch_size": "positive int", "segment_seconds": "positive number",
        "lr_warmup_steps": "int >= 0", "reconstruction_only_steps": "int >= 0", "validation_clips": "int >= 0",
        "continuous_steps": "int >= 0", "discriminator_lead_steps": "int >= 0", "decoder_only": (False, True),
    }

    def __post_init__(self):
        super().__post_init__()
        floor = self.noise_floor_db
        if floor is not None and not (isinstance(floor, (list, tuple)) and len(floor) == 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and v <= 0 for v in floor)
                and floor[0] <= floor[1]):
            raise ValueError(f"train.noise_floor_db must be null or [low, high] dBFS with low <= high <= 0, "
                             f"got {floor!r}")
        factors = self.repeat_factors
        if factors is not None and not (isinstance(factors, dict) and factors and all(
                isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
                for k, v in factors.items())):
            raise ValueError(f"train.repeat_factors must be null or a mapping of speaker patterns to ints >= 0, "
                             f"got {factors!r}")
        scales = self.mel_scales
        if scales is not None and not (isinstance(scales, (list, tuple)) and scales and all(
                isinstance(s, (list, tuple)) and len(s) == 3 and all(
                    isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in s) and s[1] <= s[0]
                for s in scales)):
            raise ValueError(f"train.mel_scales must be null or a list of [n_fft, hop, n_mels] positive ints with "
                             f"hop <= n_fft, got {scales!r}")
        window = self.discriminator_seconds
        if window is not None and not (isinstance(window, (int, float)) and not isinstance(window, bool)
                                       and 0 < window <= self.segment_seconds):
            raise ValueError(f"train.discriminator_seconds must be null or a number in (0, segment_seconds = "
                             f"{self.segment_seconds}], got {window!r}")



@contextmanager
def _frozen(module: nn.Module, active: bool = True) -> Iterator[None]:
    """``module``'s parameters without ``requires_grad`` inside the block (their earlier flags come back after)."""
    params = [p for p in module.parameters() if p.requires_grad] if active else []
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def _split(verdicts: Dict[str, List[SubOutput]], n: int):
    """Verdicts on ``cat([real, fake])`` -> (real, fake) verdicts (one discriminator pass for both)."""
    real, fake = {}, {}
    for name, subs in verdicts.items():
        real[name] = [SubOutput(s.logits[:n], [f[:n] for f in s.features]) for s in subs]
        fake[name] = [SubOutput(s.logits[n:], [f[n:] for f in s.features]) for s in subs]
    return real, fake


class CodecTrainer(Trainer):
    """Args:
        config: the run's ``TrainConfig``.
        train_cuts: Lhotse cuts with audio (any sample rate; resampled to the codec's).
        out_dir: run directory: ``checkpoints/step-XXXXXXXX/``, ``release/``, ``train_config.json``, tracker files.
        valid_cuts: held-out cuts for validation (mel distance, and PESQ/STOI when installed).
        accelerator: an ``accelerate.Accelerator``; by default one is made from the config.
        per_rank: ``train_cuts`` are this process's share already (Shar shards per rank, ``toolkit.cuts``).
    """

    label = "codec"
    throughput_key = "audio_seconds_per_second"
    progress_keys = ("mel", "loss_g")

    def __init__(self, config: TrainConfig, train_cuts, out_dir: os.PathLike, valid_cuts=None, accelerator=None,
                 log_with: Optional[str] = None, tracker_kwargs: Optional[dict] = None, per_rank: bool = False):
        super().__init__(config, out_dir, "languagecodec", accelerator, log_with, tracker_kwargs)
        self.model = LanguageCodec(config.codec)
        self._codebooks_checked = False
        if config.decoder_only:
            # before the optimizer and Accelerate's wrapping: DDP then neither syncs nor waits for these
            for p in itertools.chain(self.model.encoder.parameters(), self.model.quantizer.parameters()):
                p.requires_grad_(False)
        self.discs = Discriminators(config.discriminators)
        opt = dict(lr=config.learning_rate, betas=tuple(config.betas), weight_decay=config.weight_decay,
                   fused=config.fused_optimizer or None)
        self.opt_g = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], **opt)
        self.opt_d = torch.optim.AdamW(self.discs.parameters(), **opt)
        # Stepped here once per optimizer step (Accelerate would step prepared schedulers once per process).
        # The discriminators' scheduler only steps once they train, offset to follow the same global schedule.
        schedule = warmup_cosine(config.max_steps, config.lr_warmup_steps)
        offset = self.discriminator_start
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, schedule)
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, lambda step: schedule(step + offset))
        world, rank = (1, 0) if per_rank else (self.acc.num_processes, self.acc.process_index)
        if config.repeat_factors:
            if is_pack_data(train_cuts):
                raise ValueError("train.repeat_factors needs cuts: a pack's clips have no speakers")
            train_cuts = repeat_cuts(train_cuts, config.repeat_factors)
        self.sampler = clip_sampler(train_cuts, config.batch_size, config.seed, world, rank)
        segment = int(config.segment_seconds * config.codec.sample_rate)
        widest = max((*(n for n, _ in config.discriminators.resolutions), *config.discriminators.band_windows),
                     default=0)
        window = self._window_samples()
        if window is not None and window < min(widest, segment):
            raise ValueError(f"train.discriminator_seconds = {config.discriminator_seconds} is shorter than the "
                             f"discriminators' widest STFT window ({widest} samples)")
        dataset = AudioCropDataset(segment, sample_rate=config.codec.sample_rate,
                                   noise_db=tuple(config.noise_floor_db) if config.noise_floor_db else None)
        self.loader = torch.utils.data.DataLoader(dataset,
                                                  sampler=self.sampler, batch_size=None,
                                                  num_workers=config.num_workers,
                                                  # its own generator: starting an epoch must not draw from the
                                                  # global RNG, or a resumed run would drift from an unbroken one
                                                  generator=torch.Generator().manual_seed(config.seed))
        self.model, self.discs, self.opt_g, self.opt_d = self.acc.prepare(self.model, self.discs, self.opt_g,
                                                                          self.opt_d)
        self.mel = MultiScaleMelLoss(config.codec.sample_rate, config.mel_scales or (VOCOS_MEL_SCALE,)).to(
            self.acc.device)
        self.complex = ComplexSTFTLoss().to(self.acc.device) if config.losses.complex_stft else None
        self.phase = PhaseDerivativeLoss().to(self.acc.device) if config.losses.phase_derivative else None
        self.valid_cuts = valid_cuts

    @property
    def codec(self) -> LanguageCodec:
        return self.acc.unwrap_model(self.model)

    # The step ---------------------------------------------------------------------------------------------------

    def _choices(self, batch: int, length: int):
        """Quantizer count, AdaLN row and the start of each crop's discriminator window (``None``: whole crops) of
        this step, equal on every rank and reproducible on resume."""
        g = torch.Generator().manual_seed(self.config.seed * 1_000_003 + self.step)
        options = self.config.codec.quantizer.train_num_quantizers
        n_q = options[int(torch.randint(0, len(options), (1,), generator=g))]
        bandwidth = int(torch.randint(0, self.config.codec.decoder.num_bandwidths, (1,), generator=g))
        window = self._window_samples()
        starts = None
        if window is not None and window < length:
            starts = torch.randint(0, length - window + 1, (batch,), generator=g)
        return n_q, bandwidth, starts

    def _window_samples(self) -> Optional[int]:
        seconds = self.config.discriminator_seconds
        return None if seconds is None else round(seconds * self.config.codec.sample_rate)

    def _judged(self, x: torch.Tensor, starts: Optional[torch.Tensor]) -> torch.Tensor:
        """What the discriminators see of crops ``[B, 1, L]``: all of them, or each one's window from ``starts``."""
        if starts is None:
            return x
        index = starts.to(x.device)[:, None, None] + torch.arange(self._window_samples(), device=x.device)
        return x.gather(-1, index)

    def _all_finite(self, loss: torch.Tensor) -> bool:
        return agree_finite(self.acc, loss)

    def _update(self, loss: torch.Tensor, module: nn.Module, optimizer) -> Optional[float]:
        optimizer.zero_grad(set_to_none=True)
        self.acc.backward(loss)
        norm = None
        if self.config.grad_clip > 0:
            norm = float(self.acc.clip_grad_norm_(module.parameters(), self.config.grad_clip))
        optimizer.step()
        return norm

    def train_step(self, wav: Union[torch.Tensor, Sequence[torch.Tensor]]) -> Dict[str, float]:
        """One discriminator and one generator update on a batch of crops ``[B, L]`` (or a list of one batch, as the
        engine's loop gives it)."""
        w = self.config.losses
        wav = wav[0] if isinstance(wav, (list, tuple)) else wav
        wav = wav.to(self.acc.device).unsqueeze(1)
        n_q, bandwidth, starts = self._choices(wav.shape[0], wav.shape[-1])
        adversarial = self.step >= self.config.reconstruction_only_steps
        judging = self.step >= self.discriminator_start
        continuous = self.continuous
        if self.config.decoder_only and not continuous and not self._codebooks_checked:
            self._check_codebooks()
        logs: Dict[str, float] = {"num_quantizers": 0 if continuous else n_q}
        with self.acc.autocast():
            out = self.model(wav, bandwidth_id=bandwidth, num_quantizers=n_q, quantize=not continuous,
                             frozen_encoder=self.config.decoder_only)
        audio = out.audio[..., : wav.shape[-1]].float()  # decoded length is whole frames
        skipped = False
        if judging:
            with self.acc.autocast():
                judged = torch.cat([self._judged(wav, starts), self._judged(audio.detach(), starts)])
                real, fake = _split(self.discs(judged), wav.shape[0])
                loss_d = discriminator_loss(real, fake)
            if self._all_finite(loss_d):
                logs["grad_norm_d"] = self._update(loss_d, self.discs, self.opt_d) or 0.0
            else:
                skipped = True
            logs["loss_d"] = loss_d.item()
        mel = self.mel(audio, wav)
        loss_g = w.mel * mel + w.commitment * out.commit_loss
        logs.update(mel=mel.item(), commit=out.commit_loss.item())
        if self.complex is not None:
            spectral = self.complex(audio, wav)
            loss_g = loss_g + w.complex_stft * spectral
            logs["complex_stft"] = spectral.item()
        if self.phase is not None:
            phase = self.phase(audio, wav)
            loss_g = loss_g + w.phase_derivative * phase
            logs["phase_derivative"] = phase.item()
        # The generator's loss goes through the discriminators too. Their weights take no gradient from it (frozen:
        # the backward pass then skips their weight gradients, ~1/3 of its cost) and nothing of theirs is synced.
        with self.acc.no_sync(self.discs) if adversarial else nullcontext(), _frozen(self.discs, adversarial):
            if adversarial:
                with self.acc.autocast():
                    # The real crops' features are targets only: computed without a graph, so the backward pass
                    # runs through the generated half alone (the same values as one pass over both halves).
                    with torch.no_grad():
                        real = self.discs(self._judged(wav, starts))
                    fake = self.discs(self._judged(audio, starts))
                    adv, fm = generator_adversarial_loss(fake), feature_matching_loss(real, fake)
                loss_g = loss_g + w.adversarial * adv + w.feature_matching * fm
                logs.update(adversarial=adv.item(), feature_matching=fm.item())
            if self._all_finite(loss_g) and not skipped:
                logs["grad_norm_g"] = self._update(loss_g, self.model, self.opt_g) or 0.0
            else:
                skipped = True
        logs["loss_g"] = loss_g.item()
        self.sched_g.step()
        if judging:
            self.sched_d.step()
        self.finish_step(skipped)
        logs["skipped"] = float(skipped)
        logs["lr"] = self.sched_g.get_last_lr()[0]
        return logs

    def _check_codebooks(self) -> None:
        """Once per run: a frozen quantizer cannot lose its initialization."""
        quantizer = self.codec.quantizer
        if quantizer.num_initialized < quantizer.num_quantizers:
            raise ValueError("train.decoder_only freezes the quantizer, and its codebooks are not initialized: start "
                             "from a trained release (--init-from)")
        self._codebooks_checked = True

    @property
    def discriminator_start(self) -> int:
        """The step from which the discriminators train (``train.discriminator_lead_steps`` before the generator's
        adversarial losses start)."""
        return max(0, self.config.reconstruction_only_steps - self.config.discriminator_lead_steps)

    @property
    def continuous(self) -> bool:
        """Whether this step is in the continuous warm-up (``train.continuous_steps``)."""
        return self.step < self.config.continuous_steps

    def amount(self, wav: torch.Tensor) -> float:
        return wav.numel() / self.config.codec.sample_rate

    # Checkpoints ------------------------------------------------------------------------------------------------

    def extra_state(self) -> dict:
        return {"sched_g": self.sched_g.state_dict(), "sched_d": self.sched_d.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        self.sched_g.load_state_dict(state["sched_g"])
        self.sched_d.load_state_dict(state["sched_d"])

    def export(self, directory: Optional[os.PathLike] = None, dtype: Optional[torch.dtype] = None,
               discriminators: bool = False, max_shard_bytes: Optional[int] = None) -> Path:
        """The generator as a release directory (``config.json`` + ``model.safetensors``, or shards of at most
        ``max_shard_bytes`` with their index); with ``discriminators`` their weights and config go beside it, so that
        a later run can continue the adversarial phase."""
        directory = Path(directory) if directory else self.out / "release"
        if self.acc.is_main_process:
            self.codec.save_pretrained(directory, dtype=dtype, max_shard_bytes=max_shard_bytes)
            if discriminators:
                save_discriminators(self.acc.unwrap_model(self.discs), self.config.discriminators, directory)
        self.acc.wait_for_everyone()
        return directory

    # Starting from released weights ---------------------------------------------------------------------------------

    def init_from(self, source: Union[str, os.PathLike]) -> Dict[str, object]:
        """Start this run from released weights instead of a random init.

        ``source`` is a release directory, ``"bundled"`` (the codec shipped in the package) or an official
        Language-Codec checkpoint file. The generator's weights come along with the codebooks and their EMA state
        (cluster sizes, running sums, the k-means flag), so quantization continues where the release left it. The
        discriminators come along when the directory holds them (``export(discriminators=True)``) in this run's
        discriminator config; otherwise they start fresh. Optimizers, schedules and the step start anew: the
        config's ``lr_warmup_steps`` warms the restarted optimizer up. Call before training, on every rank.
        Returns what was loaded (also written to ``<out>/init_from.json``).
        """
        from toolkit.weights import load_safetensors, load_strict

        from .model import LanguageCodec

        path = resolve_init_source(source)
        if path.is_dir():
            released = LanguageCodec.from_pretrained(path)
        else:
            released = LanguageCodec.from_official_checkpoint(path)
        check_architecture(released.config, self.config.codec, source)
        load_strict(self.codec, released.state_dict(), source=str(path))
        info: Dict[str, object] = {"source": str(path), "discriminators": False}
        weights, config = path / DISCRIMINATORS_WEIGHTS, path / DISCRIMINATORS_CONFIG
        if path.is_dir() and weights.is_file() and config.is_file():
            theirs = json.loads(config.read_text())
            if theirs == json.loads(json.dumps(dataclasses.asdict(self.config.discriminators))):
                load_strict(self.acc.unwrap_model(self.discs), load_safetensors(weights), source=str(weights))
                info["discriminators"] = True
            else:
                info["discriminators_skipped"] = "their config differs from this run's"
        if self.acc.is_main_process:
            (self.out / "init_from.json").write_text(json.dumps(info, indent=1) + "\n")
        self.acc.wait_for_everyone()
        return info

    # Validation -------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def validate(self) -> Dict[str, float]:
        """Mel distance (and PESQ / STOI when installed) at 8 and 4 codebooks on the first validation clips; before
        the codebooks are initialized (the continuous warm-up), of the unquantized reconstruction (``_unquantized``)."""
        from toolkit.metrics import mean_scores

        from .metrics import reconstruction_metrics

        results: Dict[str, float] = {}
        if self.acc.is_main_process:
            codec = self.codec
            codec.eval()
            clips = []
            for cut in itertools.islice(self.valid_cuts, self.config.validation_clips):
                cut = cut.resample(codec.sample_rate) if cut.sampling_rate != codec.sample_rate else cut
                clips.append(torch.from_numpy(cut.load_audio().mean(axis=0)[: 10 * codec.sample_rate]))
            # empty codebooks (the continuous warm-up; initialized at the first quantized step) have no codes to score
            empty = codec.quantizer.num_initialized == 0
            settings = ["unquantized"] if empty else sorted({codec.num_codebooks, min(4, codec.num_codebooks)})
            for k in settings:
                scores = []
                for wav in clips:
                    wav_in = wav[None].to(self.acc.device)
                    out = codec.autoencode(wav_in) if k == "unquantized" else codec.decode(codec.encode(wav_in, k))
                    scores.append(reconstruction_metrics(wav, out[0, 0, : wav.numel()].cpu(), codec.sample_rate))
                suffix = k if k == "unquantized" else f"{k}cb"
                for name, value in mean_scores(scores).items():
                    results[f"valid/{name}_{suffix}"] = value
            codec.train()
            self.log(results)
            self._log_audio(codec, clips[:1])
        self.acc.wait_for_everyone()
        return results

    def _log_audio(self, codec: LanguageCodec, clips: List[torch.Tensor]) -> None:
        # Only a run that logs to wandb: get_tracker hands back a placeholder when there is none.
        if not clips or not any(t.name == "wandb" for t in self.acc.trackers):
            return
        import wandb

        tracker = self.acc.get_tracker("wandb", unwrap=True)

        wav = clips[0]
        rec = codec.decode(codec.encode(wav[None].to(self.acc.device)))[0, 0].cpu()
        mel = MelSpectrogram(codec.sample_rate).to(self.acc.device)(rec[None].to(self.acc.device))[0].cpu().numpy()
        mel = (mel - mel.min()) / max(1e-6, float(mel.max() - mel.min()))
        tracker.log({"valid/audio": wandb.Audio(rec.numpy(), sample_rate=codec.sample_rate),
                     "valid/mel": wandb.Image(mel[::-1].copy())}, step=self.step)


CODEC_PRESETS = {"release": CodecConfig.release, "official": CodecConfig.official, "mini": CodecConfig.mini,
                 "tiny": CodecConfig.tiny}
DISCRIMINATOR_PRESETS = {"release": DiscriminatorConfig.release, "reduced": DiscriminatorConfig.reduced,
                         "tiny": DiscriminatorConfig.tiny}


def load_train_config(path: os.PathLike, overrides: Optional[List[str]] = None) -> TrainConfig:
    """A codec run config in the project's YAML layout (``toolkit.config``).

    Sections: ``codec`` (a ``CodecConfig``: ``preset`` and field overrides), ``discriminators`` (likewise),
    ``losses`` (``LossWeights`` fields) and ``train`` (``TrainConfig``'s own fields). ``overrides`` are ``a.b=value``
    strings (``train.max_steps=1000``, ``codec.quantizer.kind=rvq``). The earlier layout's ``codec_overrides`` and
    ``discriminator_overrides`` still load.
    """
    data, train = read_run_file(path, overrides, ("codec", "discriminators", "losses"), _LEGACY_KEYS)
    if {"codec", "discriminators", "losses"} & set(train):
        raise ValueError(f"{path}: codec, discriminators and losses are sections of their own, not train fields")
    return build(TrainConfig, {
        **train,
        "codec": build(CodecConfig, preset_section(data["codec"], CODEC_PRESETS, "codec", "release"), "codec"),
        "discriminators": discriminator_config(
            preset_section(data["discriminators"], DISCRIMINATOR_PRESETS, "discriminators", "release")),
        "losses": build(LossWeights, data["losses"], "losses"),
    }, "train")


_LEGACY_KEYS = {"codec_overrides": "codec", "discriminator_overrides": "discriminators"}


def discriminator_config(values: dict) -> DiscriminatorConfig:
    return build(DiscriminatorConfig, values, "discriminators")
