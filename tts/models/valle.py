"""VALL-E (Wang et al. 2023): an autoregressive model for the first codebook and a non-autoregressive one for the rest.

- AR: a decoder over ``[phonemes ; <bos> c1_1 .. c1_T]``: phonemes attend to phonemes, audio positions to all
  phonemes and causally to audio; predicts ``c1_1 .. c1_T <eos>``. Generation uses a key/value cache.
- NAR: for stage j (codebook 2..K, drawn uniformly in training) a bidirectional model over
  ``[phonemes ; audio]`` where each audio frame is the sum of the embeddings of codebooks < j (all K codebooks on
  acoustic-prompt frames), conditioned on j through adaptive LayerNorm; predicts codebook j outside the prompt.
Text and audio have separate sinusoidal positions.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from toolkit.config import build
from tts.models.base import IGNORE, GenerationRequest, StageOutput, TokenModel, lengths_mask, token_metrics
from tts.models.sampling import SamplingConfig, length_limits, next_token
from tts.models.valle_alignment import alignment_loss, draw_move, duration_pointers
from tts.modules.transformer import Transformer, TransformerConfig, sinusoidal

CODE_PAD = -1
STAGES = ("ar", "nar")


@dataclass(frozen=True)
class ValleConfig:
    """Attributes:
        align_layer: the AR layer one of whose heads (``align_head``) is taught where the text is, from stored
            phoneme durations: at each audio position, its attention over the phonemes should fall on the phoneme
            being spoken (or within ``align_window`` tokens of it, for durations known only roughly). None (every
            release before it): no guided head. At inference the head's running position constrains decoding
            (``SamplingConfig.constrain_alignment``).
        align_weight: the weight of that loss (``-log`` of the head's attention mass on the window).
        duration_input: the AR reads, at each audio position, where in the text the frame it predicts is: a pointer
            to a phoneme token (in training from the stored durations; the acoustic prompt and items without
            durations read "unknown"), and predicts how many tokens the pointer moves for the next frame
            (``advance``, 0 to ``ValleAR.MAX_ADVANCE``). At inference the pointer starts at the text and follows
            the model's own predictions; the end token comes when it passes the text's last token. False (every
            release before it): plain VALL-E. Not together with ``align_layer``.
        advance_weight: the weight of the advance loss.
    """

    num_symbols: int
    num_codebooks: int = 8
    codebook_size: int = 1024
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    align_layer: Optional[int] = None
    align_head: int = 0
    align_weight: float = 1.0
    align_window: int = 0
    duration_input: bool = False
    advance_weight: float = 1.0

    def __post_init__(self):
        if self.align_layer is not None and not (_index(self.align_layer)
                                                 and 0 <= self.align_layer < self.transformer.layers):
            raise ValueError(f"align_layer must be a layer index below {self.transformer.layers} or null, "
                             f"got {self.align_layer!r}")
        if not (_index(self.align_head) and 0 <= self.align_head < self.transformer.heads):
            raise ValueError(f"align_head must be a head index below {self.transformer.heads}, got {self.align_head!r}")
        if not (isinstance(self.align_weight, (int, float)) and self.align_weight >= 0):
            raise ValueError(f"align_weight must be >= 0, got {self.align_weight!r}")
        if not (_index(self.align_window) and self.align_window >= 0):
            raise ValueError(f"align_window must be an integer >= 0, got {self.align_window!r}")
        if not isinstance(self.duration_input, bool):
            raise ValueError(f"duration_input must be true or false, got {self.duration_input!r}")
        if self.duration_input and self.align_layer is not None:
            raise ValueError("duration_input and align_layer are two ways to align; choose one")
        if not (isinstance(self.advance_weight, (int, float)) and self.advance_weight >= 0):
            raise ValueError(f"advance_weight must be >= 0, got {self.advance_weight!r}")

    @classmethod
    def paper(cls, num_symbols: int, num_codebooks: int = 8, codebook_size: int = 1024) -> "ValleConfig":
        """12 layers, 16 heads, d = 1024, FFN 4096, dropout 0.1 (the paper's, per stage)."""
        return cls(num_symbols=num_symbols, num_codebooks=num_codebooks, codebook_size=codebook_size,
                   transformer=TransformerConfig())

    @classmethod
    def mini(cls, num_symbols: int, num_codebooks: int = 8, codebook_size: int = 1024) -> "ValleConfig":
        return cls(num_symbols=num_symbols, num_codebooks=num_codebooks, codebook_size=codebook_size,
                   transformer=TransformerConfig(dim=256, heads=4, layers=6, ffn_dim=1024, dropout=0.1))

    @classmethod
    def tiny(cls, num_symbols: int, num_codebooks: int = 8, codebook_size: int = 64) -> "ValleConfig":
        return cls(num_symbols=num_symbols, num_codebooks=num_codebooks, codebook_size=codebook_size,
                   transformer=TransformerConfig(dim=64, heads=4, layers=2, ffn_dim=128, dropout=0.0))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ValleConfig":
        return build(cls, data)


def _index(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Base(nn.Module):
    """What both stages share: phoneme embeddings with positions, and the joint [text ; audio] layout."""

    def __init__(self, config: ValleConfig, num_conditions: int):
        super().__init__()
        self.config = config
        d = config.transformer.dim
        self.text_embedding = nn.Embedding(config.num_symbols, d)
        self.transformer = Transformer(TransformerConfig(**{**config.transformer.__dict__,
                                                            "num_conditions": num_conditions}))
        self.scale = d ** 0.5

    def _text_inputs(self, text: torch.Tensor) -> torch.Tensor:
        """``[B, Tt, D]``: the phoneme tokens' embeddings with their positions."""
        d = self.config.transformer.dim
        return self.text_embedding(text) * self.scale + sinusoidal(torch.arange(text.shape[1], device=text.device), d)

    def _join(self, text: torch.Tensor, text_lens: torch.Tensor, audio: torch.Tensor, audio_lens: torch.Tensor,
              causal_audio: bool, audio_extra: Optional[torch.Tensor] = None,
              text_inputs: Optional[torch.Tensor] = None):
        """Embedded ``[B, Tt + Ta, D]`` input (text then audio, each left-aligned) and its attention mask;
        ``audio_extra`` ``[B, Ta, D]`` is added to the audio positions as it is; ``text_inputs`` are
        ``_text_inputs(text)`` when the caller has them already."""
        b, tt = text.shape
        ta = audio.shape[1]
        d = self.config.transformer.dim
        x_text = self._text_inputs(text) if text_inputs is None else text_inputs
        x_audio = audio * self.scale + sinusoidal(torch.arange(ta, device=text.device), d)
        if audio_extra is not None:
            x_audio = x_audio + audio_extra
        x = torch.cat([x_text, x_audio], dim=1)
        keys = torch.cat([lengths_mask(text_lens, tt), lengths_mask(audio_lens, ta)], dim=1)  # [B, S]
        mask = keys[:, None, None, :].expand(b, 1, tt + ta, tt + ta).clone()
        if causal_audio:
            mask[:, :, :tt, tt:] = False  # phonemes do not see audio
            future = torch.ones(ta, ta, dtype=torch.bool, device=text.device).triu(1)
            mask[:, :, tt:, tt:] &= ~future
        # Padded query rows attend to themselves only, so no row is all-masked (NaN in attention).
        mask |= torch.eye(tt + ta, dtype=torch.bool, device=text.device)
        return x, mask


class ValleAR(_Base):
    """Autoregressive stage: codebook 1 with an end token. Audio vocabulary: codes, ``eos``, ``bos``.

    With ``config.align_layer``, one head of that layer is the guided alignment head: trained on stored durations
    (``losses``), and at inference its running position over the phonemes constrains decoding (``generate``).
    """

    LOOKAHEAD = 4  # phoneme tokens the guided head may move ahead per frame at inference (stress marks and word
    # boundaries take no frames, so a spoken phoneme can be 3 tokens after the last)
    EOS_MARGIN = 2  # the end token is allowed once the head is on one of the last 2 tokens (the final punctuation's)
    MAX_ADVANCE = 7  # with duration_input: the most tokens the pointer moves per frame (larger moves are learnt as 7)
    MAX_STAY = 75  # ... and at inference it moves on after this many frames (1 s at 75 Hz) on one token

    def __init__(self, config: ValleConfig):
        super().__init__(config, num_conditions=0)
        self.eos, self.bos = config.codebook_size, config.codebook_size + 1
        self.audio_embedding = nn.Embedding(config.codebook_size + 2, config.transformer.dim)
        self.head = nn.Linear(config.transformer.dim, config.codebook_size + 1)
        if config.duration_input:
            d = config.transformer.dim
            self.pointer_proj = nn.Linear(d, d)
            self.pointer_special = nn.Embedding(2, d)  # rows: unknown (no pointer), past the text's end
            self.advance_head = nn.Linear(d, self.MAX_ADVANCE + 1)

    def forward(self, phonemes, phoneme_lens, codes, code_lens) -> StageOutput:
        """codes ``[B, K, T]`` (padding anything); trains on the whole first codebook, as the paper's AR."""
        return self.losses(phonemes, phoneme_lens, codes, code_lens)["ar"]

    def losses(self, phonemes, phoneme_lens, codes, code_lens, durations: Optional[torch.Tensor] = None,
               known: Optional[torch.Tensor] = None, split: Optional[torch.Tensor] = None,
               ) -> Dict[str, StageOutput]:
        """``ar``, and with a guided head ``align``: its loss on the items whose ``durations`` ``[B, P]`` (frames per
        phoneme) are ``known`` ``[B]``, with the share of their frames on which the head's strongest phoneme is the
        one spoken (accuracy) or within one token of it (top10). With ``duration_input``, ``advance`` on the known
        items' frames from ``split`` ``[B]`` on (the frames before it are an acoustic prompt: no pointer)."""
        c1 = codes[:, 0].clamp(min=0)
        b, t = c1.shape
        inputs = torch.cat([torch.full((b, 1), self.bos, device=c1.device), c1], dim=1)
        targets = torch.cat([c1, torch.full((b, 1), IGNORE, device=c1.device)], dim=1)
        targets[torch.arange(b), code_lens] = self.eos
        targets[~lengths_mask(code_lens + 1, t + 1)] = IGNORE
        extra = advance = None
        text = self._text_inputs(phonemes)
        if self.config.duration_input:
            split = torch.zeros_like(code_lens) if split is None else split
            pointers, advance = self.pointers(durations, known, code_lens, phoneme_lens, split, t)
            extra = self._pointer_inputs(text, phoneme_lens, pointers)
        x, mask = self._join(phonemes, phoneme_lens, self.audio_embedding(inputs), code_lens + 1, causal_audio=True,
                             audio_extra=extra, text_inputs=text)
        tt = phonemes.shape[1]
        layer = self.config.align_layer
        if layer is None:
            h = self.transformer(x, mask=mask)[:, tt:]
            out = {"ar": token_metrics(self.head(h), targets)}
            if advance is not None:
                out["advance"] = self._advance(h, advance)
            return out
        h, weights = self.transformer(x, mask=mask, probe=layer)
        return {"ar": token_metrics(self.head(h[:, tt:]), targets),
                "align": alignment_loss(weights[:, self.config.align_head, tt:tt + t, :tt], code_lens, durations,
                                        known, self.config.align_window, self.config.align_weight)}

    def pointers(self, durations: Optional[torch.Tensor], known: Optional[torch.Tensor], code_lens: torch.Tensor,
                 phoneme_lens: torch.Tensor, split: torch.Tensor, t: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """``valle_alignment.duration_pointers`` with this model's ``MAX_ADVANCE``."""
        return duration_pointers(durations, known, code_lens, phoneme_lens, split, t, self.MAX_ADVANCE)

    def _pointer_inputs(self, text: torch.Tensor, phoneme_lens: torch.Tensor, pointers: torch.Tensor,
                        ) -> torch.Tensor:
        """``[B, T, D]``: what the audio positions read of the text (``_text_inputs``, ``[B, P, D]``) at ``pointers``
        ``[B, T]``: the phoneme token's input (its embedding with its position) projected, or the learnt "unknown"
        row (-1) or "past the end" row (pointer at the phoneme count or beyond)."""
        tt, d = text.shape[1], self.config.transformer.dim
        read = self.pointer_proj(text.gather(1, pointers.clamp(0, tt - 1)[..., None].expand(-1, -1, d)))
        special = self.pointer_special.weight * self.scale
        read = torch.where((pointers < 0)[..., None], special[0], read)
        return torch.where((pointers >= phoneme_lens[:, None])[..., None], special[1], read)

    def _advance(self, h: torch.Tensor, targets: torch.Tensor) -> StageOutput:
        if not bool((targets != IGNORE).any()):
            zero = h.new_zeros((), dtype=torch.float32)
            return StageOutput(zero, zero, zero, 0)
        out = token_metrics(self.advance_head(h), targets)
        out.loss = out.loss * self.config.advance_weight
        return out

    @torch.no_grad()
    def generate(self, phonemes: torch.Tensor, phoneme_lens: torch.Tensor, prompt: torch.Tensor,
                 limits: Sequence[Tuple[int, int]], sampling: SamplingConfig,
                 generator: Optional[torch.Generator] = None, use_cache: bool = True,
                 text_starts: Optional[torch.Tensor] = None, speed: float = 1.0) -> List[torch.Tensor]:
        """Codebook-1 codes for a batch of texts spoken with one acoustic prompt: the model's one decoding path.

        Args:
            phonemes: ``[B, P]`` prompt transcript + target text per item (padded); phoneme_lens ``[B]``.
            prompt: ``[Tp]`` first-codebook codes of the acoustic prompt (shared by the batch, so the audio positions
                line up and only padded phonemes need masking).
            limits: (min, max) frames per item (``length_limits``).
            use_cache: with the key/value cache (each step runs the new position only); without it every step
                recomputes the whole sequence, the reference the cache is tested and benchmarked against.
            text_starts: ``[B]`` index of each item's first text token after the prompt's transcript (needed with
                ``duration_input``; 0 when None).
        Returns:
            ``[T_i]`` generated codes per item (without the prompt and the end token).

        With a guided head and ``sampling.constrain_alignment``: the head's position starts where it looks at the
        prompt's last frame; at each new frame the head sees only the phonemes from one before that position to
        ``LOOKAHEAD`` after it, its position moves to its strongest phoneme there (never back), and the end token is
        allowed only once it is on one of the last ``EOS_MARGIN`` phonemes of the text.

        With ``duration_input``: the pointer starts on the text's first token at the first new frame and moves by
        the advance the model predicts at each frame (``valle_alignment.draw_move``; ``speed`` scales its chance of
        moving). The end token is masked until the pointer passes the text's end, and chosen then; the length limits'
        minimum does not apply.
        """
        b, tt = phonemes.shape
        dev = phonemes.device
        guided = self.config.align_layer is not None and sampling.constrain_alignment
        probe = self.config.align_layer if guided else None
        head = self.config.align_head
        tokens = torch.cat([torch.full((b, 1), self.bos, device=dev), prompt.to(dev).expand(b, -1)], dim=1)
        prefill = tokens.shape[1]
        cache = self.transformer.new_cache() if use_cache else None
        paced = self.config.duration_input
        pointer = pointers = None
        if paced:
            pointer = (torch.zeros(b, dtype=torch.long, device=dev) if text_starts is None
                       else text_starts.to(dev).long())
            pointers = torch.full((b, prefill), -1, dtype=torch.long, device=dev)
            pointers[:, -1] = pointer
            stay = torch.zeros(b, dtype=torch.long, device=dev)
        text_inputs = self._text_inputs(phonemes)
        x, mask = self._join(phonemes, phoneme_lens, self.audio_embedding(tokens),
                             torch.full((b,), prefill, device=dev), causal_audio=True,
                             audio_extra=self._pointer_inputs(text_inputs, phoneme_lens, pointers) if paced else None,
                             text_inputs=text_inputs)
        h, weights = self._run(x, mask, cache, probe, None)
        logits = self.head(h[:, -1]).float()
        advance = self.advance_head(h[:, -1]).float() if paced else None
        keys = torch.cat([lengths_mask(phoneme_lens, tt), torch.ones(b, prefill, dtype=torch.bool, device=dev)],
                         dim=1)
        text = torch.arange(tt, device=dev)
        real = lengths_mask(phoneme_lens, tt)
        position = windows = None
        if guided:
            position = weights[:, head, -1, :tt].masked_fill(~real, -1.0).argmax(-1)
            windows = []
        out: List[List[int]] = [[] for _ in range(b)]
        done = [False] * b
        pos, d = prefill, self.config.transformer.dim
        while True:
            if guided:  # the end token waits for the head to reach the end of the text
                logits = logits.masked_fill(((position < phoneme_lens - self.EOS_MARGIN)[:, None]
                                             & (torch.arange(logits.shape[1], device=dev) == self.eos)), float("-inf"))
            if paced:  # the end token when, and only when, the pointer has passed the text
                ended = pointer >= phoneme_lens
                logits[:, self.eos] = float("-inf")
            step = []
            for i in range(b):
                token = self.eos
                if paced and not done[i] and bool(ended[i]):
                    done[i] = True
                elif not done[i]:
                    token = next_token(logits[i], self.eos, out[i], 0 if paced else limits[i][0], sampling,
                                       generator)
                    if token != self.eos:
                        out[i].append(token)
                    done[i] = token == self.eos or len(out[i]) >= limits[i][1]
                step.append(token)
            if all(done):
                break
            step = torch.tensor(step, device=dev)[:, None]
            if paced:
                pointer, stay = draw_move(pointer, stay, advance, phoneme_lens, self.MAX_STAY, generator, speed)
                pointers = torch.cat([pointers, pointer[:, None]], dim=1)
            if guided:
                windows.append(real & (text >= (position - 1)[:, None])
                               & (text <= (position + self.LOOKAHEAD)[:, None]))
            if use_cache:
                x = self.audio_embedding(step) * self.scale + sinusoidal(torch.tensor([pos], device=dev), d)
                if paced:
                    x = x + self._pointer_inputs(text_inputs, phoneme_lens, pointer[:, None])
                keys = torch.cat([keys, torch.ones(b, 1, dtype=torch.bool, device=dev)], dim=1)
                step_mask = keys[:, None, None, :]  # sees every cached position
                probe_mask = None
                if guided:
                    probe_mask = step_mask.expand(b, self.config.transformer.heads, 1, -1).clone()
                    probe_mask[:, head, 0, :tt] = windows[-1]
                h, weights = self._run(x, step_mask, cache, probe, probe_mask)
            else:
                tokens = torch.cat([tokens, step], dim=1)
                x, mask = self._join(phonemes, phoneme_lens, self.audio_embedding(tokens),
                                     torch.full((b,), tokens.shape[1], device=dev), causal_audio=True,
                                     audio_extra=self._pointer_inputs(text_inputs, phoneme_lens, pointers)
                                     if paced else None, text_inputs=text_inputs)
                probe_mask = None
                if guided:  # every generated position's window, as the cached path saw them
                    probe_mask = mask.expand(b, self.config.transformer.heads, -1, -1).clone()
                    for j, window in enumerate(windows):
                        probe_mask[:, head, tt + prefill + j, :tt] = window
                h, weights = self._run(x, mask, None, probe, probe_mask)
            logits = self.head(h[:, -1]).float()
            if paced:
                advance = self.advance_head(h[:, -1]).float()
            if guided:
                strongest = weights[:, head, -1, :tt].masked_fill(~windows[-1], -1.0).argmax(-1)
                position = torch.maximum(position, strongest)
            pos += 1
        return [torch.tensor(o, dtype=torch.long, device=dev) for o in out]

    def _run(self, x, mask, cache, probe, probe_mask):
        """The transformer's output, and the guided layer's attention when ``probe`` names it (else None)."""
        if probe is None:
            return self.transformer(x, mask=mask, cache=cache), None
        return self.transformer(x, mask=mask, cache=cache, probe=probe, probe_mask=probe_mask)


class ValleNAR(_Base):
    """Non-autoregressive stage: codebooks 2..K, one head per codebook, stage j as the AdaLN condition."""

    def __init__(self, config: ValleConfig):
        super().__init__(config, num_conditions=config.num_codebooks - 1)
        d = config.transformer.dim
        self.audio_embeddings = nn.ModuleList([nn.Embedding(config.codebook_size, d)
                                               for _ in range(config.num_codebooks)])
        self.heads = nn.ModuleList([nn.Linear(d, config.codebook_size) for _ in range(config.num_codebooks - 1)])

    def _audio(self, codes: torch.Tensor, stage: int, prompt_lens: torch.Tensor) -> torch.Tensor:
        """Sum of the embeddings of codebooks < stage, and of all codebooks on the first prompt_lens frames."""
        codes = codes.clamp(min=0)
        t = codes.shape[-1]
        below = sum(self.audio_embeddings[k](codes[:, k]) for k in range(stage))
        rest = sum(self.audio_embeddings[k](codes[:, k]) for k in range(stage, codes.shape[1])) \
            if stage < codes.shape[1] else 0
        in_prompt = lengths_mask(prompt_lens, t)[..., None]
        return below + torch.where(in_prompt, rest, torch.zeros_like(below)) if torch.is_tensor(rest) else below

    def forward(self, phonemes, phoneme_lens, codes, code_lens, prompt_lens, stage: Optional[int] = None,
                ) -> StageOutput:
        """codes ``[B, K, T]`` whose first ``prompt_lens`` frames are the acoustic prompt (excluded from the loss).
        stage: 0-based codebook index to predict (1..K-1); drawn uniformly when None."""
        if stage is None:
            stage = int(torch.randint(1, self.config.num_codebooks, (1,)))
        x, mask = self._join(phonemes, phoneme_lens, self._audio(codes, stage, prompt_lens), code_lens, False)
        condition = torch.full((codes.shape[0],), stage - 1, device=codes.device)
        h = self.transformer(x, mask=mask, condition=condition)[:, phonemes.shape[1]:]
        targets = codes[:, stage].clone()
        t = codes.shape[-1]
        targets[~lengths_mask(code_lens, t) | lengths_mask(prompt_lens, t)] = IGNORE
        return token_metrics(self.heads[stage - 1](h), targets)

    @torch.no_grad()
    def generate(self, phonemes: torch.Tensor, phoneme_lens: torch.Tensor, prompt: torch.Tensor,
                 first: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        """Greedy codebooks 2..K for a batch.

        Args:
            phonemes: ``[B, P]`` prompt transcript + target text (padded); phoneme_lens ``[B]``.
            prompt: ``[K, Tp]`` acoustic prompt codes shared by the batch.
            first: generated codebook-1 codes ``[T_i]`` per item.
        Returns:
            ``[K, T_i]`` per item.
        """
        k, tp = self.config.num_codebooks, prompt.shape[-1]
        b, dev = len(first), phonemes.device
        gen_lens = torch.tensor([f.numel() for f in first], device=dev)
        codes = torch.full((b, k, tp + int(gen_lens.max())), CODE_PAD, dtype=torch.long, device=dev)
        codes[:, :, :tp] = prompt.to(dev)
        for i, f in enumerate(first):
            codes[i, 0, tp:tp + f.numel()] = f
        prompt_lens = torch.full((b,), tp, device=dev)
        for stage in range(1, k):
            x, mask = self._join(phonemes, phoneme_lens, self._audio(codes, stage, prompt_lens), tp + gen_lens, False)
            h = self.transformer(x, mask=mask, condition=torch.full((b,), stage - 1, device=dev))
            predicted = self.heads[stage - 1](h[:, phonemes.shape[1] + tp:]).argmax(-1)
            codes[:, stage, tp:] = torch.where(lengths_mask(gen_lens, predicted.shape[1]), predicted, CODE_PAD)
        return [codes[i, :, tp:tp + int(gen_lens[i])] for i in range(b)]


class Valle(TokenModel):
    """The stages being trained or used together: ``ar`` and/or ``nar``; their losses on a batch, and generation.

    Training a stage alone (``stages=("ar",)``) leaves the other out of the module, so no parameter goes unused.
    """

    name = "valle"
    config_class = ValleConfig
    all_stages = STAGES
    separable_stages = True
    needs_prompt_text = True
    joint_sequence = True  # each stage attends over the phonemes followed by the frames
    progress_keys = ("ar_loss", "ar_accuracy", "nar_loss", "nar_accuracy", "align_accuracy", "advance_accuracy")

    supports_speed = property(lambda self: self.config.duration_input)  # with durations as input the pointer paces

    def __init__(self, config: ValleConfig, stages: Sequence[str] = STAGES):
        super().__init__()
        self.config = config
        self.stages = self.check_stages(stages)
        self.ar = ValleAR(config) if "ar" in stages else None
        self.nar = ValleNAR(config) if "nar" in stages else None

    @classmethod
    def build(cls, config: ValleConfig, stages: Optional[Sequence[str]] = None) -> "Valle":
        return cls(config, STAGES if stages is None else stages)

    @classmethod
    def unused_parameters(cls, stages: Sequence[str]) -> bool:
        return "nar" in stages  # the NAR trains one head per step: the others get no gradient

    def forward(self, batch, generator: Optional[torch.Generator] = None,
                nar_stage: Optional[int] = None) -> Dict[str, StageOutput]:
        """Per stage, the loss and metrics on a ``TokenBatch`` whose prompts are prefixes of the targets (the NAR
        loss leaves the prompt frames out). nar_stage: the codebook the NAR predicts (drawn from ``generator`` when
        None)."""
        out = {}
        if self.ar is not None:
            out.update(self._ar(batch))
        if self.nar is not None:
            if nar_stage is None:
                nar_stage = int(torch.randint(1, self.config.num_codebooks, (1,), generator=generator))
            out["nar"] = self._nar(batch, nar_stage)
        return out

    def _ar(self, batch) -> Dict[str, StageOutput]:
        split = torch.where(batch.prompt_is_prefix, batch.prompt_lens, torch.zeros_like(batch.prompt_lens))
        return self.ar.losses(batch.phonemes, batch.phoneme_lens, batch.codes, batch.code_lens,
                              batch.durations, batch.durations_known, split)

    def _nar(self, batch, stage: int) -> StageOutput:
        prompt_lens = torch.where(batch.prompt_is_prefix, batch.prompt_lens, torch.zeros_like(batch.prompt_lens))
        return self.nar(batch.phonemes, batch.phoneme_lens, batch.codes, batch.code_lens, prompt_lens, stage=stage)

    def validation_outputs(self, batch, index: int) -> List[Dict[str, StageOutput]]:
        """The AR once, the NAR on every codebook."""
        out = [self._ar(batch)] if self.ar else []
        if self.nar is not None:
            out += [{"nar": self._nar(batch, stage)} for stage in range(1, self.config.num_codebooks)]
        return out

    @torch.no_grad()
    def generate(self, request: GenerationRequest) -> List[torch.Tensor]:
        """Codes ``[K, T_i]`` per text: the AR's first codebook (``length_limits`` of each text's phoneme count),
        then the NAR's greedy codebooks 2..K. ``request.phonemes`` hold the prompt's transcript before each text.
        ``request.speed`` sets the pace with durations as input (``supports_speed``); without them it is ignored."""
        if self.ar is None or self.nar is None:
            raise ValueError("synthesis needs both stages; this model holds " + ", ".join(self.stages))
        padded, lens = request.padded()
        limits = [length_limits(n, request.frame_rate) for n in request.target_phonemes]
        starts = lens - torch.tensor(list(request.target_phonemes), device=lens.device)
        first = self.ar.generate(padded, lens, request.prompt[0], limits, request.sampling, request.generator,
                                 text_starts=starts, speed=request.speed)
        return self.nar.generate(padded, lens, request.prompt, first)
