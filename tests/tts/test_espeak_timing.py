"""Exact phoneme durations of synthetic espeak-ng speech (``tts.data.espeak_timing``) and their place in the data."""

from __future__ import annotations

import math
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
from lhotse import load_manifest_lazy

from tts.data.dataset import cut_codes
from tts.data.espeak_timing import (TimingMismatch, TimingWorker, espeak_cut_durations, espeak_speaker_name,
                                    frame_durations, parse_espeak_speaker, synthesize)
from tts.text import build_phonemizer, is_phone

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")

TEXT = "The birch canoe slid on the smooth planks, said Tom."
RATE, FRAME_RATE = 24000, 75


def frames_of(said) -> int:
    return math.ceil(len(said.audio) * FRAME_RATE / said.sample_rate)


@pytest.mark.parametrize("voice,pitch,rate", [("en-us+m3", 40, 150), ("en-gb-x-rp+f2", 70, 185), ("en+klatt", 30, 140)])
def test_the_library_says_what_the_command_line_says(tmp_path, voice, pitch, rate):
    """Sample for sample, whatever was said before in this process (each utterance starts from a fresh state)."""
    synthesize("Something else first, to leave state behind.", "en-029+m1", 60, 170)
    said = synthesize(TEXT, voice, pitch, rate)
    subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(rate), "-w", str(tmp_path / "x.wav"), TEXT],
                   check=True)
    cli, sample_rate = sf.read(tmp_path / "x.wav", dtype="int16")
    assert sample_rate == said.sample_rate and np.array_equal(cli, said.audio)
    starts = [sample for _, sample in said.phones]
    assert starts == sorted(starts) and starts[-1] <= len(said.audio)


def test_us_voice_is_timed_exactly_and_pauses_are_silent():
    tokens = build_phonemizer("espeak")([TEXT])[0]
    said = synthesize(TEXT, "en-us+m3", 40, 150)
    n = frames_of(said)
    timing = frame_durations(tokens, said, FRAME_RATE, n, min_exact=1.0)
    assert timing.exact == 1.0 and sum(timing.frames) == n and len(timing.frames) == len(tokens)
    assert all(f > 0 for t, f in zip(tokens, timing.frames) if is_phone(t))
    assert all(f == 0 for t, f in zip(tokens, timing.frames) if t in "ˈˌ")
    # The phones' frames are where the voice is; the pause after "planks," is where it is not.
    audio = np.asarray(said.audio, np.float64) / 32768
    ends = np.cumsum(timing.frames)

    def rms(i):
        a, b = (ends[i] - timing.frames[i]) * said.sample_rate // FRAME_RATE, ends[i] * said.sample_rate // FRAME_RATE
        return float(np.sqrt(np.mean(audio[a:b] ** 2)))

    pause = next(i for i in range(tokens.index(","), len(tokens)) if timing.frames[i] and not is_phone(tokens[i]))
    vowels = [i for i, t in enumerate(tokens) if t in ("ɜː", "uː", "æ", "ɛ", "ɑː")]
    assert rms(pause) < 0.1 * min(rms(i) for i in vowels)


def test_other_accents_are_timed_where_their_phones_match():
    """A Scottish voice says some words with other phones than the en-us frontend has (not one for one): the rest
    is still timed exactly, and the durations cover the audio whatever the match."""
    text = "The four doors of the car were hard to open."
    tokens = build_phonemizer("espeak")([text])[0]
    said = synthesize(text, "en-gb-scotland+m2", 40, 150)
    timing = frame_durations(tokens, said, FRAME_RATE, frames_of(said))
    assert 0.7 <= timing.exact < 1.0 and sum(timing.frames) == frames_of(said)
    with pytest.raises(TimingMismatch, match="phones match"):
        frame_durations(tokens, said, FRAME_RATE, frames_of(said), min_exact=1.0)
    other = build_phonemizer("espeak")(["A different sentence altogether."])[0]
    with pytest.raises(TimingMismatch):
        frame_durations(other, said, FRAME_RATE, frames_of(said), min_exact=0.8)


def test_speaker_names_round_trip_and_recordings_are_checked():
    for voice, pitch, rate in [("en-us+m3", 40, 150), ("en-gb-x-rp+klatt2", 70, 185)]:
        assert parse_espeak_speaker(espeak_speaker_name(voice, pitch, rate)) == (voice, pitch, rate)
    assert parse_espeak_speaker("p225") is None
    tokens = build_phonemizer("espeak")([TEXT])[0]
    speaker = espeak_speaker_name("en-us+m3", 40, 150)
    assert espeak_cut_durations("p225", TEXT, tokens, 24000, RATE, FRAME_RATE) is None
    said = synthesize(TEXT, "en-us+m3", 40, 150)
    samples = round(len(said.audio) * RATE / said.sample_rate)
    timing = espeak_cut_durations(speaker, TEXT, tokens, samples, RATE, FRAME_RATE, min_exact=1.0)
    assert sum(timing.frames) == math.ceil(samples * FRAME_RATE / RATE)
    with pytest.raises(TimingMismatch, match="samples"):  # not the recording espeak-ng would make of this text
        espeak_cut_durations(speaker, TEXT, tokens, samples + 2400, RATE, FRAME_RATE)


def test_the_worker_times_as_this_process_does_across_replaced_children():
    """``TimingWorker`` (a child process, replaced after every chunk here): the same timings, None for other speakers,
    a refusal returned in its place without ending the rest."""
    tokens = build_phonemizer("espeak")([TEXT])[0]
    speaker = espeak_speaker_name("en-gb-x-rp+f2", 70, 185)
    said = synthesize(TEXT, "en-gb-x-rp+f2", 70, 185)
    samples = round(len(said.audio) * RATE / said.sample_rate)
    good = (speaker, TEXT, tokens, samples, RATE, FRAME_RATE)
    requests = [good, ("p225", TEXT, tokens, samples, RATE, FRAME_RATE), (speaker, TEXT, tokens, samples + 2400, RATE,
                                                                          FRAME_RATE), good]
    with TimingWorker(chunk=1, recycle=1) as timer:
        results = list(timer.map(requests))
    expected = espeak_cut_durations(*good)
    assert results[0] == expected and results[3] == expected and results[1] is None
    assert isinstance(results[2], TimingMismatch) and "samples" in str(results[2])


@pytest.mark.slow
def test_prepared_espeak_cuts_carry_durations(built):
    """The smoke corpus: every espeak-ng utterance has durations, one per phoneme token, summing to its codes."""
    _, config, _ = built
    timed = 0
    for cut in load_manifest_lazy(config.work_dir / "cuts_train.jsonl.gz"):
        sup = cut.supervisions[0]
        if parse_espeak_speaker(sup.speaker) is None:
            assert "durations" not in sup.custom
            continue
        frames = [int(f) for f in sup.custom["durations"].split(" ")]
        assert len(frames) == len(sup.custom["phonemes"].split(" "))
        assert sum(frames) == cut_codes(cut).shape[0]
        assert 0.8 <= sup.custom["durations_exact"] <= 1.0
        timed += 1
    assert timed > 0
