"""VALL-E with durations as input (``ValleConfig.duration_input``): the pointer each audio position reads, the advance
loss, and decoding that follows the model's own pointer to the end of the text."""

from __future__ import annotations

import pytest
import torch

from tts.models.base import IGNORE
from tts.models.sampling import SamplingConfig
from tts.models.valle import Valle, ValleAR, ValleConfig

from .test_valle_alignment import durations_batch

X = IGNORE


def paced(**kw) -> ValleConfig:
    tiny = ValleConfig.tiny(num_symbols=20)
    return ValleConfig(**{**tiny.__dict__, "duration_input": True, **kw})


def test_pointers_and_advance_targets_from_durations():
    """Durations [2, 0, 3, 1] over 6 frames: frames speak tokens 0 0 2 2 2 3; position 6 (the end token) reads the
    phoneme count. A split (acoustic prompt) hides the frames before it and starts where inference would."""
    model = ValleAR(paced())
    durations, known = torch.tensor([[2, 0, 3, 1]]), torch.tensor([True])
    lens, plens = torch.tensor([6]), torch.tensor([4])

    def run(split):
        pointers, targets = model.pointers(durations, known, lens, plens, torch.tensor([split]), 6)
        return pointers[0].tolist(), targets[0].tolist()

    assert run(0) == ([0, 0, 2, 2, 2, 3, 4], [0, 2, 0, 0, 1, 1, X])
    # after a prompt ending with token 0, the pointer starts on the next token (1, of no frames, like a stress mark
    # at the start of a text) and moves on from there
    assert run(2) == ([-1, -1, 1, 2, 2, 3, 4], [X, X, 1, 0, 1, 1, X])
    # a split inside token 2 stays on it
    assert run(3) == ([-1, -1, -1, 2, 2, 3, 4], [X, X, X, 0, 1, 1, X])
    # moves beyond MAX_ADVANCE are learnt as MAX_ADVANCE; unknown durations give no pointer and no targets
    many = torch.tensor([[1] + [0] * 9 + [1]])
    pointers, targets = model.pointers(many, known, torch.tensor([2]), torch.tensor([11]), torch.tensor([0]), 2)
    assert pointers[0].tolist() == [0, 10, 11] and targets[0].tolist() == [7, 1, X]
    pointers, targets = model.pointers(durations, torch.tensor([False]), lens, plens, torch.tensor([0]), 6)
    assert (pointers == -1).all() and (targets == X).all()


def test_the_model_learns_codes_and_advances_from_durations():
    """A tiny model overfits both outputs; the pointer changes what the AR predicts (it is an input), and the known
    item's frames are the advance tokens."""
    torch.manual_seed(0)
    model = ValleAR(paced())
    phonemes, plens, codes, clens, durations, known = durations_batch()
    first = model.losses(phonemes, plens, codes, clens, durations, known)
    assert set(first) == {"ar", "advance"} and first["advance"].tokens == 20
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(100):
        out = model.losses(phonemes, plens, codes, clens, durations, known)
        opt.zero_grad()
        (out["ar"].loss + out["advance"].loss).backward()
        opt.step()
    model.eval()
    after = model.losses(phonemes, plens, codes, clens, durations, known)
    assert after["ar"].loss < 0.3 * first["ar"].loss and after["advance"].loss < 0.3 * first["advance"].loss
    assert after["advance"].accuracy == 1.0
    shifted = torch.tensor([[0, 0, 4, 2, 0, 5, 3, 6], [0] * 8])  # the same frames, spoken as other tokens
    other = model.losses(phonemes, plens, codes, clens, shifted, known)["ar"]
    assert other.loss > after["ar"].loss + 0.05
    none = model.losses(phonemes, plens, codes, clens)
    assert none["advance"].tokens == 0 and none["advance"].loss == 0


