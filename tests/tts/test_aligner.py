"""The aligner: MAS equals an exhaustive search, durations sum to frame counts, the prior, and a forward-sum loss
that falls while a tiny aligner learns a few mini-corpus utterances."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import pytest
import torch
from lhotse import CutSet

from tts.models.aligner import (Aligner, AlignerConfig, beta_binomial_prior, boundary_error, durations_from_path,
                                forward_sum_loss, frame_targets, monotonic_alignment_search,
                                supervised_alignment_loss, uniform_durations)


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


def test_frame_targets_supervised_loss_and_boundary_error():
    durations = torch.tensor([[2, 0, 3], [1, 2, 0]])
    assert frame_targets(durations, 6).tolist() == [[0, 0, 2, 2, 2, -1], [0, 1, 1, -1, -1, -1]]
    # a soft alignment that puts each frame on its phoneme has a near-zero supervised loss; a shifted one does not
    target = frame_targets(durations, 5)
    sharp = torch.full((2, 5, 3), -30.0).scatter(2, target.clamp(min=0)[..., None], 0.0).log_softmax(-1)
    shifted = sharp.roll(1, dims=2)
    assert supervised_alignment_loss(sharp, durations) < 1e-6 < 10 < supervised_alignment_loss(shifted, durations)
    phones = torch.tensor([[True, False, True], [True, True, False]])
    assert float(boundary_error(durations, durations, phones)) == 0.0
    later = torch.tensor([[3, 0, 2], [1, 2, 0]])  # the first phone ends a frame late: 1 of 4 phone ends is off by 1
    assert float(boundary_error(later, durations, phones)) == pytest.approx(0.25)


def test_uniform_durations_spread_the_frames_over_the_phones():
    phones = torch.tensor([False, True, True, False, True])
    durations = uniform_durations(phones, 10)
    assert durations.tolist() == [0, 3, 4, 0, 3]  # the phone ends at 10/3, 20/3, 10, rounded
    assert uniform_durations(phones, 2).tolist() == [0, 1, 0, 0, 1] and int(uniform_durations(phones, 2).sum()) == 2
    assert uniform_durations(torch.zeros(3, dtype=torch.bool), 5).tolist() == [0, 0, 0]
    exact = torch.tensor([0, 1, 1, 0, 8])
    assert float(boundary_error(durations[None], exact[None], phones[None])) == pytest.approx((2 + 5 + 0) / 3)


@pytest.mark.slow
def test_aligner_stage_learns_exact_durations_and_labels_the_rest(built, tmp_path):
    """The aligner trained on its own with the token-model loop, supervised by the smoke corpus's exact espeak-ng
    durations: its accuracy on them rises and its boundary error falls; frozen, it labels the cuts without durations
    (``recipes/aligner/label.py``) with durations that sum to their frames."""
    import json
    import subprocess
    import sys

    from tests.support import corpus_data as data
    from tts.data.dataset import cut_codes
    from tts.training import TokenTrainer, load_token_train_config

    cuts, symbols, codec = data(built)
    root = Path(__file__).resolve().parents[2]
    config = load_token_train_config(root / "recipes" / "aligner" / "configs" / "tiny.yaml", len(symbols), 8, 64,
                                     ["train.max_steps=150", "train.checkpoint_every=1000",
                                      "train.validate_every=1000"])
    trainer = TokenTrainer(config, cuts, symbols, tmp_path / "run", codec=str(codec))
    before = trainer.validate(cuts)
    trainer.train()
    after = trainer.validate(cuts)
    # The fixture's codec is untrained (its codes say little about the sound): measured 0.04 -> 0.15 and 8.1 -> 6.7.
    assert after["valid/align_accuracy"] > 2 * before["valid/align_accuracy"], (before, after)
    assert after["valid/align_loss"] < 0.9 * before["valid/align_loss"], (before, after)
    release = trainer.export()
    manifest = tmp_path / "cuts.jsonl.gz"
    cuts.to_file(manifest)
    proc = subprocess.run([sys.executable, str(root / "recipes" / "aligner" / "label.py"), "--release", str(release),
                           "--cuts", str(manifest), "--out", str(tmp_path / "labelled.jsonl.gz")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["kept_exact"] > 0 and report["phones_compared"] > 0
    # a real distance in frames, shorter than an utterance (the fixture's codes are too poor for a tighter bound)
    mean_frames = sum(cut_codes(c).shape[0] for c in cuts) / len(cuts)
    assert 0 < report["boundary_error_frames"] < mean_frames, report
    assert 0 < report["boundary_error_uniform_frames"] < mean_frames, report
    out = CutSet.from_file(tmp_path / "labelled.jsonl.gz")
    assert len(out) == len(cuts) and report["labelled"] + report["kept_exact"] == len(cuts)
    for cut in out:
        sup = cut.supervisions[0]
        frames = [int(f) for f in sup.custom["durations"].split(" ")]
        assert len(frames) == len(sup.custom["phonemes"].split(" ")) and sum(frames) == cut_codes(cut).shape[0]


def test_label_copies_durations_from_another_codecs_manifest(built, tmp_path):
    """``label.py --durations-from``: cuts without durations get those of the same cut id in a labelled manifest when
    they fit (one per token, summing to the cut's frames); the rest stay without and are counted."""
    import json
    import subprocess
    import sys

    from tests.support import corpus_data as data
    from tts.data.dataset import cut_codes, stored_durations

    cuts, _, _ = data(built)
    timed = [c for c in cuts if c.supervisions[0].custom.get("durations")][:6]
    assert len(timed) == 6
    CutSet.from_cuts(timed[1:]).to_file(tmp_path / "source.jsonl.gz")  # the first is missing there
    for cut in timed[1:5]:
        del cut.supervisions[0].custom["durations"]
    sup = timed[2].supervisions[0]
    sup.custom["phonemes"] += " " + sup.custom["phonemes"].split(" ")[-1]  # another token count: does not fit
    target = tmp_path / "target.jsonl.gz"
    CutSet.from_cuts(timed[:5]).to_file(target)
    del timed[0].supervisions[0].custom["durations"]
    CutSet.from_cuts(timed[:1]).to_file(tmp_path / "missing.jsonl.gz")
    out = tmp_path / "out.jsonl.gz"
    script = Path(__file__).resolve().parents[2] / "recipes" / "aligner" / "label.py"

    def label(*args):
        return subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True,
                              timeout=120)

    proc = label("--durations-from", tmp_path / "source.jsonl.gz", "--cuts", target, "--out", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout) == {"copied": 3, "kept_own": 1, "missing": 0, "misfit": 1}
    labelled = {c.id: c for c in CutSet.from_file(out)}
    assert list(labelled) == [c.id for c in timed[:5]]
    source = {c.id: c for c in CutSet.from_file(tmp_path / "source.jsonl.gz")}
    for cut in timed[1:5]:
        mine = labelled[cut.id].supervisions[0].custom
        if cut is timed[2]:
            assert "durations" not in mine
        else:
            assert mine["durations"] == source[cut.id].supervisions[0].custom["durations"]
            assert stored_durations(labelled[cut.id], len(mine["phonemes"].split(" ")),
                                    cut_codes(labelled[cut.id]).shape[0]) is not None
    proc = label("--durations-from", tmp_path / "source.jsonl.gz", "--cuts", tmp_path / "missing.jsonl.gz", "--out",
                 out)
    assert proc.returncode == 0 and json.loads(proc.stdout)["missing"] == 1
    proc = label("--durations-from", tmp_path / "nowhere.jsonl.gz", "--cuts", target, "--out", tmp_path / "no.jsonl.gz")
    assert proc.returncode == 1 and "no cuts at" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "no.jsonl.gz").exists()
