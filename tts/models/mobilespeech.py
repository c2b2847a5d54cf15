"""MobileSpeech (Ji et al., ACL 2024): a parallel zero-shot model over codec codes (docs/design.md, section 5).

Text encoder -> duration predictor (conditioned on the prompt) and length regulator -> the SMD (speech mask decoder):
a transformer over [length-regulated text states + summed embeddings of partly masked code layers + layer embedding],
cross-attending to a prompt encoder over every codebook of the acoustic prompt, with one output head per codec layer.
Durations come from the data where it has them (``TokenBatch.durations``: exact timings of synthetic espeak-ng speech,
``tts.data.espeak_timing``), and from the built-in aligner (``tts.models.aligner``, trained jointly) elsewhere.

Training draws a layer j per item (weights favouring low layers); layers < j are visible, layer j is masked with a
cosine schedule (layer 1 is fully masked with probability ``1 - alpha``, the paper's probabilistic mask), layers > j
are fully masked; the loss is cross-entropy on the masked positions of layer j, plus the duration and aligner losses.
Inference decodes layer 1 in ``steps`` confidence-based rounds (MaskGIT) and each later layer in ``later_steps``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from toolkit.config import build
from tts.data.dataset import TokenBatch
from tts.models.aligner import Aligner, AlignerConfig
from tts.models.base import IGNORE, GenerationRequest, StageOutput, TokenModel, lengths_mask, token_metrics
from tts.models.sampling import filter_logits
from tts.modules.transformer import Transformer, TransformerConfig, sinusoidal


MAX_FRAMES_PER_PHONEME = 40  # a guard against a runaway duration predictor (0.53 s per phoneme at 75 Hz)


@dataclass(frozen=True)
class MobileSpeechConfig:
    """Attributes:
        text, prompt, decoder: the three transformers (the decoder cross-attends and is conditioned on the layer).
        duration_kernel, duration_layers: the conv duration predictor.
        layer_decay: layer j is drawn with weight ``layer_decay ** (j - 1)`` (favouring low layers).
        alpha: probability that a drawn layer 1 is masked by the cosine schedule instead of fully.
        aligner_dim: width of the aligner's encoders.
        stored_durations: the length regulator and the duration predictor use the batch's stored durations where
            it has them, the aligner's elsewhere.
        neighbours, neighbour_weight: with ``neighbours`` k > 0, the SMD loss gives ``neighbour_weight`` of each
            target's probability to the k codewords nearest to the target's in the codec's latent space (itself
            included), evenly: tokens whose codewords are that close decode to speech as intelligible as the
            target's (docs/mobilespeech.md), so they are not errors to train away. Training only: the trainer hands
            the model the codec's codewords (``use_codebooks``); inference and releases do not need them. The
            ``smd`` loss (training and validation) is then this one; ``smd_first`` stays exact-token.
        text_dropout: the share of training items whose length-regulated text is replaced by zeros (the durations
            still set the length), so that the decoder also learns to predict without the text; a model trained with
            it decodes with classifier-free guidance (``SamplingConfig.guidance``). Training only.
    """

    # fields that change how the model trains, not its weights: a release may start a run that sets them otherwise
    training_only = ("layer_decay", "alpha", "duration_weight", "aligner_weight", "neighbours", "neighbour_weight",
                     "text_dropout")

    num_symbols: int
    num_codebooks: int = 8
    codebook_size: int = 1024
    text: TransformerConfig = field(
        default_factory=lambda: TransformerConfig(dim=512, heads=8, layers=6, ffn_dim=2048))
    prompt: TransformerConfig = field(
        default_factory=lambda: TransformerConfig(dim=512, heads=8, layers=4, ffn_dim=2048))
    decoder: TransformerConfig = field(
        default_factory=lambda: TransformerConfig(dim=512, heads=8, layers=12, ffn_dim=2048, num_conditions=8,
                                                  cross_attention=True))
    duration_kernel: int = 3
    duration_layers: int = 2
    layer_decay: float = 0.7
    alpha: float = 0.8
    aligner_dim: int = 256
    duration_weight: float = 1.0
    aligner_weight: float = 1.0
    stored_durations: bool = True
    neighbours: int = 0
    neighbour_weight: float = 0.5
    text_dropout: float = 0.0

    @classmethod
    def paper(cls, num_symbols: int, num_codebooks: int = 8, codebook_size: int = 1024) -> "MobileSpeechConfig":
        """Paper scale (the paper publishes no sizes; ~100M parameters, below its ~400M bound for phones)."""
        return cls(num_symbols=num_symbols, num_codebooks=num_codebooks, codebook_size=codebook_size)

    @classmethod
    def mini(cls, num_symbols: int, num_codebooks: int = 8, codebook_size: int = 1024) -> "MobileSpeechConfig":
        return cls(num_symbols=num_symbols, num_codebooks=num_codebooks, codebook_size=codebook_size,
                   text=TransformerConfig(dim=256, heads=4, layers=4, ffn_dim=1024),
                   prompt=TransformerConfig(dim=256, heads=4, layers=2, ffn_dim=1024),
                   decoder=TransformerConfig(dim=256, heads=4, layers=6, ffn_dim=1024, num_conditions=num_codebooks,
                                             cross_attention=True),
                   aligner_dim=128)

    @classmethod
    def tiny(cls, num_symbols: int, num_codebooks: int = 8, codebook_size: int = 64) -> "MobileSpeechConfig":
        return cls(num_symbols=num_symbols, num_codebooks=num_codebooks, codebook_size=codebook_size,
                   text=TransformerConfig(dim=64, heads=4, layers=2, ffn_dim=128, dropout=0.0),
                   prompt=TransformerConfig(dim=64, heads=4, layers=1, ffn_dim=128, dropout=0.0),
                   decoder=TransformerConfig(dim=64, heads=4, layers=2, ffn_dim=128, dropout=0.0,
                                             num_conditions=num_codebooks, cross_attention=True),
                   aligner_dim=64)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "MobileSpeechConfig":
        return build(cls, data)


def nearest_codewords(codewords: torch.Tensor, k: int) -> torch.Tensor:
    """``[..., C, k]``: for each of the C codewords ``[..., C, D]``, the token ids of its k nearest (Euclidean), nearest
    first and itself first of all, even beside a duplicate codeword."""
    distances = torch.cdist(codewords.float(), codewords.float())
    distances.diagonal(dim1=-2, dim2=-1).fill_(-1.0)
    return distances.topk(k, largest=False).indices


def padding_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """``[B, 1, 1, size]`` True where a key may be attended (inside the item's length)."""
    return lengths_mask(lengths, size)[:, None, None, :]


def length_regulate(states: torch.Tensor, durations: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Repeat each phoneme state ``[B, N, D]`` ``durations [B, N]`` times -> ``[B, num_frames, D]`` (zero past the
    item's total)."""
    ends = durations.cumsum(1)  # [B, N]
    frames = torch.arange(num_frames, device=states.device)[None, :].expand(states.shape[0], -1)
    index = torch.searchsorted(ends, frames.contiguous(), right=True).clamp(max=states.shape[1] - 1)
    out = states.gather(1, index[..., None].expand(-1, -1, states.shape[2]))
    return out * (frames < ends[:, -1:])[..., None]


class CodeEmbedding(nn.Module):
    """Sum over codebooks of per-codebook embeddings; each codebook has an extra MASK row (index ``codebook_size``)."""

    def __init__(self, num_codebooks: int, codebook_size: int, dim: int):
        super().__init__()
        self.size = codebook_size + 1
        self.table = nn.Embedding(num_codebooks * self.size, dim)
        self.register_buffer("offsets", torch.arange(num_codebooks) * self.size, persistent=False)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """codes ``[B, K, T]`` (mask = codebook_size, padding < 0 treated as mask) -> ``[B, T, D]``."""
        codes = torch.where(codes < 0, torch.full_like(codes, self.size - 1), codes)
        return self.table(codes + self.offsets[: codes.shape[1], None]).sum(1)


class DurationPredictor(nn.Module):
    """Convs over text states plus the mean prompt state -> log(1 + frames) per phoneme."""

    def __init__(self, dim: int, kernel: int, layers: int):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv1d(dim, dim, kernel, padding=kernel // 2) for _ in range(layers)])
        self.norms = nn.ModuleList([nn.LayerNorm(dim) for _ in range(layers)])
        self.out = nn.Linear(dim, 1)

    def forward(self, text: torch.Tensor, prompt_summary: torch.Tensor) -> torch.Tensor:
        x = text + prompt_summary[:, None]
        for conv, norm in zip(self.convs, self.norms):
            x = norm(F.relu(conv(x.transpose(1, 2))).transpose(1, 2))
        return self.out(x)[..., 0]


class MobileSpeech(TokenModel):
    """The text encoder, prompt encoder, duration predictor, aligner and speech mask decoder; one stage, ``smd``
    (they always train together). Generation needs no transcript of the prompt."""

    name = "mobilespeech"
    config_class = MobileSpeechConfig
    all_stages = ("smd",)
    supports_speed = True  # durations are predicted, so dividing them sets the speaking rate
    supports_steps = True  # layer 1 is decoded in confidence-based rounds
    validates_prompt_free = True  # inference sees nothing of the target: validation measures that too
    loss_only = frozenset({"duration", "aligner"})
    progress_keys = ("smd_loss", "smd_accuracy", "duration_loss")

    def __init__(self, config: MobileSpeechConfig):
        super().__init__()
        self.config = config
        self.stages = self.all_stages
        d = config.decoder.dim
        k = config.num_codebooks
        if config.text.dim != d or config.prompt.dim != d:
            raise ValueError("text, prompt and decoder widths must be equal")
        if config.decoder.num_conditions != k or not config.decoder.cross_attention:
            raise ValueError("the decoder needs one AdaLN condition per codec layer and cross-attention")
        self.mask_id = config.codebook_size
        self.text_embed = nn.Embedding(config.num_symbols, d)
        self.text_encoder = Transformer(config.text)
        self.prompt_embed = CodeEmbedding(k, config.codebook_size, d)
        self.prompt_encoder = Transformer(config.prompt)
        self.durations = DurationPredictor(d, config.duration_kernel, config.duration_layers)
        self.code_embed = CodeEmbedding(k, config.codebook_size, d)
        self.layer_embed = nn.Embedding(k, d)
        self.decoder = Transformer(config.decoder)
        self.heads = nn.ModuleList([nn.Linear(d, config.codebook_size) for _ in range(k)])
        self.aligner = Aligner(AlignerConfig(config.num_symbols, k, config.codebook_size, config.aligner_dim,
                                             min(80, config.aligner_dim)))
        n, w = config.neighbours, config.neighbour_weight
        if isinstance(n, bool) or not (isinstance(n, int) and 0 <= n <= config.codebook_size):
            raise ValueError(f"neighbours must be an integer in [0, {config.codebook_size}], got {n!r}")
        if isinstance(w, bool) or not (isinstance(w, (int, float)) and 0.0 <= w <= 1.0):
            raise ValueError(f"neighbour_weight must be a number in [0, 1], got {w!r}")
        p = config.text_dropout
        if isinstance(p, bool) or not (isinstance(p, (int, float)) and 0.0 <= p < 1.0):
            raise ValueError(f"text_dropout must be a number in [0, 1), got {p!r}")
        # [K, C, k] token ids of each token's nearest codewords, from the codec (use_codebooks); not a weight
        self.register_buffer("code_neighbours", None, persistent=False)

    @property
    def supports_guidance(self) -> bool:
        """Trained to predict without the text too (``text_dropout``), so it can be guided by it."""
        return self.config.text_dropout > 0

    @classmethod
    def build(cls, config: MobileSpeechConfig, stages: Optional[Sequence[str]] = None) -> "MobileSpeech":
        cls.check_stages(cls.all_stages if stages is None else stages)
        return cls(config)

    # Shared parts -------------------------------------------------------------------------------------------------

    def encode_text(self, phonemes: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        x = self.text_embed(phonemes) + sinusoidal(torch.arange(phonemes.shape[1], device=phonemes.device),
                                                   self.config.text.dim)
        return self.text_encoder(x, mask=padding_mask(lens, phonemes.shape[1]))

    def encode_prompt(self, codes: torch.Tensor, lens: torch.Tensor):
        """-> (states ``[B, Tp, D]``, mean state ``[B, D]``, key mask)."""
        x = self.prompt_embed(codes) + sinusoidal(torch.arange(codes.shape[2], device=codes.device),
                                                  self.config.prompt.dim)
        mask = padding_mask(lens, codes.shape[2])
        states = self.prompt_encoder(x, mask=mask)
        valid = mask[:, 0, 0, :, None].float()
        return states, (states * valid).sum(1) / valid.sum(1).clamp(min=1), mask

    def decode_logits(self, frames: torch.Tensor, codes: torch.Tensor, layer: torch.Tensor, lens: torch.Tensor,
                      memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, T, C]`` of codec layer ``layer [B]`` (0-based) given regulated text ``frames [B, T, D]`` and
        the partly masked ``codes [B, K, T]``."""
        t = codes.shape[2]
        x = frames + self.code_embed(codes) + self.layer_embed(layer)[:, None] + sinusoidal(
            torch.arange(t, device=codes.device), self.config.decoder.dim)
        h = self.decoder(x, mask=padding_mask(lens, t), condition=layer, memory=memory, memory_mask=memory_mask)
        weight = torch.stack([head.weight for head in self.heads])[layer]  # [B, C, D]
        bias = torch.stack([head.bias for head in self.heads])[layer]  # [B, C]
        return torch.einsum("btd,bcd->btc", h, weight) + bias[:, None]

    # Training -----------------------------------------------------------------------------------------------------

    def needs_codebooks(self) -> bool:
        return self.config.neighbours > 0

    @torch.no_grad()
    def use_codebooks(self, codebooks: torch.Tensor) -> None:
        """Keep, per layer and token, the ``neighbours`` nearest codewords' token ids (Euclidean, itself first)."""
        k, c = self.config.num_codebooks, self.config.codebook_size
        if codebooks.dim() != 3 or tuple(codebooks.shape[:2]) != (k, c):
            raise ValueError(f"the codec's codewords are {list(codebooks.shape)}; this model reads {k} codebooks of "
                             f"{c} tokens")
        if self.config.neighbours:
            self.code_neighbours = nearest_codewords(codebooks, self.config.neighbours).to(self.heads[0].weight.device)

    @classmethod
    def unused_parameters(cls, stages: Sequence[str]) -> bool:
        return True  # the aligner idles on batches whose items all have stored durations

    def batch_durations(self, batch: TokenBatch) -> Tuple[torch.Tensor, torch.Tensor, int]:
        """``(durations [B, N], aligner loss, frames it aligned)``: the stored durations where the batch has them
        (``stored_durations``), the jointly trained aligner's (MAS, detached) for the other items.

        The aligner runs on those other items only, and not at all when every item has stored durations: their
        aligner durations would be thrown away (its forward alone was 0.28 s of a 7.2 s mini step on 1 thread;
        docs/speed.md). So it learns from the cuts without durations; on a corpus labelled by the stand-alone aligner
        stage (recipes/aligner/label.py) it idles.
        """
        codes, lens = batch.codes, batch.code_lens
        device = codes.device
        if self.config.stored_durations and batch.durations is not None:
            durations = batch.durations.to(device).clone()
            todo = torch.nonzero(~batch.durations_known.to(device)).flatten()
        else:
            durations = torch.zeros_like(batch.phonemes)
            todo = torch.arange(len(lens), device=device)
        if todo.numel() == 0:
            return durations, torch.zeros((), device=device), 0
        num_phonemes, num_frames = batch.phoneme_lens[todo], lens[todo]
        n, t = int(num_phonemes.max()), int(num_frames.max())
        alignment = self.aligner(batch.phonemes[todo, :n], num_phonemes, codes[todo, :, :t], num_frames,
                                 binarization_weight=0.0)
        durations[todo] = F.pad(alignment.durations, (0, durations.shape[1] - n)).to(durations.dtype)
        return durations, alignment.loss, int(num_frames.sum())

    def _context(self, batch: TokenBatch):
        """``(durations, aligner loss, aligned frames, text states, prompt memory, its mean, its mask, regulated
        frames)`` of a batch: what every masked prediction on it shares."""
        durations, aligner_loss, aligned_frames = self.batch_durations(batch)
        text = self.encode_text(batch.phonemes, batch.phoneme_lens)
        memory, summary, memory_mask = self.encode_prompt(batch.prompt_codes, batch.prompt_lens)
        frames = length_regulate(text, durations, batch.codes.shape[2])
        return durations, aligner_loss, aligned_frames, text, memory, summary, memory_mask, frames

    def _prefix(self, batch: TokenBatch) -> torch.Tensor:
        """``[B, T]``: the frames a prefix prompt holds (nothing to predict there)."""
        return lengths_mask(batch.prompt_lens, batch.codes.shape[2]) & batch.prompt_is_prefix[:, None]

    def forward(self, batch: TokenBatch, generator: Optional[torch.Generator] = None) -> Dict[str, StageOutput]:
        """Losses on a batch: ``smd`` (masked tokens of the drawn layer), ``duration`` and ``aligner``."""
        cfg = self.config
        codes, lens = batch.codes, batch.code_lens
        b, k, t = codes.shape
        device = codes.device
        durations, aligner_loss, aligned_frames, text, memory, summary, memory_mask, frames = self._context(batch)
        predicted = self.durations(text, summary)
        valid_p = lengths_mask(batch.phoneme_lens, batch.phonemes.shape[1])
        duration_loss = F.mse_loss(predicted[valid_p], torch.log1p(durations[valid_p].float()))

        def rand(*shape):
            return torch.rand(*shape, generator=generator, device="cpu").to(device)

        weights = torch.tensor([cfg.layer_decay ** j for j in range(k)])
        layer = torch.multinomial(weights, b, replacement=True, generator=generator).to(device)  # 0-based
        ratio = torch.cos(0.5 * math.pi * rand(b))
        full = (layer == 0) & (rand(b) > cfg.alpha)
        ratio = torch.where(full, torch.ones_like(ratio), ratio)
        valid_t = lengths_mask(lens, t)
        masked = (rand(b, t) < ratio[:, None]) & valid_t
        if batch.prompt_is_prefix.any():  # the prompt holds those frames: nothing to predict there
            masked = masked & ~self._prefix(batch)
        # at least one masked frame per item (the first valid one past the prompt, if the draw masked none)
        none = ~masked.any(1)
        if none.any():
            first = torch.where(batch.prompt_is_prefix, batch.prompt_lens, torch.zeros_like(lens)).clamp(
                max=lens - 1)
            masked[none, first[none]] = True
        rows = torch.arange(k, device=device)[None, :, None]
        hide = (rows > layer[:, None, None]) | ((rows == layer[:, None, None]) & masked[:, None, :])
        inputs = torch.where(hide, torch.full_like(codes, self.mask_id), codes)
        if cfg.text_dropout and self.training:  # drawn after the masks: without it, the draws are those of before
            frames = frames * (rand(b) >= cfg.text_dropout).to(frames.dtype)[:, None, None]
        logits = self.decode_logits(frames, inputs, layer, lens, memory, memory_mask)
        target = codes.gather(1, layer[:, None, None].expand(-1, 1, t))[:, 0]
        target = torch.where(masked, target, torch.full_like(target, IGNORE))
        near = None
        if cfg.neighbours:
            if self.code_neighbours is None:
                raise ValueError("neighbours > 0 trains with the codec's codewords: call use_codebooks first")
            table = self.code_neighbours[layer]  # [B, C, k]
            near = table.gather(1, target.clamp(min=0)[..., None].expand(-1, -1, cfg.neighbours))  # [B, T, k]
        smd = token_metrics(logits, target, near, cfg.neighbour_weight)
        zero = torch.zeros((), device=device)
        return {
            "smd": smd,
            "duration": StageOutput(cfg.duration_weight * duration_loss, zero, zero, int(valid_p.sum())),
            "aligner": StageOutput(cfg.aligner_weight * aligner_loss, zero, zero, aligned_frames),
        }

    def validation_outputs(self, batch: TokenBatch, index: int) -> List[Dict[str, StageOutput]]:
        """The training losses (drawn the same way at every validation), and ``smd_first``: the first layer wholly
        masked, predicted in one pass. The first layer is what intelligibility waits for (``recipes/eval/oracle.py``,
        docs/mobilespeech.md), and ``smd_first`` does not depend on how a run draws layers and masks, so runs with
        other ``layer_decay`` or ``alpha`` compare on it."""
        first = token_metrics(*self.first_layer_logits(batch))
        return super().validation_outputs(batch, index) + [{"smd_first": first}]

    def prompt_free_outputs(self, batch: TokenBatch) -> Dict[str, StageOutput]:
        """``smd_free``: ``smd_first`` with the prompt another utterance of the speaker, so that nothing of the target
        is visible: the first round of inference, which reads no prompt transcript. Training with prefix prompts
        never scores an utterance's opening frames; this does. Items prompted by a prefix are not scored."""
        logits, targets = self.first_layer_logits(batch)
        targets = torch.where(batch.prompt_is_prefix[:, None], torch.full_like(targets, IGNORE), targets)
        return {"smd_free": token_metrics(logits, targets)} if (targets != IGNORE).any() else {}

    def first_layer_logits(self, batch: TokenBatch, without_text: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(logits [B, T, C], targets [B, T])`` of the first layer wholly masked, in one pass: the condition of
        training's probabilistic mask (a prefix prompt's frames visible and not scored: ``IGNORE`` there and past
        each item's end). ``without_text``: the prediction with the text zeroed, as ``text_dropout`` trains it."""
        _, _, _, _, memory, _, memory_mask, frames = self._context(batch)
        if without_text:
            frames = torch.zeros_like(frames)
        codes, lens = batch.codes, batch.code_lens
        prefix = self._prefix(batch)
        scored = lengths_mask(lens, codes.shape[2]) & ~prefix
        inputs = torch.full_like(codes, self.mask_id)
        inputs[:, 0] = torch.where(prefix, codes[:, 0], inputs[:, 0])
        logits = self.decode_logits(frames, inputs, torch.zeros_like(lens), lens, memory, memory_mask)
        return logits, torch.where(scored, codes[:, 0], torch.full_like(codes[:, 0], IGNORE))

    # Inference ----------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def predict_durations(self, phonemes: torch.Tensor, lens: torch.Tensor, prompt: torch.Tensor,
                          speed: float = 1.0) -> torch.Tensor:
        """Frames per phoneme ``[B, N]`` (1 to ``MAX_FRAMES_PER_PHONEME`` on real phonemes), divided by ``speed``."""
        text = self.encode_text(phonemes, lens)
        _, summary, _ = self.encode_prompt(prompt, torch.full((prompt.shape[0],), prompt.shape[2],
                                                              device=prompt.device))
        frames = torch.expm1(self.durations(text, summary)).clamp(min=0) / speed
        valid = lengths_mask(lens, phonemes.shape[1])
        frames = frames.round().long().clamp(min=1, max=MAX_FRAMES_PER_PHONEME)
        return torch.where(valid, frames, torch.zeros_like(frames))

    @torch.no_grad()
    def decode(self, phonemes: torch.Tensor, lens: torch.Tensor, prompt: torch.Tensor, steps: int = 16,
                 later_steps: int = 1, temperature: float = 1.0, speed: float = 1.0,
                 durations: Optional[torch.Tensor] = None, generator: Optional[torch.Generator] = None,
                 top_k: int = 0, top_p: float = 1.0, given: Optional[torch.Tensor] = None,
                 guidance: float = 0.0) -> List[torch.Tensor]:
        """Codes ``[K, T_i]`` per text.

        Args:
            phonemes: ``[B, N]`` ids of the target texts (no prompt transcript needed); lens ``[B]``.
            prompt: ``[K, Tp]`` codes of the voice prompt, shared by the batch.
            steps: confidence-based rounds for layer 1; later_steps: rounds for each later layer.
            temperature: sampling temperature of layer 1's rounds (0: greedy); later layers are greedy.
            top_k, top_p: layer 1 samples from each frame's top-k tokens and top-p nucleus (0 and 1.0: all tokens).
            durations: ``[B, N]`` to use instead of the predictor's.
            given: ``[B, J, >=T]`` codes of the first J layers to keep instead of decoding them (teacher forcing, for
                diagnostics: ``recipes/eval/oracle.py``); needs ``durations``, T being their sum.
            guidance: classifier-free guidance of layer 1 by the text (a model trained with ``text_dropout``): its
                logits are ``c + guidance * (c - u)``, c with the text and u with zeros in its place. Layer 1 only:
                it is where intelligibility is lost (docs/mobilespeech.md), and the later layers follow it.
        """
        if given is not None and durations is None:
            raise ValueError("given codes need the durations they were spoken with")
        if guidance and not self.supports_guidance:
            raise ValueError("this MobileSpeech model was trained without text_dropout: it has no prediction "
                             "without the text to guide by")
        b = phonemes.shape[0]
        k = self.config.num_codebooks
        device = phonemes.device
        prompts = prompt[None].expand(b, -1, -1)
        memory, summary, memory_mask = self.encode_prompt(prompts, torch.full((b,), prompt.shape[1], device=device))
        if durations is None:
            durations = self.predict_durations(phonemes, lens, prompts[:, :, :], speed)
        text = self.encode_text(phonemes, lens)
        totals = durations.sum(1)
        t = int(totals.max())
        frames = length_regulate(text, durations, t)
        valid = lengths_mask(totals, t)
        codes = torch.full((b, k, t), self.mask_id, dtype=torch.long, device=device)
        first = 0
        if given is not None:
            if given.dim() != 3 or given.shape[0] != b or given.shape[1] > k or given.shape[2] < t:
                raise ValueError(f"given codes must be [{b}, <={k}, >={t}], not {list(given.shape)}")
            first = given.shape[1]
            codes[:, :first] = torch.where(valid[:, None], given[:, :, :t].to(device), codes[:, :first])
        for j in range(first, k):
            rounds = steps if j == 0 else later_steps
            layer = torch.full((b,), j, dtype=torch.long, device=device)
            unknown = valid.clone()
            for r in range(rounds):
                if j == 0 and guidance:  # one batch of both predictions: with the text and without
                    both = self.decode_logits(torch.cat([frames, torch.zeros_like(frames)]), codes.repeat(2, 1, 1),
                                              layer.repeat(2), totals.repeat(2), memory.repeat(2, 1, 1),
                                              memory_mask.repeat(2, 1, 1, 1)).float()
                    cond, uncond = both.chunk(2)
                    logits = cond + guidance * (cond - uncond)
                else:
                    logits = self.decode_logits(frames, codes, layer, totals, memory, memory_mask).float()
                if j == 0 and temperature > 0:
                    probs = filter_logits(logits / temperature, top_k, top_p).softmax(-1)
                    pick = torch.multinomial(probs.view(-1, probs.shape[-1]).cpu(), 1, generator=generator)
                    pick = pick.view(b, t).to(device)
                else:
                    probs = logits.softmax(-1)
                    pick = logits.argmax(-1)
                confidence = probs.gather(-1, pick[..., None])[..., 0]
                confidence = torch.where(unknown, confidence, torch.full_like(confidence, -1.0))
                # after round r, cos(pi/2 (r+1)/rounds) of each item's frames stay masked
                keep_masked = torch.floor(totals.float() * math.cos(0.5 * math.pi * (r + 1) / rounds)).long()
                reveal = unknown.sum(1) - keep_masked  # how many to reveal now
                order = confidence.argsort(dim=1, descending=True)
                rank = torch.empty_like(order)
                rank.scatter_(1, order, torch.arange(t, device=device)[None, :].expand(b, -1))
                chosen = (rank < reveal[:, None]) & unknown
                codes[:, j] = torch.where(chosen, pick, codes[:, j])
                unknown = unknown & ~chosen
        return [codes[i, :, : int(totals[i])] for i in range(b)]

    def generate(self, request: GenerationRequest) -> List[torch.Tensor]:
        """Codes ``[K, T_i]`` per text (``request.phonemes``: the texts alone): ``request.steps`` rounds for layer 1
        at the sampling temperature within its top-k and top-p (argmax when greedy), durations divided by
        ``request.speed``, guided by the text with ``request.sampling.guidance``."""
        padded, lens = request.padded()
        temperature = 0.0 if request.sampling.greedy else request.sampling.temperature
        return self.decode(padded, lens, request.prompt, request.steps, temperature=temperature, speed=request.speed,
                           generator=request.generator, top_k=request.sampling.top_k, top_p=request.sampling.top_p,
                           guidance=request.sampling.guidance)
