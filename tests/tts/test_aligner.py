"""The aligner: MAS equals an exhaustive search, durations sum to frame counts, the prior, and a forward-sum loss
that falls while a tiny aligner learns a few mini-corpus utterances."""

from __future__ import annotations

from itertools import combinations

import pytest
import torch
from lhotse import CutSet

from tts.models.aligner import (Aligner, AlignerConfig, beta_binomial_prior, durations_from_path, forward_sum_loss,
                                monotonic_alignment_search)


def brute_force(values: torch.Tensor) -> torch.Tensor:
    """The best monotonic path of one ``[T, N]`` matrix, by enumerating the frames where the phoneme advances."""
    frames, phonemes = values.shape
    best, best_path = float("-inf"), None
    for moves in combinations(range(1, frames), phonemes - 1):
        index, score, path = 0, 0.0, torch.zeros(frames, phonemes)
        for t in range(frames):
            if index < phonemes - 1 and t == moves[index]:
                index += 1
            score += float(values[t, index])
            path[t, index] = 1
        if score > best:
            best, best_path = score, path
    return best_path


def test_mas_equals_brute_force_on_random_matrices():
    gen = torch.Generator().manual_seed(0)
    sizes = [(1, 1), (3, 1), (4, 4), (6, 3), (8, 5), (9, 2), (10, 6)]
    values = torch.randn(len(sizes), 10, 6, generator=gen)
    frames = torch.tensor([t for t, _ in sizes])
    phonemes = torch.tensor([n for _, n in sizes])
    path = monotonic_alignment_search(values, phonemes, frames)  # one batch, padded
    for b, (t, n) in enumerate(sizes):
        assert torch.equal(path[b, :t, :n], brute_force(values[b, :t, :n])), (t, n)
        assert path[b, t:].sum() == 0 and path[b, :, n:].sum() == 0
    durations = durations_from_path(path)
    assert torch.equal(durations.sum(1), frames) and bool((durations[torch.arange(6)[None] < phonemes[:, None]] > 0)
                                                          .all())
    with pytest.raises(ValueError, match="at least one frame per phoneme"):
        monotonic_alignment_search(values[:1, :2, :3], torch.tensor([3]), torch.tensor([2]))


def test_prior_is_a_distribution_peaking_on_the_diagonal():
    prior = beta_binomial_prior(torch.tensor([5, 3]), torch.tensor([20, 12])).exp()
    assert torch.allclose(prior[0, :20, :5].sum(-1), torch.ones(20), atol=1e-5)
    assert torch.allclose(prior[1, :12, :3].sum(-1), torch.ones(12), atol=1e-5)
    peaks = prior[0, :20, :5].argmax(-1)
    assert peaks[0] == 0 and peaks[-1] == 4 and bool((peaks[1:] >= peaks[:-1]).all())


def test_forward_sum_loss_prefers_the_diagonal():
    frames, phonemes = torch.tensor([12]), torch.tensor([4])
    diagonal = torch.full((1, 12, 4), -10.0)
    for t in range(12):
        diagonal[0, t, t * 4 // 12] = 0.0
    reversed_ = diagonal.flip(-1)
    assert forward_sum_loss(diagonal, phonemes, frames) < forward_sum_loss(reversed_, phonemes, frames) - 1


def test_aligner_learns_mini_corpus_utterances(built):
    from tests.support import corpus_data as data

    cuts, symbols, _ = data(built)
    few = CutSet.from_cuts(list(cuts.sort_by_duration(ascending=True))[:4])
    from tts.data.dataset import TokenDataset

    batch = TokenDataset(symbols)[few]
    codes = batch.codes
    torch.manual_seed(0)
    aligner = Aligner(AlignerConfig(len(symbols), num_codebooks=codes.shape[1], codebook_size=64, dim=64,
                                    attention_dim=32))
    opt = torch.optim.Adam(aligner.parameters(), lr=2e-3)
    losses = []
    for _ in range(150):
        out = aligner(batch.phonemes, batch.phoneme_lens, codes, batch.code_lens)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert sum(losses[-10:]) / 10 < 0.7 * sum(losses[:10]) / 10, (losses[:3], losses[-3:])
    durations = aligner.durations(batch.phonemes, batch.phoneme_lens, codes, batch.code_lens)
    assert torch.equal(durations.sum(1), batch.code_lens)
