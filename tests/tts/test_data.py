"""Data pipeline end to end on a smoke-size mini corpus: build, prepare, phonemize, tokenize, resume, batches."""

from __future__ import annotations

import json
import math
import random
import shutil
import tracemalloc

import numpy as np
import pytest
import torch
from lhotse import CutSet, load_manifest_lazy

from codec import LanguageCodec
from toolkit.runs import sampler_state
from tts.data.dataset import CODE_PAD, Curriculum, PromptPool, TokenDataset, check_curriculum, cut_codes, make_sampler
from tts.data.pipeline import Pipeline, PipelineConfig, codec_loader, run
from tts.text import SymbolTable

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def test_corpus_prepared_and_tokenized(built):
    root, config, summary = built
    assert summary["train"]["cuts"] >= 6 and summary["test"]["cuts"] >= 4
    assert summary["train"]["speakers"] >= 2
    symbols = SymbolTable.load(config.work_dir / "symbols.json")
    assert symbols.frontend == "espeak:en-us"
    for part in ("train", "test"):
        cuts = CutSet.from_file(config.work_dir / f"cuts_{part}.jsonl.gz").to_eager()
        for cut in cuts:
            codes = cut_codes(cut)
            assert codes.dtype == np.int16 and codes.shape == (math.ceil(round(cut.duration * 75, 6)), 8)
            assert codes.shape[0] == math.ceil(cut.num_samples / 320)
            tokens = cut.supervisions[0].custom["phonemes"].split(" ")
            assert len(tokens) > 3 and not symbols.unknown(tokens)


def test_codes_equal_encoding_the_audio(built):
    root, config, _ = built
    codec = LanguageCodec.from_pretrained(root / "codec")
    cut = CutSet.from_file(config.work_dir / "cuts_train.jsonl.gz").to_eager()[0]
    wav = torch.from_numpy(cut.load_audio()[0])
    assert np.array_equal(codec.encode(wav[None])[0].t().numpy(), cut_codes(cut))


def test_rerun_skips_finished_stages(built):
    root, config, summary = built
    calls = []

    def loader():
        calls.append(1)
        return codec_loader(root / "codec")()

    before = (config.work_dir / "cuts_train.jsonl.gz").stat().st_mtime_ns
    pipeline = Pipeline(config)
    pipeline.prepare()
    pipeline.phonemize()
    pipeline.tokenize(loader)
    assert calls == [] and (config.work_dir / "cuts_train.jsonl.gz").stat().st_mtime_ns == before


def test_killed_tokenization_resumes(built, tmp_path):
    root, config, _ = built
    work = tmp_path / "work"
    shutil.copytree(config.work_dir, work)
    for marker in (work / ".done").glob("tokenize_*"):
        marker.unlink()
    shutil.rmtree(work / "codes")
    for f in work.glob("cuts_*[a-z].jsonl.gz"):
        if f.name.count(".") == 2:  # cuts_<part>.jsonl.gz, the tokenized output
            f.unlink()
    resumed = Pipeline(PipelineConfig(**{**config.__dict__, "work_dir": work}))

    class Killed(Exception):
        pass

    def kill_after_first(index):
        if index == 0:
            raise Killed

    with pytest.raises(Killed):
        resumed.tokenize(codec_loader(root / "codec"), on_chunk=kill_after_first)
    assert (work / ".done" / "tokenize_train_00000").exists() and not (work / ".done" / "tokenize_train").exists()
    resumed.tokenize(codec_loader(root / "codec"))
    for part in ("train", "test"):
        full = CutSet.from_file(config.work_dir / f"cuts_{part}.jsonl.gz").to_eager()
        again = CutSet.from_file(work / f"cuts_{part}.jsonl.gz").to_eager()
        assert sorted(again.ids) == sorted(full.ids) and len(set(again.ids)) == len(list(again.ids))
        for a in again:
            assert np.array_equal(cut_codes(a), cut_codes(full[a.id]))


def test_tokenization_streams_and_finishes_a_tokenization_begun_in_id_order(built, tmp_path):
    """Tokenization streams the manifest in its order, a chunk at a time; one begun by earlier code (chunked in id
    order, which needed every cut in memory) is finished in that order, so its chunks stay whole."""
    root, config, _ = built
    work = tmp_path / "work"
    shutil.copytree(config.work_dir, work)
    phon = work / "cuts_train.phon.jsonl.gz"
    cuts = CutSet.from_file(phon).to_eager()
    order = [c.id for c in cuts][::-1]  # a manifest out of id order, so that the two orders can be told apart
    CutSet.from_cuts(cuts[c] for c in order).to_file(phon)
    assert order != sorted(order)
    for name, begun_by_earlier_code in (("fresh", False), ("earlier", True)):
        for marker in (work / ".done").glob("tokenize_*"):
            marker.unlink()
        shutil.rmtree(work / "codes", ignore_errors=True)
        if begun_by_earlier_code:
            (work / ".done" / "tokenize_train_00000").write_text("done\n")  # its first chunk: the 4 smallest ids
            (work / "codes" / "train").mkdir(parents=True)
            earlier = Pipeline(PipelineConfig(**{**config.__dict__, "work_dir": work, "parts": ("train",)}))
            earlier._tokenize_chunk(codec_loader(root / "codec")(),
                                    sorted((c for c in CutSet.from_file(work / "cuts_train.phon.jsonl.gz")
                                            if c.id in sorted(order)[:4]), key=lambda c: c.id),
                                    work / "codes" / "train" / "00000", {"skipped": {}})
        Pipeline(PipelineConfig(**{**config.__dict__, "work_dir": work, "parts": ("train",)})).tokenize(
            codec_loader(root / "codec"))
        ids = [c.id for c in CutSet.from_file(work / "cuts_train.jsonl.gz")]
        assert ids == (sorted(order) if begun_by_earlier_code else order), name


