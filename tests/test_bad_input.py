"""Bad input at the boundary: every case ends in one line on stderr with the exit status of the policy (2: a bad
command line, 1: input the command cannot use, 130: interrupted), no traceback and no output file.

The cases run in-process through ``tts.cli.main`` and are refused before any model is loaded; the Python API refuses
the same option values with ``SynthesisError``.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tts import cli
from tts.models.sampling import length_limits
from tts.synthesizer import LIMITS, SynthesisError, check_synthesis_options, check_text, split_sentences
from tts.text.normalize import normalize_text

ROOT = Path(__file__).resolve().parents[1]
PROMPT = ROOT / "examples" / "prompt.wav"

USAGE = [  # (arguments, what the message names); exit status 2
    (["--batch-size", "0"], "--batch-size: must be between 1 and 256"),
    (["--batch-size", "-2"], "--batch-size"),
    (["--batch-size", "abc"], "expected an integer"),
    (["--batch-size", "1e3"], "expected an integer"),
    (["--temperature", "nan"], "--temperature"),
    (["--temperature", "inf"], "--temperature"),
    (["--temperature", "-1"], "--temperature"),
    (["--temperature", "0"], "above 0"),
    (["--top-p", "2"], "--top-p"),
    (["--top-p", "0"], "above 0"),
    (["--top-p", "nan"], "--top-p"),
    (["--top-k", "-1"], "--top-k"),
    (["--top-k", "1.5"], "expected an integer"),
    (["--steps", "0"], "--steps"),
    (["--steps", "100000"], "--steps"),
    (["--speed", "inf"], "--speed"),
    (["--speed", "0"], "--speed"),
    (["--speed", "10"], "--speed"),
    (["--guidance", "-1"], "--guidance"),
    (["--guidance", "nan"], "--guidance"),
    (["--guidance", "11"], "--guidance"),
    (["--prompt-seconds", "nan"], "--prompt-seconds"),
    (["--prompt-seconds", "0.5"], "--prompt-seconds"),
    (["--prompt-seconds", "1000"], "--prompt-seconds"),
    (["--seed", "-1"], "--seed"),
    (["--seed", str(2 ** 64)], "--seed"),
    (["--max-chars", "0"], "--max-chars"),
    (["--bogus"], "unrecognized arguments: --bogus"),
]


def run(capsys, argv):
    """(exit status, stderr) of ``tts <argv>``; SystemExit from argparse counts as its code."""
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exit:
        code = exit.code
    err = capsys.readouterr().err
    return code, err


def assert_one_line(err: str):
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("extra,message", USAGE, ids=[" ".join(a) for a, _ in USAGE])
def test_bad_command_lines(capsys, tmp_path, extra, message):
    out = tmp_path / "out.wav"
    code, err = run(capsys, ["synthesize", "--prompt", PROMPT, "--text", "Hello.", "--out", out, *extra])
    assert code == cli.EXIT_USAGE
    assert_one_line(err)
    assert message in err and err.startswith(("tts synthesize: error:", "tts: error: unrecognized"))
    assert not out.exists()


def test_missing_required_option(capsys):
    code, err = run(capsys, ["synthesize", "--text", "Hello."])
    assert code == cli.EXIT_USAGE and "--prompt" in err
    assert_one_line(err)


def _inputs(tmp_path: Path):
    lines = tmp_path / "lines.txt"
    lines.write_text("One.\n\nThree.\n")
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n")
    return {
        "device": (["--text", "Hello.", "--device", "foo"], "is not a device name"),
        "device-cuda-absent": (["--text", "Hello.", "--device", "cuda:7"], "--device cuda:7"),
        "out-is-prompt": (["--text", "Hello.", "--out", PROMPT], "is one of the inputs"),
        "out-is-text-file": (["--text-file", lines, "--out", lines], "must be a folder"),
        "emoji": (["--text", "Good morning 😀"], "cannot speak: '😀'"),
        "cyrillic": (["--text", "Привет"], "cannot speak: 'П'"),
        "chinese": (["--text", "你好"], "cannot speak: '你'"),
        "arabic-digits": (["--text", "Room ٣"], "cannot speak"),
        "ssml": (["--text", 'Hello <break time="1s"/> there.'], "markup '<break"),
        "html": (["--text", "<b>bold</b> text"], "markup '<b>'"),
        "too-long": (["--text", "word " * 500], "limit is 2000"),
        "too-long-raised-still": (["--text", "word " * 500, "--max-chars", "100"], "limit is 100"),
        "text-file-too-long": (["--text-file", _write(tmp_path / "long.txt", "word. " * 400)], "limit is 2000"),
        "empty-text": (["--text", "   "], "the text is empty"),
        "blank-text-file": (["--text-file", blank], "has no text"),
        "missing-text-file": (["--text-file", tmp_path / "missing.txt"], "cannot read"),
        "bad-suffix": (["--text", "Hello.", "--out", tmp_path / "out.mp3"], "must end in .wav or .flac"),
        "missing-folder": (["--text", "Hello.", "--out", tmp_path / "no" / "out.wav"], "does not exist"),
        "out-is-folder": (["--text", "Hello.", "--out", _folder(tmp_path / "dir.wav")], "it is a folder"),
        "unknown-model": (["--text", "Hello.", "--model", "tacotron", "--out", tmp_path / "a.wav"], "unknown model"),
        "not-a-release": (["--text", "Hello.", "--checkpoint", tmp_path, "--out", tmp_path / "b.wav"],
                          "not a usable model release"),
    }


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


INPUT_CASES = ["device", "device-cuda-absent", "out-is-prompt", "out-is-text-file", "emoji", "cyrillic", "chinese",
               "arabic-digits", "ssml", "html", "too-long", "too-long-raised-still", "text-file-too-long",
               "empty-text", "blank-text-file", "missing-text-file", "bad-suffix", "missing-folder", "out-is-folder",
               "unknown-model", "not-a-release"]


@pytest.mark.parametrize("case", INPUT_CASES)
def test_bad_inputs(capsys, tmp_path, case, monkeypatch):
    monkeypatch.chdir(tmp_path)  # default output names land here, and must not appear
    args, message = _inputs(tmp_path)[case]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    prompt_bytes = PROMPT.read_bytes()
    code, err = run(capsys, ["synthesize", "--prompt", PROMPT, *args])
    assert code == cli.EXIT_ERROR, err
    assert_one_line(err)
    assert err.startswith("tts: error:") and message in err, err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written
    assert PROMPT.read_bytes() == prompt_bytes


def test_ctrl_c_is_one_line_and_130(capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "synthesize", interrupted)
    code, err = run(capsys, ["synthesize", "--prompt", PROMPT, "--text", "Hello."])
    assert code == cli.EXIT_INTERRUPTED
    assert_one_line(err)


def test_text_file_outputs_follow_line_numbers(tmp_path):
    """A blank line does not shift the numbering: line N is always NNNN.wav."""
    lines = tmp_path / "lines.txt"
    lines.write_text("One.\n\nThree.\n")
    args = cli.build_parser().parse_args(["synthesize", "--prompt", str(PROMPT), "--text-file", str(lines),
                                          "--out", str(tmp_path / "out")])
    assert [p.name for p in cli._outputs(args, ["One.", "Three."], [1, 3])] == ["0001.wav", "0003.wav"]


def test_api_refuses_the_same_values():
    from tts.models.sampling import SamplingConfig

    good = dict(sampling=SamplingConfig(), seed=1, batch_size=8, steps=16, speed=1.0, prompt_seconds=3.0)
    check_synthesis_options(**good)
    for change, name in [({"batch_size": 0}, "batch_size"), ({"steps": 10 ** 6}, "steps"),
                         ({"speed": math.inf}, "speed"), ({"prompt_seconds": math.nan}, "prompt_seconds"),
                         ({"seed": 2 ** 70}, "seed"), ({"batch_size": 2.5}, "batch_size"),
                         ({"sampling": SamplingConfig(top_p=2.0)}, "top_p"),
                         ({"sampling": SamplingConfig(temperature=-1.0)}, "temperature"),
                         ({"sampling": SamplingConfig(top_k=-1)}, "top_k"),
                         ({"sampling": SamplingConfig(guidance=math.nan)}, "guidance")]:
        with pytest.raises(SynthesisError, match=name):
            check_synthesis_options(**{**good, **change})
    with pytest.raises(SynthesisError, match="limit is 10"):
        check_text(["x" * 11], max_chars=10)
    check_text(["Naïve café, $5 & 10% off #1 @home: “quoted” — fine…"])


def test_work_is_bounded():
    # a 2,500-character sentence without punctuation becomes pieces of at most 40 words
    words = ("word " * 500).strip()
    pieces = split_sentences(words)
    assert max(len(p.split()) for p in pieces) <= 40 and sum(len(p.split()) for p in pieces) == 500
    # clauses are kept together where they fit
    assert split_sentences("A, b. " + ", ".join(["one two three four five six seven"] * 8))[1].endswith(",")
    # the length guard never exceeds 40 s, however many phonemes
    for n in (1, 100, 2_700, 50_000):
        low, high = length_limits(n, 75)
        assert 1 <= low < high <= 40 * 75
    # a 40-digit number is read digit by digit instead of failing
    spoken = normalize_text("Call 1234567890123456789012345678901234567890 now.")
    assert spoken.startswith("Call one two three four") and spoken.endswith("nine zero now.")


NUMERIC = {"--batch-size": "batch_size", "--temperature": "temperature", "--top-k": "top_k", "--top-p": "top_p",
           "--steps": "steps", "--speed": "speed", "--prompt-seconds": "prompt_seconds", "--seed": "seed",
           "--guidance": "guidance"}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(sorted(NUMERIC)),
       value=st.one_of(st.integers(-10 ** 25, 10 ** 25).map(str), st.floats(allow_nan=True).map(repr),
                       st.text(max_size=12)))
def test_fuzz_numeric_options(capsys, option, value):
    """Any value of a numeric option either parses within its range or ends in one line with status 2."""
    parser = cli.build_parser()
    try:
        args = parser.parse_args(["synthesize", "--prompt", "p.wav", "--text", "x", f"{option}={value}"])
    except SystemExit as exit:
        assert exit.code == cli.EXIT_USAGE
        err = capsys.readouterr().err
        assert_one_line(err)
        return
    parsed = getattr(args, NUMERIC[option].replace("-", "_"))
    low, high = LIMITS[NUMERIC[option]]
    assert math.isfinite(parsed) and low <= parsed <= high


# Recipes and releases ----------------------------------------------------------------------------------------------

def _recipe(tmp_path: Path, case: str):
    """(command line, message) of a recipe given a bad input."""
    import json

    config = tmp_path / "config.yaml"
    codec_train = [ROOT / "recipes" / "codec" / "train.py", "--config", config, "--train-cuts",
                   tmp_path / "cuts.jsonl.gz", "--out-dir", tmp_path / "run", "--wandb", "disabled"]
    tiny = "base: " + str(ROOT / "recipes" / "codec" / "configs" / "tiny.yaml") + "\n"
    run = tmp_path / "run"
    valle_train = [ROOT / "recipes" / "valle" / "train.py", "--config", ROOT / "recipes" / "valle" / "configs" /
                   "tiny.yaml", "--train-cuts", tmp_path / "cuts.jsonl.gz", "--out-dir", run, "--wandb", "disabled",
                   "--symbols", ROOT / "tts" / "assets" / "valle-mini" / "symbols.json"]
    cases = {
        "unknown-key": (tiny + "train: {bogus: 1}\n", codec_train, "no field 'train.bogus'"),
        "unknown-nested-key": (tiny + "codec: {decoder: {dimm: 8}}\n", codec_train, "codec.decoder.dimm"),
        "unknown-section": (tiny + "decoder: {dim: 8}\n", codec_train, "unknown section 'decoder'"),
        "invalid-yaml": (tiny + "train: [1, 2\n", codec_train, "is not valid YAML"),
        "checkpoint-every-0": (tiny + "train: {checkpoint_every: 0}\n", codec_train,
                               "train.checkpoint_every must be a positive int"),
        "negative-max-steps": (tiny + "train: {max_steps: -5}\n", codec_train, "train.max_steps"),
        "nan-learning-rate": (tiny + "train: {learning_rate: .nan}\n", codec_train, "train.learning_rate"),
        "unknown-preset": ("codec: huge\n", codec_train, "unknown preset 'huge'"),
        "missing-config": (None, codec_train, "cannot read config"),
        "missing-cuts": (tiny, codec_train, "cuts.jsonl.gz"),
        "bad-override": (tiny, codec_train + ["--set", "train.max_steps"], "SECTION.FIELD=VALUE"),
        "codec-export-missing-run": (None, [ROOT / "recipes" / "codec" / "export.py", "--run", run, "--out",
                                            tmp_path / "rel"], "train_config.json"),
        "codec-export-truncated": ("truncate", [ROOT / "recipes" / "codec" / "export.py", "--run", run, "--out",
                                                tmp_path / "rel"], "cannot read weights"),
        "valle-export-missing-run": (None, [ROOT / "recipes" / "valle" / "export.py", "--run", run, "--out",
                                            tmp_path / "rel"], "No such file or directory"),
        "evaluate-missing-codec": (None, [ROOT / "recipes" / "codec" / "evaluate.py", "--codec", tmp_path / "none",
                                          "--clips", tmp_path], "does not exist"),
        "valle-train-codec-mismatch": ("badcodec", valle_train + ["--codec", tmp_path / "codec"], "does not fit"),
        "valle-train-missing-symbols": (None, valle_train[:-2] + ["--symbols", tmp_path / "none.json", "--codec",
                                                                  "bundled"], "cannot read symbol table"),
    }
    text, argv, message = cases[case]
    if text == "truncate":  # a run whose checkpoint's weights were cut short
        ckpt = run / "checkpoints" / "step-00000004"
        ckpt.mkdir(parents=True)
        from codec.training import load_train_config

        train = load_train_config(ROOT / "recipes" / "codec" / "configs" / "tiny.yaml")
        (run / "train_config.json").write_text(json.dumps(train.to_dict()))
        (ckpt / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    elif text == "badcodec":  # a codec release whose config no longer fits its weights
        import shutil

        shutil.copytree(ROOT / "codec" / "assets" / "languagecodec-mini", tmp_path / "codec")
        data = json.loads((tmp_path / "codec" / "config.json").read_text())
        data["decoder"]["dim"] = 128
        (tmp_path / "codec" / "config.json").write_text(json.dumps(data))
    elif text is not None:
        config.write_text(text)
    return argv, message


RECIPE_CASES = ["unknown-key", "unknown-nested-key", "invalid-yaml", "checkpoint-every-0", "negative-max-steps",
                "nan-learning-rate", "unknown-preset", "missing-config", "missing-cuts", "bad-override",
                "codec-export-missing-run", "codec-export-truncated", "valle-export-missing-run",
                "evaluate-missing-codec", "valle-train-codec-mismatch", "valle-train-missing-symbols"]


@pytest.mark.slow
@pytest.mark.parametrize("case", RECIPE_CASES)
def test_recipes_refuse_bad_input(tmp_path, case):
    import subprocess
    import sys

    argv, message = _recipe(tmp_path, case)
    proc = subprocess.run([sys.executable, *map(str, argv)], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], proc.stderr[-2000:]
    assert not (tmp_path / "rel").exists() and not (tmp_path / "run" / "release").exists()


def _release_with(tmp_path: Path, change) -> Path:
    import shutil

    release = tmp_path / "release"
    shutil.copytree(ROOT / "tts" / "assets" / "valle-mini", release)
    change(release)
    return release


def _heads_zero(release: Path):
    import json

    data = json.loads((release / "config.json").read_text())
    data["config"]["transformer"]["heads"] = 0
    (release / "config.json").write_text(json.dumps(data))


@pytest.mark.parametrize("change,message", [
    (_heads_zero, "heads must be a positive integer"),
    (lambda r: (r / "symbols.json").write_text('["a", "b"]'), "expected an object"),
    (lambda r: (r / "config.json").write_text("{"), "cannot read"),
    (lambda r: (r / "model.safetensors").write_bytes(b"\x00" * 10), "cannot read weights"),
], ids=["heads-0", "symbols-list", "config-truncated", "weights-truncated"])
def test_bad_releases(capsys, tmp_path, change, message):
    release = _release_with(tmp_path, change)
    out = tmp_path / "out.wav"
    code, err = run(capsys, ["synthesize", "--prompt", PROMPT, "--text", "Hello.", "--checkpoint", release,
                             "--out", out])
    assert code == cli.EXIT_ERROR
    assert_one_line(err)
    assert message in err, err
    assert not out.exists()


EVALUATE_CASES = {  # manifest line(s) -> what the message names
    "audio-number": ('{"audio": 5}', "audio must be a string"),
    "text-list": ('{"audio": "a.wav", "text": ["x"]}', "text must be a string"),
    "row-list": ('["a.wav"]', "a row is a JSON object"),
    "unknown-field": ('{"audio": "a.wav", "bogus": 1}', "not a manifest row"),
    "missing-audio": ('{"audio": "missing.wav"}', "missing.wav does not exist"),
    "missing-reference": ('{"audio": "a.wav", "reference": "nope.wav"}', "reference"),
    "not-json": ('{"audio": ', "not a manifest row"),
    "empty": ("", "has no rows"),
}


@pytest.mark.parametrize("case", sorted(EVALUATE_CASES))
def test_evaluate_refuses_bad_manifests(capsys, tmp_path, case):
    import soundfile as sf

    sf.write(tmp_path / "a.wav", [0.0] * 24000, 24000)
    line, message = EVALUATE_CASES[case]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(line + "\n")
    code, err = run(capsys, ["evaluate", "--manifest", manifest, "--no-dnsmos", "--out", tmp_path / "scores.json"])
    assert code == cli.EXIT_ERROR
    assert_one_line(err)
    assert message in err, err
    assert not (tmp_path / "scores.json").exists()


def test_evaluate_checks_outputs_before_scoring(capsys, tmp_path):
    import soundfile as sf

    sf.write(tmp_path / "a.wav", [0.0] * 24000, 24000)
    for out, message in [(tmp_path / "no" / "s.json", "does not exist"), (tmp_path, "it is a folder")]:
        code, err = run(capsys, ["evaluate", "--audio", tmp_path / "a.wav", "--no-dnsmos", "--out", out])
        assert code == cli.EXIT_ERROR and message in err, err
        assert_one_line(err)
    code, err = run(capsys, ["evaluate", "--audio", tmp_path / "none.wav", "--no-dnsmos"])
    assert code == cli.EXIT_ERROR and "does not exist" in err


def test_temporaries_of_killed_writes_are_removed(tmp_path):
    """A write killed before its rename leaves a hidden temporary beside the target; the next write of that target
    removes it once it is stale, and leaves a fresh one (a write in progress) alone."""
    import os
    import time

    import torch

    from toolkit.audio import save_audio
    from toolkit.files import STALE_SECONDS

    target = tmp_path / "speech.wav"
    stale, fresh = tmp_path / ".speech.abcd1234.wav", tmp_path / ".speech.wxyz5678.wav"
    other = tmp_path / ".speech.notours.txt"
    for path in (stale, fresh, other):
        path.write_bytes(b"partial")
    old = time.time() - STALE_SECONDS - 10
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    save_audio(target, torch.zeros(2400), 24000)
    assert target.is_file() and not stale.exists() and fresh.exists() and other.exists()


@settings(max_examples=120, deadline=None)
@given(field=st.sampled_from(["batch_size", "max_steps", "checkpoint_every", "learning_rate", "segment_seconds",
                              "lr_warmup_steps", "grad_clip", "keep_checkpoints", "mixed_precision", "betas"]),
       value=st.one_of(st.integers(-10 ** 6, 10 ** 6), st.floats(allow_nan=True), st.text(max_size=8),
                       st.booleans(), st.none(), st.lists(st.floats(-2, 2), max_size=3)))
def test_fuzz_codec_train_config_values(field, value):
    """Any value of a train field either loads as a valid config or is refused with a ValueError naming the field."""
    import json

    from codec.training import TrainConfig, load_train_config
    from toolkit.runs import FIELD_KINDS

    override = f"train.{field}={json.dumps(value)}"
    try:
        config = load_train_config(ROOT / "recipes" / "codec" / "configs" / "tiny.yaml", [override])
    except ValueError as err:
        assert f"train.{field}" in str(err) or "override" in str(err), str(err)
        return
    loaded = getattr(config, field)
    kind = TrainConfig.FIELDS.get(field)
    if isinstance(kind, tuple):
        assert loaded in kind
    elif kind is not None:
        assert FIELD_KINDS[kind](loaded), (field, loaded)
    else:  # betas
        assert len(loaded) == 2 and all(0 <= b < 1 for b in loaded)


def test_a_codec_config_at_another_rate_is_refused(capsys, tmp_path):
    """The bundled model's codec with its config changed to 16 kHz: the release recorded the rates its codes have,
    so synthesis is refused instead of decoding at the wrong rate."""
    import json
    import shutil

    from tts.release import codec_source, load_token_model

    assets = tmp_path / "assets"
    shutil.copytree(ROOT / "tts" / "assets" / "valle-mini", assets / "valle-mini")
    # the codec the bundle names ("bundled" or a path), found as the synthesizer finds it
    shutil.copytree(codec_source(load_token_model(ROOT / "tts" / "assets" / "valle-mini").codec), assets / "codec")
    release_config = assets / "valle-mini" / "config.json"
    release = json.loads(release_config.read_text())
    release["codec"]["path"] = "../codec"  # a relative path, resolved from the release folder
    release_config.write_text(json.dumps(release))
    config = assets / "codec" / "config.json"
    data = json.loads(config.read_text())
    data["sample_rate"] = 16000
    config.write_text(json.dumps(data))
    out = tmp_path / "out.wav"
    code, err = run(capsys, ["synthesize", "--prompt", PROMPT, "--text", "Hello.", "--prompt-text", "Hello.",
                             "--checkpoint", assets / "valle-mini", "--out", out])
    assert code == cli.EXIT_ERROR
    assert_one_line(err)
    assert "runs at 16000 Hz" in err and "24000 Hz" in err, err
    assert not out.exists()


def test_training_data_that_fills_no_batch_is_refused():
    """A corpus smaller than one batch stops the run with a message instead of looping forever; one empty epoch (what
    a run resumed at the end of an epoch sees first) is fine."""
    from toolkit.runs import endless

    class Sampler:
        epoch = 0

        def set_epoch(self, epoch):
            self.epoch = epoch

    sampler = Sampler()

    class Loader:  # the rest of a finished epoch, then an epoch of two batches
        def __iter__(self):
            return iter([] if sampler.epoch == 0 else ["a", "b"])

    stream = endless(Loader(), sampler)
    assert [next(stream) for _ in range(3)] == ["a", "b", "a"]
    with pytest.raises(ValueError, match="fills no batch"):
        next(endless([], Sampler()))


@pytest.mark.slow
@pytest.mark.parametrize("text, named", [("eval:\n  clip: x\n", "eval.clip"),
                                         ("evaluation: {}\n", "'evaluation'"),
                                         ("token_models:\n  valle:\n    max_step: 3\n", "token_models.valle.max_step")])
def test_ablation_config_keys_are_checked(tmp_path, text, named):
    """The ablation recipe refuses a config key it does not read, naming it, before any stage runs."""
    import subprocess
    import sys

    (tmp_path / "c.yaml").write_text(text)
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "recipes" / "ablation" / "run.py"), "--config",
                           str(tmp_path / "c.yaml"), "--out-dir", str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1 and named in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "out").exists()
