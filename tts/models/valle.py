"""VALL-E (Wang et al. 2023): an autoregressive model for the first codebook and a non-autoregressive one for the rest.

- AR: a decoder over ``[phonemes ; <bos> c1_1 .. c1_T]``: phonemes attend to phonemes, audio positions to all
  phonemes and causally to audio; predicts ``c1_1 .. c1_T <eos>``. Generation uses a key/value cache.
- NAR: for stage j (codebook 2..K, drawn uniformly in training) a bidirectional model over
  ``[phonemes ; audio]`` where each audio frame is the sum of the embeddings of codebooks < j (all K codebooks on
  acoustic-prompt frames), conditioned on j through adaptive LayerNorm; predicts codebook j outside the prompt.
Text and audio have separate sinusoidal positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from tts.modules.transformer import Transformer, TransformerConfig, sinusoidal

IGNORE = -100


@dataclass(frozen=True)
class ValleConfig:
    num_symbols: int
    num_codebooks: int = 8
    codebook_size: int = 1024
    transformer: TransformerConfig = field(default_factory=TransformerConfig)

    @classmethod
    def paper(cls, num_symbols: int, num_codebooks: int = 8, codebook_size: int = 1024) -> "ValleConfig":
        """12 layers, 16 heads, d = 1024, FFN 4096, dropout 0.1 (the paper's, per stage)."""
        return cls(num_symbols, num_codebooks, codebook_size, TransformerConfig())

    @classmethod
    def mini(cls, num_symbols: int, num_codebooks: int = 8, codebook_size: int = 1024) -> "ValleConfig":
        return cls(num_symbols, num_codebooks, codebook_size, TransformerConfig(256, 4, 6, 1024, 0.1))

    @classmethod
    def tiny(cls, num_symbols: int, num_codebooks: int = 8, codebook_size: int = 64) -> "ValleConfig":
        return cls(num_symbols, num_codebooks, codebook_size, TransformerConfig(64, 4, 2, 128, 0.0))


@dataclass
class StageOutput:
    """Loss and metrics of one model on one batch (token-level cross-entropy, top-1 and top-10 accuracy)."""

    loss: torch.Tensor
    accuracy: torch.Tensor
    top10: torch.Tensor
    tokens: int


def _metrics(logits: torch.Tensor, targets: torch.Tensor) -> StageOutput:
    valid = targets != IGNORE
    loss = F.cross_entropy(logits[valid], targets[valid])
    with torch.no_grad():
        top = logits[valid].topk(min(10, logits.shape[-1]), dim=-1).indices
        t = targets[valid][:, None]
        acc, top10 = (top[:, :1] == t).float().mean(), (top == t).any(-1).float().mean()
    return StageOutput(loss, acc, top10, int(valid.sum()))


def _lengths_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    return torch.arange(size, device=lengths.device)[None] < lengths[:, None]


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

    def _join(self, text: torch.Tensor, text_lens: torch.Tensor, audio: torch.Tensor, audio_lens: torch.Tensor,
              causal_audio: bool):
        """Embedded ``[B, Tt + Ta, D]`` input (text then audio, each left-aligned) and its attention mask."""
        b, tt = text.shape
        ta = audio.shape[1]
        d = self.config.transformer.dim
        x_text = self.text_embedding(text) * self.scale + sinusoidal(torch.arange(tt, device=text.device), d)
        x_audio = audio * self.scale + sinusoidal(torch.arange(ta, device=text.device), d)
        x = torch.cat([x_text, x_audio], dim=1)
        keys = torch.cat([_lengths_mask(text_lens, tt), _lengths_mask(audio_lens, ta)], dim=1)  # [B, S]
        mask = keys[:, None, None, :].expand(b, 1, tt + ta, tt + ta).clone()
        if causal_audio:
            mask[:, :, :tt, tt:] = False  # phonemes do not see audio
            future = torch.ones(ta, ta, dtype=torch.bool, device=text.device).triu(1)
            mask[:, :, tt:, tt:] &= ~future
        # Padded query rows attend to themselves only, so no row is all-masked (NaN in attention).
        mask |= torch.eye(tt + ta, dtype=torch.bool, device=text.device)
        return x, mask


class ValleAR(_Base):
    """Autoregressive stage: codebook 1 with an end token. Audio vocabulary: codes, ``eos``, ``bos``."""

    def __init__(self, config: ValleConfig):
        super().__init__(config, num_conditions=0)
        self.eos, self.bos = config.codebook_size, config.codebook_size + 1
        self.audio_embedding = nn.Embedding(config.codebook_size + 2, config.transformer.dim)
        self.head = nn.Linear(config.transformer.dim, config.codebook_size + 1)

    def forward(self, phonemes, phoneme_lens, codes, code_lens) -> StageOutput:
        """codes ``[B, K, T]`` (padding anything); trains on the whole first codebook, as the paper's AR."""
        c1 = codes[:, 0].clamp(min=0)
        b, t = c1.shape
        inputs = torch.cat([torch.full((b, 1), self.bos, device=c1.device), c1], dim=1)
        targets = torch.cat([c1, torch.full((b, 1), IGNORE, device=c1.device)], dim=1)
        targets[torch.arange(b), code_lens] = self.eos
        targets[~_lengths_mask(code_lens + 1, t + 1)] = IGNORE
        x, mask = self._join(phonemes, phoneme_lens, self.audio_embedding(inputs), code_lens + 1, causal_audio=True)
        h = self.transformer(x, mask=mask)[:, phonemes.shape[1]:]
        return _metrics(self.head(h), targets)

    @torch.no_grad()
    def logits_stream(self, phonemes: torch.Tensor, prompt: torch.Tensor, use_cache: bool = True):
        """A generator: send the next token, get the logits ``[vocab]`` for the one after. Batch 1.

        phonemes ``[1, P]`` (prompt transcript + target text); prompt ``[1, Tp]`` first-codebook codes.
        """
        tt = phonemes.shape[1]
        tokens = torch.cat([torch.tensor([[self.bos]], device=prompt.device), prompt], dim=1)
        one = torch.ones(1, dtype=torch.long, device=prompt.device)
        if not use_cache:
            while True:
                x, mask = self._join(phonemes, one * tt, self.audio_embedding(tokens), one * tokens.shape[1], True)
                nxt = yield self.head(self.transformer(x, mask=mask)[0, -1])
                tokens = torch.cat([tokens, nxt.view(1, 1)], dim=1)
        cache = self.transformer.new_cache()
        x, mask = self._join(phonemes, one * tt, self.audio_embedding(tokens), one * tokens.shape[1], True)
        h = self.transformer(x, mask=mask, cache=cache)
        d = self.config.transformer.dim
        while True:
            nxt = yield self.head(h[0, -1])
            pos = tokens.shape[1]
            tokens = torch.cat([tokens, nxt.view(1, 1)], dim=1)
            step = self.audio_embedding(nxt.view(1, 1)) * self.scale + sinusoidal(
                torch.tensor([pos], device=prompt.device), d)
            h = self.transformer(step, cache=cache)  # the new position sees every cached one


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
        in_prompt = _lengths_mask(prompt_lens, t)[..., None]
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
        targets[~_lengths_mask(code_lens, t) | _lengths_mask(prompt_lens, t)] = IGNORE
        return _metrics(self.heads[stage - 1](h), targets)

    @torch.no_grad()
    def generate(self, phonemes: torch.Tensor, prompt: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        """Greedy codebooks 2..K. phonemes ``[1, P]``; prompt ``[1, K, Tp]``; first ``[1, Tg]`` generated codebook 1.
        Returns ``[1, K, Tg]``."""
        k = self.config.num_codebooks
        tp, tg = prompt.shape[-1], first.shape[-1]
        codes = torch.zeros(1, k, tp + tg, dtype=torch.long, device=first.device)
        codes[:, :, :tp] = prompt
        codes[:, 0, tp:] = first
        one = torch.ones(1, dtype=torch.long, device=first.device)
        for stage in range(1, k):
            x, mask = self._join(phonemes, one * phonemes.shape[1], self._audio(codes, stage, one * tp),
                                 one * (tp + tg), False)
            h = self.transformer(x, mask=mask, condition=one * 0 + stage - 1)[:, phonemes.shape[1]:]
            codes[:, stage, tp:] = self.heads[stage - 1](h[:, tp:]).argmax(-1)
        return codes[:, :, tp:]