def test_corrupt_audio_is_reported_and_skipped(built, tmp_path):
    root, config, _ = built
    corpus = tmp_path / "corpus"
    shutil.copytree(config.corpus_dir, corpus)
    victim = sorted((corpus / "train").rglob("*.wav"))[0]
    victim.write_bytes(b"RIFF not really a wave file")
    summary = run(PipelineConfig(corpus_dir=corpus, work_dir=tmp_path / "work", parts=("train",), chunk_size=4),
                  root / "codec")
    report = json.loads((tmp_path / "work" / "report_train.json").read_text())
    assert victim.stem in report["skipped"] and "unreadable" in report["skipped"][victim.stem]
    full = CutSet.from_file(config.work_dir / "cuts_train.jsonl.gz").to_eager()
    assert summary["train"]["cuts"] == len(full) - 1 and summary["train"]["skipped"] == 1


def test_dataset_batches(built):
    root, config, _ = built
    symbols = SymbolTable.load(config.work_dir / "symbols.json")
    cuts = CutSet.from_file(config.work_dir / "cuts_train.jsonl.gz").to_eager()
    dataset = TokenDataset(symbols, prompt_seconds=3.0)
    sampler = make_sampler(cuts, max_duration=30, shuffle=True, seed=1)
    loader = torch.utils.data.DataLoader(dataset, sampler=sampler, batch_size=None)
    seen = []
    for batch in loader:
        b, k, t = batch.codes.shape
        assert k == 8 and batch.phonemes.shape[0] == b == len(batch.cut_ids)
        for i, cut_id in enumerate(batch.cut_ids):
            cut = cuts[cut_id]
            n = int(batch.code_lens[i])
            assert n == math.ceil(round(cut.duration * 75, 6))
            assert torch.equal(batch.codes[i, :, :n], torch.from_numpy(cut_codes(cut).astype(np.int64)).t())
            assert (batch.codes[i, :, n:] == CODE_PAD).all()
            ids = batch.phonemes[i, : batch.phoneme_lens[i]].tolist()
            assert " ".join(symbols.decode(ids)) == cut.supervisions[0].custom["phonemes"]
            p = int(batch.prompt_lens[i])
            assert batch.prompt_is_prefix[i] and 1 <= p <= min(225, n)
            assert torch.equal(batch.prompt_codes[i, :, :p], batch.codes[i, :, :p])
        seen += batch.cut_ids
    assert sorted(seen) == sorted(cuts.ids)


def test_other_utterance_prompts(built):
    root, config, _ = built
    symbols = SymbolTable.load(config.work_dir / "symbols.json")
    cuts = CutSet.from_file(config.work_dir / "cuts_train.jsonl.gz").to_eager()
    dataset = TokenDataset(symbols, other_utterance_prob=1.0, prompt_pool=cuts)
    batch = dataset[cuts]
    for i, cut_id in enumerate(batch.cut_ids):
        same_speaker = [c for c in cuts if c.supervisions[0].speaker == batch.speakers[i] and c.id != cut_id]
        assert bool(batch.prompt_is_prefix[i]) == (not same_speaker)
        if same_speaker:
            p = int(batch.prompt_lens[i])
            prompt = batch.prompt_codes[i, :, :p].t().numpy()
            assert any(np.array_equal(cut_codes(c)[:p], prompt) for c in same_speaker)
    assert torch.equal(dataset[cuts].prompt_codes, batch.prompt_codes)  # reproducible choices


def test_prompt_pool_holds_references_not_cuts(built):
    """A pool made from a lazy manifest draws exactly a same-speaker utterance's first frames, also from a part of a
    recording, and costs a fraction of the cuts it indexes."""
    root, config, _ = built
    path = config.work_dir / "cuts_train.jsonl.gz"
    tracemalloc.start()
    cuts = CutSet.from_file(path).to_eager()
    cut_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    tracemalloc.start()
    pool = PromptPool(load_manifest_lazy(path))
    pool_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(pool) == len(cuts) and pool_bytes < cut_bytes / 3
    rng = random.Random(0)
    for cut in cuts:
        speaker = cut.supervisions[0].speaker
        others = [c for c in cuts if c.supervisions[0].speaker == speaker and c.id != cut.id]
        drawn = pool.draw(speaker, cut.id, rng, 40)
        assert (drawn is None) == (not others)
        if others:
            assert any(np.array_equal(cut_codes(c)[:40], drawn) for c in others)
    cut = cuts[0]  # a window of a longer recording reads that window's codes
    part = cut.truncate(offset=0.4, duration=cut.duration - 0.4)
    windowed = PromptPool([part]).draw(cut.supervisions[0].speaker, "another", rng, 1000)
    np.testing.assert_array_equal(windowed, part.load_codes())
    assert not np.array_equal(windowed[:10], cut_codes(cut)[:10])


