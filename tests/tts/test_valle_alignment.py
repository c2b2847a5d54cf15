"""VALL-E's guided alignment head: the transformer's probe, the loss from stored durations, attention-constrained
decoding, and configs without the head."""

from __future__ import annotations

import pytest
import torch

from tts.models.sampling import SamplingConfig
from tts.models.valle import Valle, ValleAR, ValleConfig
from tts.modules.transformer import Transformer, TransformerConfig


def guided(layer=1, **kw) -> ValleConfig:
    tiny = ValleConfig.tiny(num_symbols=20)
    return ValleConfig(**{**tiny.__dict__, "align_layer": layer, **kw})


def test_probe_returns_the_layers_attention_and_changes_nothing_else():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(dim=32, heads=4, layers=3, ffn_dim=64, dropout=0.0)).eval()
    x = torch.randn(2, 7, 32)
    mask = torch.ones(2, 1, 7, 7, dtype=torch.bool)
    mask[1, :, :, 5:] = False
    mask |= torch.eye(7, dtype=torch.bool)
    plain = model(x, mask=mask)
    out, weights = model(x, mask=mask, probe=1)
    assert torch.allclose(out, plain, atol=1e-5)
    assert weights.shape == (2, 4, 7, 7)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 4, 7), atol=1e-5)
    assert weights[1, :, :5, 5:].abs().max() == 0  # masked keys get nothing
    # probe_mask replaces the mask in the probed layer only: hiding key 0 from head 2 there changes the output
    narrow = mask.expand(2, 4, 7, 7).clone()
    narrow[:, 2, 1:, 0] = False
    changed, weights2 = model(x, mask=mask, probe=1, probe_mask=narrow)
    assert weights2[:, 2, 1:, 0].abs().max() == 0 and weights2[:, 0, 1:, 0].abs().min() > 0
    assert not torch.allclose(changed, plain, atol=1e-4)


def durations_batch():
    """Two items of 8 phoneme tokens (the second with 2 padded), the first with durations (stress-mark-like zeros
    included), the second without."""
    g = torch.Generator().manual_seed(1)
    phonemes = torch.randint(3, 20, (2, 8), generator=g)
    phonemes[1, 6:] = 0
    durations = torch.tensor([[3, 0, 4, 2, 0, 5, 3, 3], [0] * 8])
    code_lens = torch.tensor([20, 14])
    codes = torch.randint(0, 64, (2, 8, 20), generator=g)
    codes[1, :, 14:] = -1
    return phonemes, torch.tensor([8, 6]), codes, code_lens, durations, torch.tensor([True, False])


def test_the_guided_head_learns_the_stored_durations():
    torch.manual_seed(0)
    model = ValleAR(guided())
    phonemes, plens, codes, clens, durations, known = durations_batch()
    first = model.losses(phonemes, plens, codes, clens, durations, known)
    assert set(first) == {"ar", "align"} and first["align"].tokens == 20  # the known item's frames only
    assert first["align"].accuracy < 0.5
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(120):
        out = model.losses(phonemes, plens, codes, clens, durations, known)
        opt.zero_grad()
        (out["ar"].loss + out["align"].loss).backward()
        opt.step()
    model.eval()
    after = model.losses(phonemes, plens, codes, clens, durations, known)
    assert after["align"].loss < 0.2 * first["align"].loss and after["align"].accuracy == 1.0
    # the loss is -log of the head's mass on the spoken phoneme: check it by hand
    with torch.no_grad():
        x, mask = model._join(phonemes, plens, model.audio_embedding(torch.cat(
            [torch.full((2, 1), model.bos), codes[:, 0].clamp(min=0)], 1)), clens + 1, causal_audio=True)
        _, weights = model.transformer(x, mask=mask, probe=1)
    spoken = torch.tensor([0, 0, 0, 2, 2, 2, 2, 3, 3, 5, 5, 5, 5, 5, 6, 6, 6, 7, 7, 7])
    head = weights[0, 0, 8:28, :8]
    mass = head[torch.arange(20), spoken]
    assert torch.allclose(after["align"].loss, -mass.log().mean(), atol=1e-5)
    # with a window, the mass within it counts
    model.config = guided(align_window=1)
    windowed = model.losses(phonemes, plens, codes, clens, durations, known)["align"]
    mass = torch.stack([head[i, max(0, p - 1):p + 2].sum() for i, p in enumerate(spoken.tolist())])
    assert torch.allclose(windowed.loss, -mass.log().mean(), atol=1e-5)
    # no known durations: no alignment tokens, and the AR loss is what the plain forward gives
    none = model.losses(phonemes, plens, codes, clens)
    assert none["align"].tokens == 0 and torch.equal(none["ar"].loss, model(phonemes, plens, codes, clens).loss)


