"""``recipes/eval/oracle.py``: a MobileSpeech release decoding held-out cuts with parts of the truth given."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from pathlib import Path

from tests.support import tiny_release

ROOT = Path(__file__).resolve().parents[2]
SYSTEMS = ["ground truth", "codec", "codec, layer 1", "layer 1 given", "durations given", "model"]


def oracle(*args):
    return subprocess.run([sys.executable, str(ROOT / "recipes" / "eval" / "oracle.py"), "--threads", "1",
                           "--no-dnsmos", *map(str, args)], capture_output=True, text=True, timeout=600)


def test_oracle_scores_every_system(built, tmp_path):
    _, config, _ = built
    release = tiny_release(tmp_path, "mobilespeech")
    out = tmp_path / "out"
    proc = oracle("--checkpoint", release, "--cuts", config.work_dir / "cuts_train.jsonl.gz", "--limit", 2,
                  "--steps", 2, "--out-dir", out)
    assert proc.returncode == 0, proc.stderr
    scores = json.loads((out / "scores.json").read_text())
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["system"] for r in rows] == SYSTEMS * 2
    assert all(Path(r["audio"]).is_file() for r in rows)
    assert set(scores["summary"]) == set(SYSTEMS) and scores["summary"]["codec"]["items"] == 2, scores["summary"]
    # the oracle rows keep the truth's length: given durations sum to the cut's frames
    import soundfile as sf

    first = [sf.info(r["audio"]).frames for r in rows[:6]]
    assert first[1] == first[2] == first[3] == first[4], first


def test_oracle_refuses_what_it_cannot_use(built, tmp_path):
    _, config, _ = built
    valle = tiny_release(tmp_path / "v", "valle")
    cuts = config.work_dir / "cuts_train.jsonl.gz"
    proc = oracle("--checkpoint", valle, "--cuts", cuts, "--out-dir", tmp_path / "no")
    assert proc.returncode == 2 and "the oracles need MobileSpeech" in proc.stderr.strip().splitlines()[-1]
    bare = tmp_path / "bare.jsonl.gz"  # the same cuts without their stored durations
    with gzip.open(cuts, "rt") as f, gzip.open(bare, "wt") as g:
        for line in f:
            cut = json.loads(line)
            for sup in cut["supervisions"]:
                (sup.get("custom") or {}).pop("durations", None)
            g.write(json.dumps(cut) + "\n")
    ms = tiny_release(tmp_path / "m", "mobilespeech")
    proc = oracle("--checkpoint", ms, "--cuts", bare, "--out-dir", tmp_path / "no")
    assert proc.returncode != 0 and "no cut of" in proc.stderr.strip().splitlines()[-1], proc.stderr
    assert not (tmp_path / "no" / "scores.json").exists()


def neighbours(*args):
    return subprocess.run([sys.executable, str(ROOT / "recipes" / "eval" / "neighbours.py"), "--threads", "1",
                           *map(str, args)], capture_output=True, text=True, timeout=600)


def test_neighbours_recipe_swaps_tokens_and_ranks_guesses(built, tmp_path):
    root, config, _ = built
    cuts = config.work_dir / "cuts_train.jsonl.gz"
    release = tiny_release(tmp_path, "mobilespeech")
    proc = neighbours("--cuts", cuts, "--codec", root / "codec", "--checkpoint", release, "--limit", 2,
                      "--ranks", 1, 3)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "layer 1 swapped, 2 cuts, WER of the resynthesis:"
    assert [line.split("\t")[0].strip() for line in lines[1:5]] == [
        "the cut's codes", "each token's nearest codeword no. 1", "each token's nearest codeword no. 3",
        "random tokens"]
    assert all(float(line.split("\t")[1]) >= 0 for line in lines[1:5])
    shares = [float(x.split(": ")[1]) for x in lines[5].split("nearest: ")[1].split("; ")[0].split(", ")]
    assert len(shares) == 3 and shares == sorted(shares) and shares[-1] <= 1.0, lines[5]
    bad = neighbours("--cuts", cuts, "--codec", root / "codec", "--layer", 9)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].endswith("--layer must be 1 to 8, got 9")
    # guided guesses: a line per scale, the unguided one as before; a model trained without the drop refuses
    bad = neighbours("--cuts", cuts, "--codec", root / "codec", "--checkpoint", release, "--ranks", 1,
                     "--guidance", 2)
    assert bad.returncode == 2 and "cannot follow --guidance" in bad.stderr.strip().splitlines()[-1], bad.stderr
    guided = tiny_release(tmp_path / "g", "mobilespeech", text_dropout=0.2)
    proc = neighbours("--cuts", cuts, "--codec", root / "codec", "--checkpoint", guided, "--limit", 2,
                      "--ranks", 1, 3, "--no-resynthesis", "--guidance", 0, 2)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2 and "(guidance 0)" in lines[0] and "(guidance 2)" in lines[1]
    assert lines[0].split(" frames")[0].endswith(lines[1].split(" frames")[0].split(": ")[-1])
    # prompted by other utterances: all frames, then the openings a prefix would hold and the rest apart
    proc = neighbours("--cuts", cuts, "--codec", root / "codec", "--checkpoint", release, "--limit", 12,
                      "--ranks", 1, "--no-resynthesis", "--prompt-free")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 3 and "(opening frames)" in lines[1] and "(the rest)" in lines[2], lines
    frames = [int(re.search(r": (\d+) frames, ", line).group(1)) for line in lines]
    assert frames[0] == frames[1] + frames[2] and min(frames) > 0
    alone = neighbours("--cuts", cuts, "--codec", root / "codec", "--checkpoint", release, "--limit", 1,
                       "--ranks", 1, "--no-resynthesis", "--prompt-free")
    assert alone.returncode != 0 and "has two utterances" in alone.stderr.strip().splitlines()[-1], alone.stderr
