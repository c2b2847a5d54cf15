"""The single-voice recipe (recipes/voice/prepare.py): one voice's cuts split into training cuts and held-out
sentences, the latter written as clips that the zero-shot evaluation reads."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf
from lhotse import CutSet

from tts.data.dataset import cut_codes

ROOT = Path(__file__).resolve().parents[2]


def words(cut) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", cut.supervisions[0].text.lower()))


def prepare(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "recipes" / "voice" / "prepare.py"), *args],
                          capture_output=True, text=True, timeout=300)


def test_voice_split_clips_and_tokenization(built, tmp_path):
    root, config, _ = built
    manifest = config.work_dir / "cuts_train.jsonl.gz"
    cuts = CutSet.from_file(manifest).to_eager()
    speaker, count = Counter(c.supervisions[0].speaker for c in cuts).most_common(1)[0]
    voice = [c for c in cuts if c.supervisions[0].speaker == speaker]
    assert count >= 3
    out = tmp_path / "voice"
    proc = prepare("--cuts", str(config.work_dir / "cuts_train.phon.jsonl.gz"), "--speaker", speaker,
                   "--held-out", "1", "--prompt-seconds", "1.0", "--codec", str(root / "codec"),
                   "--out-dir", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    train = CutSet.from_file(out / "cuts_train.jsonl.gz").to_eager()
    held = CutSet.from_file(out / "cuts_valid.jsonl.gz").to_eager()
    assert summary["train_cuts"] == len(train) == count - 1 and summary["held_out"] == len(held) == 1
    assert sorted(c.id for c in [*train, *held]) == sorted(c.id for c in voice)
    assert words(held[0]) not in {words(c) for c in train}
    # tokenized with --codec: the same codes as the corpus, which was tokenized with that codec
    corpus = {c.id: c for c in voice}
    for cut in [*train, *held]:
        assert np.array_equal(cut_codes(cut), cut_codes(corpus[cut.id]))
    assert (out / "symbols.json").read_bytes() == (config.work_dir / "symbols.json").read_bytes()
    # the held-out sentence as a clip, prompted with a crop of a training utterance of the voice
    with open(out / "clips" / "manifest.tsv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    target, prompt = rows
    assert (target["role"], prompt["role"]) == ("full_utterance", "prompt_crop_3s")
    assert target["speaker_id"] == prompt["speaker_id"] and target["transcript"] == held[0].supervisions[0].text
    audio, rate = sf.read(out / "clips" / target["file"])
    assert rate == held[0].sampling_rate and len(audio) == held[0].num_samples
    audio, rate = sf.read(out / "clips" / prompt["file"])
    assert len(audio) == rate * 1 and summary["prompt"] in {c.id for c in train}
    # run again with another draw: the tokenization starts over for the new split
    proc = prepare("--cuts", str(config.work_dir / "cuts_train.phon.jsonl.gz"), "--speaker", speaker,
                   "--held-out", "2", "--prompt-seconds", "1.0", "--codec", str(root / "codec"),
                   "--out-dir", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(CutSet.from_file(out / "cuts_valid.jsonl.gz")) == 2
    assert len(CutSet.from_file(out / "cuts_train.jsonl.gz")) == count - 2


def test_voice_bad_input(built, tmp_path):
    _, config, _ = built
    tokenized, phonemized = config.work_dir / "cuts_train.jsonl.gz", config.work_dir / "cuts_train.phon.jsonl.gz"
    speaker = CutSet.from_file(tokenized)[0].supervisions[0].speaker
    for cuts, args, message in [(tokenized, ["--speaker", "nobody"], "no cut of nobody"),
                                (tokenized, ["--speaker", speaker, "--held-out", "99"], "leaves none to train on"),
                                (phonemized, ["--speaker", speaker], "give --codec"),
                                (tmp_path / "missing.jsonl.gz", ["--speaker", speaker], "no cut manifest at")]:
        proc = prepare("--cuts", str(cuts), *args, "--out-dir", str(tmp_path / "out"))
        assert proc.returncode != 0 and message in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and not (tmp_path / "out" / "cuts_train.jsonl.gz").exists()