def test_valle_passes_the_batchs_durations_and_validates_the_head():
    from tts.data.dataset import TokenBatch

    phonemes, plens, codes, clens, durations, known = durations_batch()
    batch = TokenBatch(phonemes, plens, codes, clens, codes[:, :, :5], torch.tensor([5, 5]),
                       torch.tensor([True, True]), ["a", "b"], ["s", "s"], durations, known)
    model = Valle(guided()).eval()
    out = model(batch, generator=torch.Generator().manual_seed(0))
    assert set(out) == {"ar", "align", "nar"} and out["align"].tokens == 20
    assert set(model.validation_outputs(batch, 0)[0]) == {"ar", "align"}
    plain = Valle(ValleConfig.tiny(num_symbols=20)).eval()
    assert set(plain(batch, generator=torch.Generator().manual_seed(0))) == {"ar", "nar"}


def test_configs_without_the_head_load_and_bad_values_are_refused():
    tiny = ValleConfig.tiny(num_symbols=20).to_dict()
    for key in ("align_layer", "align_head", "align_weight", "align_window"):
        tiny.pop(key)  # a release written before the head
    assert ValleConfig.from_dict(tiny).align_layer is None
    for bad, match in (({"align_layer": 2}, "align_layer"), ({"align_layer": True}, "align_layer"),
                       ({"align_layer": 0, "align_head": 4}, "align_head"), ({"align_weight": -1.0}, "align_weight"),
                       ({"align_window": -1}, "align_window")):
        with pytest.raises(ValueError, match=match):
            ValleConfig.from_dict({**tiny, **bad})


def test_constrained_decoding_cached_equals_recomputation_and_the_end_waits_for_the_text():
    torch.manual_seed(0)
    model = ValleAR(guided()).eval()
    phonemes = torch.randint(3, 20, (2, 10))
    lens = torch.tensor([10, 7])
    phonemes[1, 7:] = 0
    prompt = torch.randint(0, 64, (5,))
    greedy = SamplingConfig(greedy=True)
    with torch.no_grad():
        model.head.bias[model.eos] = -3.0
    with_cache = model.generate(phonemes, lens, prompt, [(4, 30)] * 2, greedy)
    without = model.generate(phonemes, lens, prompt, [(4, 30)] * 2, greedy, use_cache=False)
    assert all(torch.equal(a, b) for a, b in zip(with_cache, without))
    free = model.generate(phonemes, lens, prompt, [(4, 30)] * 2, SamplingConfig(greedy=True,
                                                                                 constrain_alignment=False))
    assert not all(torch.equal(a, b) for a, b in zip(with_cache, free))  # the window changes what it attends to
    # A head that attends uniformly stays on the first phoneme, so a model that always wants to stop may not until
    # its length limit; with a 2-token text it is at the end already and stops at the minimum.
    with torch.no_grad():
        model.head.bias[model.eos] = 50.0
        q = model.transformer.blocks[1].attn.q
        q.weight[:16].zero_()  # head 0: the first 16 of 64 query features
        q.bias[:16].zero_()
    (stuck,) = model.generate(phonemes[:1], lens[:1], prompt, [(4, 30)], greedy)
    assert stuck.numel() == 30
    (unconstrained,) = model.generate(phonemes[:1], lens[:1], prompt, [(4, 30)],
                                      SamplingConfig(greedy=True, constrain_alignment=False))
    assert unconstrained.numel() == 4
    (short,) = model.generate(phonemes[:1, :2], torch.tensor([2]), prompt, [(4, 30)], greedy)
    assert short.numel() == 4