def test_valle_splits_at_the_prefix_prompt_and_configs_load():
    from tts.data.dataset import TokenBatch

    phonemes, plens, codes, clens, durations, known = durations_batch()
    batch = TokenBatch(phonemes, plens, codes, clens, codes[:, :, :5], torch.tensor([5, 5]),
                       torch.tensor([True, False]), ["a", "b"], ["s", "s"], durations, known)
    model = Valle(paced()).eval()
    out = model(batch, generator=torch.Generator().manual_seed(0))
    assert set(out) == {"ar", "advance", "nar"} and out["advance"].tokens == 15  # frames 5..19 of the first item
    tiny = ValleConfig.tiny(num_symbols=20).to_dict()
    for key in ("duration_input", "advance_weight"):
        tiny.pop(key)  # a release written before them
    assert ValleConfig.from_dict(tiny).duration_input is False
    for bad, match in (({"duration_input": 1}, "duration_input"), ({"advance_weight": -1}, "advance_weight"),
                       ({"duration_input": True, "align_layer": 0}, "choose one")):
        with pytest.raises(ValueError, match=match):
            ValleConfig.from_dict({**tiny, **bad})


def set_advance(model: ValleAR, move: int) -> None:
    """An advance head that always moves the pointer ``move`` tokens."""
    with torch.no_grad():
        model.advance_head.weight.zero_()
        model.advance_head.bias.fill_(-30.0)
        model.advance_head.bias[move] = 30.0


def test_decoding_follows_the_pointer_to_the_end_cached_equals_recomputed():
    torch.manual_seed(0)
    model = ValleAR(paced()).eval()
    phonemes = torch.randint(3, 20, (2, 10))
    lens = torch.tensor([10, 7])
    phonemes[1, 7:] = 0
    prompt = torch.randint(0, 64, (5,))
    starts = torch.tensor([3, 2])
    for sampling in (SamplingConfig(greedy=True), SamplingConfig()):
        runs = [model.generate(phonemes, lens, prompt, [(4, 60)] * 2, sampling, torch.Generator().manual_seed(3),
                               use_cache=cache, text_starts=starts) for cache in (True, False)]
        assert all(torch.equal(a, b) for a, b in zip(*runs))
    # one token per frame: as many frames as text tokens after the start (the minimum length does not apply)
    set_advance(model, 1)
    out = model.generate(phonemes, lens, prompt, [(20, 60)] * 2, SamplingConfig(), text_starts=starts)
    assert [o.numel() for o in out] == [7, 5]
    set_advance(model, 3)
    out = model.generate(phonemes, lens, prompt, [(1, 60)] * 2, SamplingConfig(greedy=True), text_starts=starts)
    assert [o.numel() for o in out] == [3, 2]
    # a pointer that never moves is moved on after MAX_STAY frames (and the length limit still holds)
    set_advance(model, 0)
    model.MAX_STAY = 4
    out = model.generate(phonemes, lens, prompt, [(1, 25)] * 2, SamplingConfig(greedy=True), text_starts=starts)
    assert [o.numel() for o in out] == [25, 20]
    # greedy codes, and a 50 % chance of moving one token each frame: the pointer is drawn, about 2 frames a token
    with torch.no_grad():
        model.advance_head.bias.fill_(-30.0)
        model.advance_head.bias[0] = model.advance_head.bias[1] = 0.0
    model.MAX_STAY = ValleAR.MAX_STAY
    long = torch.randint(3, 20, (1, 60))
    frames = [model.generate(long, torch.tensor([60]), prompt, [(1, 400)], SamplingConfig(greedy=True),
                             torch.Generator().manual_seed(seed), text_starts=torch.tensor([10]))[0].numel()
              for seed in range(3)]
    assert len(set(frames)) > 1 and all(70 < f < 130 for f in frames)  # 50 tokens: 100 frames expected, sd 10
    # --speed scales the chance of moving: 2.0 makes the 50 % a certainty (one frame a token), 0.5 makes it 25 %
    fast = model.generate(long, torch.tensor([60]), prompt, [(1, 400)], SamplingConfig(greedy=True),
                          torch.Generator().manual_seed(0), text_starts=torch.tensor([10]), speed=2.0)[0].numel()
    slow = [model.generate(long, torch.tensor([60]), prompt, [(1, 400)], SamplingConfig(greedy=True),
                           torch.Generator().manual_seed(seed), text_starts=torch.tensor([10]), speed=0.5)[0].numel()
            for seed in range(3)]
    assert fast == 50 and all(140 < f < 260 for f in slow)  # 200 frames expected, sd 24


def test_speed_is_a_property_of_durations_as_input():
    assert Valle(paced()).supports_speed and not Valle(ValleConfig.tiny(num_symbols=20)).supports_speed
