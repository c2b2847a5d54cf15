"""MobileSpeech: length regulation, a tiny model overfitting mini-corpus utterances, and seeded parallel decoding."""

from __future__ import annotations

import torch
from lhotse import CutSet

from tts.data.dataset import TokenDataset
from tts.models.mobilespeech import MobileSpeech, MobileSpeechConfig, length_regulate


def test_length_regulate():
    states = torch.arange(6.0).view(1, 3, 2).repeat(2, 1, 1)
    durations = torch.tensor([[2, 0, 3], [1, 1, 0]])
    out = length_regulate(states, durations, 5)
    assert out[0, :, 0].tolist() == [0, 0, 4, 4, 4]
    assert out[1, :, 0].tolist() == [0, 2, 0, 0, 0] and out[1, 2:].abs().sum() == 0


def test_overfits_and_decodes(built):
    from tests.tts.test_valle_training import data

    torch.set_num_threads(1)
    cuts, symbols, _ = data(built)
    few = CutSet.from_cuts(list(cuts.sort_by_duration(ascending=True))[:2])
    batch = TokenDataset(symbols)[few]
    torch.manual_seed(0)
    config = MobileSpeechConfig.tiny(len(symbols))
    model = MobileSpeech(config)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(600):
        out = model(batch, generator=gen)
        loss = sum(o.loss for o in out.values())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = [float(model(batch, generator=torch.Generator().manual_seed(s))["smd"].accuracy) for s in range(8)]
        aligned = model.aligner.durations(batch.phonemes, batch.phoneme_lens, batch.codes, batch.code_lens)
        prompt = batch.prompt_codes[0, :, : int(batch.prompt_lens[0])]
        predicted = model.predict_durations(batch.phonemes, batch.phoneme_lens, prompt[None].expand(2, -1, -1))
    assert sum(accuracy) / len(accuracy) > 0.95, accuracy  # measured 0.98
    assert torch.equal(aligned.sum(1), batch.code_lens)
    # total predicted length within 15% of the aligner's
    assert ((predicted.sum(1).float() / aligned.sum(1).float()) - 1).abs().max() < 0.15, (predicted.sum(1),
                                                                                          aligned.sum(1))
    texts = [batch.phonemes[i, : batch.phoneme_lens[i]] for i in range(2)]
    a = model.synthesize(texts, prompt, steps=4, generator=torch.Generator().manual_seed(1))
    b = model.synthesize(texts, prompt, steps=4, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    for codes, n in zip(a, predicted.sum(1)):
        assert codes.shape == (8, int(n)) and codes.min() >= 0 and codes.max() < 64
