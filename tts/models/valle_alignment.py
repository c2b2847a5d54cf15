"""VALL-E's two ways of learning text-to-audio alignment from stored durations (``durations`` ``[B, P]``, frames per
phoneme token, for the items whose durations are ``known`` ``[B]``):

- the guided head (``align_layer``): one attention head taught to look at the phoneme being spoken
  (``alignment_loss``);
- durations as input (``duration_input``): each audio position reads a pointer into the text and predicts how far it
  moves (``duration_pointers`` in training, ``draw_move`` at inference).

Functions of tensors only; ``tts.models.valle.ValleAR`` owns the layers and calls them.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from tts.models.base import IGNORE, StageOutput, lengths_mask


def spoken_phonemes(durations: torch.Tensor, t: int) -> torch.Tensor:
    """``[B, t]``: the index of the phoneme token spoken at each frame (the phoneme count past the last one)."""
    b = durations.shape[0]
    frames = torch.arange(t, device=durations.device).expand(b, t).contiguous()
    return torch.searchsorted(durations.cumsum(1), frames, right=True)


def alignment_loss(attention: torch.Tensor, code_lens: torch.Tensor, durations: Optional[torch.Tensor],
                   known: Optional[torch.Tensor], window: int, weight: float) -> StageOutput:
    """The guided head's loss: minus the log of its attention mass within ``window`` tokens of the phoneme spoken.

    attention ``[B, T, P]``: the head at the audio positions that predict frames ``0..T-1`` (position ``i`` reads
    frame ``i - 1`` and predicts frame ``i``, so it is taught the phoneme of frame ``i``). Accuracy: the share of
    frames on which the head's strongest phoneme is the one spoken; top10: within one token of it.
    """
    zero = attention.new_zeros((), dtype=torch.float32)
    if durations is None or known is None or not bool(known.any()):
        return StageOutput(zero, zero, zero, 0)
    b, t, p = attention.shape
    spoken = spoken_phonemes(durations[:, :p], t)
    valid = lengths_mask(code_lens, t) & known[:, None]
    near = (torch.arange(p, device=attention.device) - spoken[..., None]).abs() <= window
    mass = (attention.float() * near).sum(-1)
    loss = -mass[valid].clamp_min(1e-6).log().mean() * weight
    with torch.no_grad():
        strongest = attention.argmax(-1)
        accuracy = (strongest == spoken)[valid].float().mean()
        within = ((strongest - spoken).abs() <= 1)[valid].float().mean()
    return StageOutput(loss, accuracy, within, int(valid.sum()))


def duration_pointers(durations: Optional[torch.Tensor], known: Optional[torch.Tensor], code_lens: torch.Tensor,
                      phoneme_lens: torch.Tensor, split: torch.Tensor, t: int, max_advance: int,
                      ) -> Tuple[torch.Tensor, torch.Tensor]:
    """The pointer each of the ``t + 1`` audio positions reads, and its advance target, both ``[B, t + 1]``.

    Position ``i`` predicts frame ``i`` (position ``code_len`` the end token) and reads the phoneme token of that
    frame: -1 (unknown) before ``split`` and for items without durations; at ``split`` the token after the last one
    spoken before it, as at inference, where the pointer starts on the text's first token (a stress mark or another
    token of no frames, possibly), or the token still being spoken when the split is inside one; then the spoken
    token; at ``code_len`` the phoneme count (past the end). Its advance target is how far the pointer moves at the
    next position (at most ``max_advance``), ``IGNORE`` where there is no pointer or no next frame.
    """
    b, dev = code_lens.shape[0], code_lens.device
    pointers = torch.full((b, t + 1), -1, dtype=torch.long, device=dev)
    targets = torch.full((b, t + 1), IGNORE, dtype=torch.long, device=dev)
    if durations is None or known is None or not bool(known.any()):
        return pointers, targets
    rows = torch.arange(b, device=dev)
    spoken = spoken_phonemes(durations, t).clamp(max=durations.shape[1] - 1)
    split = split.clamp(min=0, max=None).minimum(code_lens - 1)
    after = spoken[rows, (split - 1).clamp(min=0)] + 1
    first = torch.where(split > 0, torch.minimum(after, spoken[rows, split]), torch.zeros_like(split))
    pointers[:, :t] = spoken
    pointers[rows, split] = first
    pointers[rows, code_lens] = phoneme_lens
    positions = torch.arange(t + 1, device=dev)
    inside = known[:, None] & (positions >= split[:, None])
    pointers = torch.where(inside & (positions <= code_lens[:, None]), pointers, -1)
    moves = (pointers[:, 1:] - pointers[:, :-1]).clamp(0, max_advance)
    targets[:, :t] = torch.where(inside[:, :t] & (positions[:t] < code_lens[:, None]), moves, IGNORE)
    return pointers, targets


def draw_move(pointer: torch.Tensor, stay: torch.Tensor, advance: torch.Tensor, phoneme_lens: torch.Tensor,
              max_stay: int, generator: Optional[torch.Generator],
              speed: float = 1.0) -> Tuple[torch.Tensor, torch.Tensor]:
    """The pointers ``[B]`` at the next frame: moved by a draw from the advance logits ``[B, max_advance + 1]``, by
    at least one token after ``max_stay`` frames on one, never past the phoneme count; and each item's frames on its
    token (``stay``).

    Drawn with ``generator`` even when the codes are greedy: a greedy pointer, one that moved once the probabilities
    of moving summed since its last move reached 1, made speech 2.3 times too long (see docs/valle.md).

    ``speed``: the probability of moving at all is multiplied by it (at most 1), the moves keeping their proportions,
    so a pointer that would stay a geometric number of frames on a token stays ``1 / speed`` times as long.
    """
    probs = advance.softmax(-1)
    if speed != 1.0:
        moving = 1.0 - probs[:, :1]
        scaled = (moving * speed).clamp(max=1.0)
        probs = torch.cat([1.0 - scaled, probs[:, 1:] * (scaled / moving.clamp(min=1e-12))], dim=1)
    moves = torch.multinomial(probs, 1, generator=generator)[:, 0]
    moves = torch.where((moves == 0) & (stay + 1 >= max_stay), torch.ones_like(moves), moves)
    stay = torch.where(moves == 0, stay + 1, torch.zeros_like(stay))
    return torch.minimum(pointer + moves, phoneme_lens), stay
