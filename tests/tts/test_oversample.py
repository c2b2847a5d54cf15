"""recipes/mini/oversample.py: the cuts of some speakers repeated in a training manifest, shuffled, ids unique."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from lhotse import CutSet

from tts.data.dataset import cut_codes

SCRIPT = Path(__file__).resolve().parents[2] / "recipes" / "mini" / "oversample.py"


def oversample(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def test_oversample_repeats_other_speakers_and_keeps_the_excepted_once(built, tmp_path):
    _, config, _ = built
    manifest = config.work_dir / "cuts_train.jsonl.gz"
    cuts = CutSet.from_file(manifest).to_eager()
    speakers = Counter(c.supervisions[0].speaker for c in cuts)
    assert len(speakers) >= 2
    kept = sorted(speakers)[0]
    out = tmp_path / "over.jsonl.gz"
    proc = oversample("--cuts", str(manifest), "--out", str(out), "--times", "3", "--except-speakers", kept)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = CutSet.from_file(out).to_eager()
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = speakers[kept] + 3 * (len(cuts) - speakers[kept])
    assert summary["in"]["cuts"] == len(cuts) and summary["out"]["cuts"] == len(result) == expected
    ids = [c.id for c in result]
    assert len(set(ids)) == len(ids)
    by_source = Counter(c.id.split("_repeat")[0] for c in result)
    originals = {c.id: c for c in cuts}
    assert set(by_source) == set(originals)
    assert set(originals) <= set(ids)  # the first copy keeps its id, so labels matched by id still apply
    for cut_id, n in by_source.items():
        assert n == (1 if originals[cut_id].supervisions[0].speaker == kept else 3)
    for cut in result:  # a copy is its original: same supervision, same stored codes
        source = originals[cut.id.split("_repeat")[0]]
        assert cut.supervisions[0].text == source.supervisions[0].text
        assert np.array_equal(cut_codes(cut), cut_codes(source))
    # shuffled, and the same seed gives the same order
    assert ids != sorted(ids, key=lambda i: (i.split("_repeat")[0], i))
    again = tmp_path / "again.jsonl.gz"
    assert oversample("--cuts", str(manifest), "--out", str(again), "--times", "3", "--except-speakers",
                      kept).returncode == 0
    assert [c.id for c in CutSet.from_file(again)] == ids


def test_oversample_bad_input_is_one_line_and_writes_nothing(built, tmp_path):
    _, config, _ = built
    manifest = config.work_dir / "cuts_train.jsonl.gz"
    out = tmp_path / "over.jsonl.gz"
    for args, message in [(["--cuts", str(manifest), "--times", "0"], "--times must be at least 1"),
                          (["--cuts", str(tmp_path / "missing.jsonl.gz"), "--times", "2"], "no such manifest")]:
        proc = oversample(*args, "--out", str(out))
        assert proc.returncode != 0 and message in proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
        assert not out.exists()
