"""VALL-E: KV-cached decoding equals recomputation, tiny models overfit, masks, sampling."""

from __future__ import annotations

import pytest
import torch

from tts.models.base import GenerationRequest
from tts.models.sampling import SamplingConfig, filter_logits, length_limits, sample_token
from tts.models.valle import Valle, ValleAR, ValleConfig, ValleNAR
from tts.modules.transformer import KVCache


def toy_batch(b=3, k=8, cs=64, symbols=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    phoneme_lens = torch.tensor([7, 5, 6][:b])
    code_lens = torch.tensor([12, 9, 10][:b])
    phonemes = torch.randint(3, symbols, (b, 7), generator=g)
    codes = torch.randint(0, cs, (b, k, 12), generator=g)
    for i in range(b):
        phonemes[i, phoneme_lens[i]:] = 0
        codes[i, :, code_lens[i]:] = -1
    return phonemes, phoneme_lens, codes, code_lens


def test_ar_overfits_and_padding_does_not_leak():
    torch.manual_seed(0)
    config = ValleConfig.tiny(num_symbols=20)
    model = ValleAR(config)
    batch = toy_batch()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        out = model(*batch)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    model.eval()
    out = model(*batch)
    assert out.accuracy > 0.97 and out.top10 == 1.0 and out.tokens == int(batch[3].sum() + 3)
    # Changing padded positions of one item changes nothing for the others or for itself.
    phonemes, plens, codes, clens = batch
    codes2 = codes.clone()
    codes2[1, :, clens[1]:] = 5
    phonemes2 = phonemes.clone()
    phonemes2[1, plens[1]:] = 9
    assert torch.allclose(model(phonemes2, plens, codes2, clens).loss, out.loss, atol=1e-5)


@pytest.mark.slow
def test_nar_overfits_and_ignores_prompt_frames():
    torch.manual_seed(0)
    model = ValleNAR(ValleConfig.tiny(num_symbols=20))
    phonemes, plens, codes, clens = toy_batch()
    prompt_lens = torch.tensor([3, 2, 4])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(300):
        out = model(phonemes, plens, codes, clens, prompt_lens, stage=1 + step % 7)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    model.eval()
    for stage in range(1, 8):
        out = model(phonemes, plens, codes, clens, prompt_lens, stage=stage)
        assert out.accuracy > 0.95, (stage, float(out.accuracy))
        assert out.tokens == int((clens - prompt_lens).sum())


def test_kv_cache_greedy_equals_recomputation():
    """The one AR decoding path, with and without the cache, on a padded batch: identical greedy codes, and the
    cached logits of every step equal a full forward pass over the sequence so far."""
    torch.manual_seed(0)
    model = ValleAR(ValleConfig.tiny(num_symbols=20)).eval()
    phonemes = torch.randint(3, 20, (2, 9))
    lens = torch.tensor([9, 6])
    phonemes[1, 6:] = 0
    prompt = torch.randint(0, 64, (5,))
    greedy = SamplingConfig(greedy=True)
    limits = [(40, 40), (40, 40)]
    with_cache = model.generate(phonemes, lens, prompt, limits, greedy)
    without = model.generate(phonemes, lens, prompt, limits, greedy, use_cache=False)
    assert [c.numel() for c in with_cache] == [40, 40]
    assert all(torch.equal(a, b) for a, b in zip(with_cache, without))
    # the logits the cached path decoded from equal those of a recomputation over the whole sequence
    steps = []
    head = model.head.forward
    model.head.forward = lambda h: steps.append(head(h)) or steps[-1]
    try:
        model.generate(phonemes, lens, prompt, [(12, 12)] * 2, greedy)
    finally:
        del model.head.forward
    for i in range(2):
        tokens = torch.cat([torch.tensor([model.bos]), prompt, with_cache[i][:11]])[None]
        x, mask = model._join(phonemes[i:i + 1, :lens[i]], lens[i:i + 1], model.audio_embedding(tokens),
                              torch.tensor([tokens.shape[1]]), causal_audio=True)
        full = model.head(model.transformer(x, mask=mask))[0, -12:]
        cached = torch.stack([s[i] for s in steps])
        assert torch.allclose(cached, full, atol=1e-4)


def test_kv_cache_grows_in_place_and_equals_concatenation():
    """Appends of 1 to 70 positions, across several reallocations of the buffers: every layer returns exactly the
    concatenation of what it was given, in the same batch and head layout."""
    torch.manual_seed(0)
    cache = KVCache(2)
    given = {0: [], 1: []}
    for t in (30, 1, 1, 40, 70, 1, 3):
        for layer in (0, 1):
            k, v = torch.randn(3, 2, t, 4), torch.randn(3, 2, t, 4)
            given[layer].append((k, v))
            keys, values = cache.update(layer, k, v)
            assert torch.equal(keys, torch.cat([g[0] for g in given[layer]], dim=2))
            assert torch.equal(values, torch.cat([g[1] for g in given[layer]], dim=2))
    assert cache.length == 146


def test_guards_and_seeded_sampling():
    torch.manual_seed(0)
    model = ValleAR(ValleConfig.tiny(num_symbols=20)).eval()
    with torch.no_grad():
        model.head.bias[model.eos] = 50.0  # a model that always wants to stop
    phonemes, lens, prompt = torch.randint(3, 20, (1, 6)), torch.tensor([6]), torch.randint(0, 64, (4,))
    greedy = SamplingConfig(greedy=True)
    (out,) = model.generate(phonemes, lens, prompt, [(8, 30)], greedy)
    assert out.numel() == 8  # no end before the minimum, and it ends right after
    with torch.no_grad():
        model.head.bias[model.eos] = -50.0  # a model that never stops
    (out,) = model.generate(phonemes, lens, prompt, [(1, 30)], greedy)
    assert out.numel() == 30
    runs = [model.generate(phonemes, lens, prompt, [(1, 20)], SamplingConfig(), torch.Generator().manual_seed(7))[0]
            for _ in range(2)]
    assert torch.equal(runs[0], runs[1])


def test_filters_and_repetition_aware_sampling():
    logits = torch.tensor([4.0, 3.0, 2.0, 1.0, 0.0])
    assert torch.isinf(filter_logits(logits, top_k=2)[2:]).all() and not torch.isinf(filter_logits(logits, 2)[:2]).any()
    kept = ~torch.isinf(filter_logits(logits, top_p=0.7))
    assert kept.tolist() == [True, True, False, False, False]
    rows = torch.randn(2, 3, 50)
    for top_k, top_p in ((5, 1.0), (0, 0.6), (7, 0.3)):  # a batch filters each row as alone
        batched = filter_logits(rows, top_k, top_p)
        assert all(torch.equal(batched[i, j], filter_logits(rows[i, j], top_k, top_p))
                   for i in range(2) for j in range(3))
    peaked = torch.tensor([20.0, 0.0, 0.0, 0.0])
    config = SamplingConfig(top_k=1, ras_window=10, ras_threshold=0.1)
    g = torch.Generator().manual_seed(0)
    assert sample_token(peaked, config, [1, 2, 3], g) == 0  # no repetition: the nucleus token
    flat = torch.zeros(4)
    flat[0] = 1.0
    repeated = [0] * 10
    draws = {sample_token(flat, SamplingConfig(top_k=1), repeated, g) for _ in range(50)}
    assert draws != {0}  # token 0 filled the window: RAS redraws from the whole distribution


def test_nar_generate_shapes_and_prompt_use():
    torch.manual_seed(0)
    model = ValleNAR(ValleConfig.tiny(num_symbols=20)).eval()
    phonemes = torch.randint(3, 20, (1, 8))
    lens = torch.tensor([8])
    prompt = torch.randint(0, 64, (8, 6))
    first = torch.randint(0, 64, (11,))
    (codes,) = model.generate(phonemes, lens, prompt, [first])
    assert codes.shape == (8, 11) and torch.equal(codes[0], first)
    assert int(codes.min()) >= 0 and int(codes.max()) < 64
    (other,) = model.generate(phonemes, lens, torch.randint(0, 64, (8, 6)), [first])
    assert not torch.equal(other[1:], codes[1:])  # the acoustic prompt conditions the output


def test_batched_synthesis_equals_one_by_one_and_is_seeded():
    """Padding of shorter texts leaks into nothing: greedy codes of a batch equal those of each text alone; a seeded
    sampling run repeats; 4-codebook models work."""
    torch.manual_seed(0)
    for k in (8, 4):
        model = Valle(ValleConfig.tiny(num_symbols=20, num_codebooks=k)).eval()
        with torch.no_grad():
            model.ar.head.bias[model.ar.eos] = -4.0  # let sequences run a while
        texts = [torch.randint(3, 20, (n,)) for n in (9, 5, 7)]
        targets = [2, 1, 3]  # phonemes of the target text after the prompt transcript: limits (4, 40), (2, 20), ...
        prompt = torch.randint(0, 64, (k, 6))
        greedy = SamplingConfig(greedy=True)
        batch = model.generate(GenerationRequest(texts, targets, prompt, 75, greedy))
        alone = [model.generate(GenerationRequest([t], [n], prompt, 75, greedy))[0] for t, n in zip(texts, targets)]
        for a, b, n in zip(batch, alone, targets):
            low, high = length_limits(n, 75)
            assert a.shape[0] == k and low <= a.shape[1] <= high
            assert torch.equal(a, b)
        runs = [model.generate(GenerationRequest(texts, targets, prompt, 75,
                                                 generator=torch.Generator().manual_seed(3))) for _ in range(2)]
        assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_stage_subsets():
    config = ValleConfig.tiny(num_symbols=20)
    assert Valle(config, ["ar"]).nar is None and Valle(config, ["nar"]).ar is None
    with pytest.raises(ValueError, match="stages"):
        Valle(config, ["ar", "duration"])
    with pytest.raises(ValueError, match="needs both stages"):
        Valle(config, ["ar"]).generate(GenerationRequest([torch.tensor([3, 4])], [1],
                                                         torch.zeros(8, 3, dtype=torch.long), 75))