def test_copies_of_an_utterance_never_prompt_each_other(built):
    """An oversampled manifest's copies (``<id>_repeat<k>``) are the cut itself: the pool draws another utterance of
    the speaker, or none when the speaker has no other."""
    root, config, _ = built
    symbols = SymbolTable.load(config.work_dir / "symbols.json")
    cuts = CutSet.from_file(config.work_dir / "cuts_train.jsonl.gz").to_eager()
    cut = cuts[0]
    speaker = cut.supervisions[0].speaker
    copies = [cut.with_id(f"{cut.id}_repeat{k}") for k in (1, 2)]
    rng = random.Random(0)
    alone = PromptPool([cut] + copies)
    assert all(alone.draw(speaker, c, rng, 40) is None for c in [cut] + copies)
    assert alone.draw(speaker, copies[0].id, rng, 40) is None  # by id too
    batch = TokenDataset(symbols, other_utterance_prob=1.0, prompt_pool=alone)[[cut] + copies]
    assert batch.prompt_is_prefix.all()
    other = next(c for c in cuts if c.supervisions[0].speaker == speaker and c.id != cut.id)
    pool = PromptPool([cut, other] + copies)
    for _ in range(20):
        np.testing.assert_array_equal(pool.draw(speaker, copies[1], rng, 40), cut_codes(other)[:40])


def test_sampler_resumes_mid_epoch_and_splits_ranks(built):
    root, config, _ = built
    cuts = CutSet.from_file(config.work_dir / "cuts_train.jsonl.gz").to_eager()
    full = [sorted(b.ids) for b in make_sampler(cuts, max_duration=8, seed=3)]
    assert len(full) >= 3
    sampler = make_sampler(cuts, max_duration=8, seed=3)
    it = iter(sampler)
    first = [sorted(next(it).ids) for _ in range(2)]
    state = sampler.state_dict()
    resumed = make_sampler(cuts, max_duration=8, seed=3)
    resumed.load_state_dict(state)
    rest = [sorted(b.ids) for b in resumed]
    assert first + rest == full
    ranks = [{c for b in make_sampler(cuts, max_duration=8, seed=3, world_size=2, rank=r) for c in b.ids}
             for r in (0, 1)]
    assert not ranks[0] & ranks[1] and ranks[0] and ranks[1]


def test_curriculum_draws_the_short_cuts_first_and_resumes(built):
    """Epoch 0 takes the cuts up to the median length, epoch 1 every cut; a sampler resumed mid-epoch 0 from its
    state (through JSON, as checkpoints hold it) draws the rest of the unbroken sampler's epochs 0 and 1."""
    _, config, _ = built
    cuts = CutSet.from_file(config.work_dir / "cuts_train.jsonl.gz").to_eager()
    median = float(np.median([c.duration for c in cuts]))
    short = {c.id for c in cuts if c.duration <= median}

    def sampler():
        return make_sampler(cuts, max_duration=6, seed=3, curriculum=Curriculum([[1, median]]))

    unbroken = sampler()
    epochs = []
    for epoch in (0, 1):
        unbroken.set_epoch(epoch)
        epochs.append([sorted(b.ids) for b in unbroken])
    assert {i for b in epochs[0] for i in b} == short and {i for b in epochs[1] for i in b} == set(cuts.ids)
    assert len(epochs[0]) >= 3
    first = sampler()
    stream = iter(first)
    next(stream), next(stream)
    resumed = sampler()
    resumed.load_state_dict(sampler_state(json.loads(json.dumps(first.state_dict()))))
    rest = [sorted(b.ids) for b in resumed]
    resumed.set_epoch(1)
    assert rest == epochs[0][2:] and [sorted(b.ids) for b in resumed] == epochs[1]
    curriculum = Curriculum([[2, 3], [1, 5.5]])
    assert [curriculum.limit(e) for e in range(4)] == [3.0, 3.0, 5.5, None]
    for bad in ([[0, 3]], [[1, 0]], [3, 4], [[1.5, 2]]):
        with pytest.raises(ValueError, match=r"train.curriculum must be a list of \[epochs, max_seconds\] pairs"):
            check_curriculum(bad)


def test_shar_export(built):
    root, config, _ = built
    Pipeline(config).shar(shard_size=5)
    shar = CutSet.from_shar(in_dir=config.work_dir / "shar" / "train")
    full = CutSet.from_file(config.work_dir / "cuts_train.jsonl.gz").to_eager()
    loaded = {c.id: cut_codes(c) for c in shar}
    assert sorted(loaded) == sorted(full.ids)
    assert all(np.array_equal(loaded[c.id], cut_codes(c)) for c in full)
