"""The HTTP API in-process (FastAPI's TestClient) on a tiny model: audio in every format, streaming, voices that
survive a restart, every bad input answered with a one-line 4xx that leaves the server as it was, the API key."""

from __future__ import annotations

import io
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tts.models.sampling import SamplingConfig
from tts.serve.formats import FORMATS, UNKNOWN_SIZE

ROOT = Path(__file__).resolve().parents[2]
PROMPT = ROOT / "examples" / "prompt.wav"
TRANSCRIPT = (ROOT / "examples" / "prompt.txt").read_text().strip()
LJ, LJ_TRANSCRIPT = ROOT / "examples" / "lj.wav", (ROOT / "examples" / "lj.txt").read_text().strip()


def speech(client, **fields):
    return client.post("/v1/audio/speech", json={"model": "valle", "input": "Hello there.", "voice": "lj", **fields})


def wav_upload(samples: np.ndarray, rate: int = 24000) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples.astype(np.float32), rate, format="WAV")
    return buffer.getvalue()


def upload(client, data: bytes, **fields):
    return client.post("/v1/voices", files={"file": ("prompt.wav", data, "audio/wav")}, data=fields)


def assert_error(response, status: int, *words: str):
    """A JSON error of one line, of this status, naming each of ``words``."""
    assert response.status_code == status, response.text
    message = response.json()["error"]["message"]
    assert "\n" not in message and "Traceback" not in message
    for word in words:
        assert word in message, message


def test_health_voices_page_and_formats(make_client):
    client = make_client()
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model"] == "valle" and health["sample_rate"] == 24000
    assert health["steps"] is False and health["guidance"] is False  # VALL-E decodes frame by frame, unguided
    voices = client.get("/v1/voices").json()["data"]
    assert {"prompt", "lj", "vctk_p262"} <= {v["id"] for v in voices} and all(v["builtin"] for v in voices)
    page = client.get("/")
    assert page.status_code == 200 and "Synthesize" in page.text
    for asset in ("/page/page.js", "/page/page.css"):
        assert client.get(asset).status_code == 200
    for text in (page.text, client.get("/page/page.js").text, client.get("/page/page.css").text):
        assert "http://" not in text and "https://" not in text and "@import" not in text  # no CDN, no font
    assert {"wav", "flac", "pcm"} <= set(FORMATS)
    for name in FORMATS:
        response = speech(client, response_format=name, model="tts-1")  # OpenAI's model name is accepted
        assert response.status_code == 200 and response.headers["content-type"] == FORMATS[name].media_type
        if name == "pcm":
            audio = np.frombuffer(response.content, "<i2")
        else:
            audio, rate = sf.read(io.BytesIO(response.content))
            assert rate == 24000
        assert 0.05 < audio.size / 24000 < 10, name


def test_streaming_sends_each_sentence_and_seed_matches_the_python_api(make_client, synthesizer):
    client = make_client(max_batch=2)
    text = "First sentence here. Second one. And a third."
    with client.stream("POST", "/v1/audio/speech", json={"model": "valle", "input": text, "voice": "lj",
                                                         "stream": True, "seed": 7}) as response:
        assert response.status_code == 200 and response.headers["x-sentences"] == "3"
        pieces = list(response.iter_raw())
    body = b"".join(pieces)
    assert body[:4] == b"RIFF" and int.from_bytes(body[40:44], "little") == UNKNOWN_SIZE
    samples = np.frombuffer(body[44:], "<i2").astype(np.float32) / 32767
    # a seeded request is decoded apart from others, in batches of --max-batch: the Python API's audio, exactly
    prompt = synthesizer.prepare_prompt(LJ, LJ_TRANSCRIPT, 60)
    expected = synthesizer.synthesize(prompt, text, seed=7, batch_size=2, sampling=SamplingConfig())
    assert samples.size == expected.size and np.abs(samples - expected).max() < 2 / 32767
    whole = speech(client, input=text, seed=7)
    assert whole.status_code == 200
    np.testing.assert_allclose(sf.read(io.BytesIO(whole.content))[0], samples, atol=2 / 32767)
    assert_error(speech(client, stream=True, response_format="flac"), 400, "stream")


def test_decoding_options_are_those_of_the_python_api(make_client, synthesizer):
    client = make_client()
    text = "First sentence here. Second one."
    prompt = synthesizer.prepare_prompt(LJ, LJ_TRANSCRIPT, 60)

    def served(**options) -> np.ndarray:
        response = speech(client, input=text, **options)
        assert response.status_code == 200, response.text
        return sf.read(io.BytesIO(response.content))[0]

    sharp = served(seed=3, temperature=0.5, top_k=3, top_p=0.9)
    expected = synthesizer.synthesize(prompt, text, seed=3,
                                      sampling=SamplingConfig(temperature=0.5, top_k=3, top_p=0.9))
    assert sharp.size == expected.size and np.abs(sharp - expected).max() < 2 / 32767
    default = served(seed=3)
    assert default.size != sharp.size or np.abs(default - sharp).max() > 0.01  # the options are not ignored
    greedy = synthesizer.synthesize(prompt, text, sampling=SamplingConfig(greedy=True))
    for _ in range(2):  # greedy needs no seed
        np.testing.assert_allclose(served(greedy=True), greedy, atol=2 / 32767)
    assert client.get("/health").json()["guidance"] is False


def test_guidance_is_served_for_a_model_trained_for_it(tmp_path):
    from fastapi.testclient import TestClient

    from tests.support import tiny_release
    from tts.serve import ServeConfig
    from tts.serve.app import create_app
    from tts.synthesizer import Synthesizer

    guided = Synthesizer.from_pretrained(tiny_release(tmp_path / "release", "mobilespeech", text_dropout=0.2))
    with TestClient(create_app(ServeConfig(voices_dir=tmp_path / "voices"), guided)) as client:
        health = client.get("/health").json()
        assert health["guidance"] is True and health["steps"] is True
        response = speech(client, model="mobilespeech", seed=5, guidance=2.0, steps=4)
        assert response.status_code == 200, response.text
        prompt = guided.prepare_prompt(LJ, LJ_TRANSCRIPT, 60)
        expected = guided.synthesize(prompt, "Hello there.", seed=5, steps=4, sampling=SamplingConfig(guidance=2.0))
        audio = sf.read(io.BytesIO(response.content))[0]
        assert audio.size == expected.size and np.abs(audio - expected).max() < 2 / 32767
        assert_error(speech(client, model="mobilespeech", guidance=11), 400, "guidance", "between")


BAD_SPEECH = [  # (body, status, words of the message)
    ('{"model": "valle", ', 400, ["malformed JSON"]),
    ("[1, 2]", 400, ["JSON object"]),
    ('{"model": "valle", "voice": "lj"}', 400, ["input", "required"]),
    ('{"model": "valle", "input": 42, "voice": "lj"}', 400, ["input", "string"]),
    ('{"model": "valle", "input": "Hi.", "voice": "lj", "speed": "fast"}', 400, ["speed"]),
    ('{"model": "valle", "input": "Hi.", "voice": "lj", "stream": "yes"}', 400, ["stream"]),
    ('{"model": "valle", "input": "Hi.", "voice": "lj", "speed": 2.0}', 400, ["speed", "not supported"]),
    ('{"model": "valle", "input": "Hi.", "voice": "lj", "seed": -1}', 400, ["seed"]),
    ('{"model": "valle", "input": "Hi.", "voice": "lj", "temperature": 0}', 400, ["temperature", "above 0"]),
    ('{"model": "valle", "input": "Hi.", "voice": "lj", "temperature": "hot"}', 400, ["temperature"]),
    ('{"model": "valle", "input": "Hi.", "voice": "lj", "top_p": 1.5}', 400, ["top_p", "between"]),
    ('{"model": "valle", "input": "Hi.", "voice": "lj", "top_k": 2.5}', 400, ["top_k"]),
    ('{"model": "valle", "input": "Hi.", "voice": "lj", "steps": 0}', 400, ["steps", "between"]),
    ('{"model": "valle", "input": "Hi.", "voice": "lj", "greedy": "yes"}', 400, ["greedy"]),
    ('{"model": "valle", "input": "Hi.", "voice": "lj", "guidance": 1.0}', 400, ["guidance", "not supported"]),
    ('{"model": "gpt-9", "input": "Hi.", "voice": "lj"}', 400, ["unknown model", "valle"]),
    ('{"model": "valle", "input": "Hi.", "voice": "nobody"}', 404, ["no voice 'nobody'"]),
    ('{"model": "valle", "input": "Hi.", "voice": "../../etc/passwd"}', 400, ["not a voice id"]),
    ('{"model": "valle", "input": "Hi.", "voice": "lj", "response_format": "aac"}', 400, ["aac", "wav"]),
    ('{"model": "valle", "input": "   ", "voice": "lj"}', 400, ["empty"]),
    ('{"model": "valle", "input": "... !!!", "voice": "lj"}', 400, ["nothing pronounceable"]),
    ('{"model": "valle", "input": "\\u4f60\\u597d", "voice": "lj"}', 400, ["cannot speak"]),
    ('{"model": "valle", "input": "<speak>Hi</speak>", "voice": "lj"}', 400, ["markup"]),
    (json.dumps({"model": "valle", "input": "word " * 500, "voice": "lj"}), 400, ["2500 characters", "2000"]),
    ("x" * 100_000, 413, ["larger than"]),
]


def test_bad_speech_requests_get_one_line_4xx_and_change_nothing(make_client):
    client = make_client()
    for body, status, words in BAD_SPEECH:
        response = client.post("/v1/audio/speech", content=body, headers={"Content-Type": "application/json"})
        assert_error(response, status, *words)
    assert_error(client.get("/v1/nothing"), 404, "no such endpoint")
    assert_error(client.put("/v1/audio/speech"), 405, "not allowed")
    assert_error(client.delete("/v1/voices/%2E%2E"), 400, "not a voice id")
    assert_error(client.delete("/v1/voices/.env"), 400, "not a voice id")
    assert speech(client).status_code == 200  # the server is as it was
    assert client.get("/health").json()["batching"]["queued"] == 0


def test_uploaded_voices_are_used_listed_deleted_and_survive_a_restart(make_client, tmp_path):
    client = make_client()
    added = upload(client, PROMPT.read_bytes(), transcript=TRANSCRIPT, name="Reader")
    assert added.status_code == 201, added.text
    voice = added.json()
    assert voice["name"] == "Reader" and voice["transcript"] == TRANSCRIPT and 4.5 < voice["seconds"] < 5.3
    assert speech(client, voice=voice["id"]).status_code == 200
    assert sorted(p.name for p in (tmp_path / "voices").iterdir()) == [f"{voice['id']}.json", f"{voice['id']}.wav"]
    (tmp_path / "voices" / "v-0123456789ab.wav").write_bytes(b"left by an upload killed between its two writes")
    restarted = make_client()
    assert voice["id"] in {v["id"] for v in restarted.get("/v1/voices").json()["data"]}
    assert not (tmp_path / "voices" / "v-0123456789ab.wav").exists()
    assert restarted.delete(f"/v1/voices/{voice['id']}").json()["deleted"] is True
    assert_error(speech(restarted, voice=voice["id"]), 404, "no voice")
    assert_error(restarted.delete(f"/v1/voices/{voice['id']}"), 404, "no voice")
    assert_error(restarted.delete("/v1/voices/lj"), 403, "built-in")
    assert list((tmp_path / "voices").iterdir()) == []


def test_bad_uploads_get_one_line_4xx(make_client, monkeypatch):
    client = make_client(max_upload_bytes=400_000)
    rng = np.random.default_rng(0)
    speechlike = 0.1 * rng.standard_normal(24000 * 12)
    cases = [
        (upload(client, b"RIFF but not really audio"), 415, ["not audio"]),
        (upload(client, b""), 400, ["empty"]),
        (upload(client, wav_upload(np.zeros(48000))), 400, ["silent"]),
        (upload(client, wav_upload(np.concatenate([np.zeros(24000), speechlike[:12000]]))), 400, ["0.50 s", "1 s"]),
        (upload(client, wav_upload(speechlike[: 24000 * 4], 8000), transcript="Hello."), 400, ["12.0 s", "shorter"]),
        (upload(client, wav_upload(speechlike[:48000]), transcript="\u4f60\u597d"), 400, ["transcript", "speak"]),
        (upload(client, wav_upload(speechlike[:48000]), transcript="Hi.", name="n" * 80), 400, ["name"]),
        (upload(client, wav_upload(speechlike)), 413, ["upload", "larger than"]),
        (client.post("/v1/voices", json={"file": "x"}), 415, ["multipart/form-data"]),
        (client.post("/v1/voices", data={"transcript": "Hi."}, files={"other": ("a", b"1")}), 400, ["'file'"]),
    ]
    for response, status, words in cases:
        assert_error(response, status, *words)
    # VALL-E needs a transcript: without one the upload is transcribed offline, and refused when that fails
    from tts.synthesizer import SynthesisError

    def no_transcriber(*_, **__):
        raise SynthesisError("offline transcription needs the eval extras")

    monkeypatch.setattr("tts.synthesizer.Synthesizer.transcribe_prompt", no_transcriber)
    assert_error(upload(client, wav_upload(speechlike[:48000])), 400, "needs the prompt's transcript")
    assert client.get("/v1/voices").json()["data"] == make_client().get("/v1/voices").json()["data"]


def test_api_key(make_client):
    client = make_client(api_key="s3cret")
    assert_error(client.get("/v1/voices"), 401, "API key")
    assert_error(speech(client), 401, "Authorization: Bearer")
    assert client.get("/v1/voices", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert_error(client.get("/v1/voices", headers={"Authorization": "Bearer wrong"}), 401, "API key")
    assert client.get("/health").json()["auth"] is True  # the page learns that it must ask for the key
    with pytest.raises(ValueError, match="--api-key is required"):
        make_client(host="0.0.0.0")


def slow_decoding(monkeypatch, synthesizer, seconds: float) -> list:
    """Make each model call take at least ``seconds``; returns the list of the calls' batch sizes."""
    calls = []
    real = type(synthesizer).decode_batch

    def decode(self, prompt, sentences, *args, **kwargs):
        calls.append(len(sentences))
        time.sleep(seconds)
        return real(self, prompt, sentences, *args, **kwargs)

    monkeypatch.setattr(type(synthesizer), "decode_batch", decode)
    return calls


def test_requests_that_arrive_together_are_decoded_together(make_client, synthesizer, monkeypatch):
    client = make_client(max_batch=8, max_wait=0.3)
    calls = slow_decoding(monkeypatch, synthesizer, 0.2)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda voice: speech(client, voice=voice), ["lj"] * 6 + ["vctk_p262"] * 2))
    assert all(a.status_code == 200 for a in answers)
    assert sum(calls) == 8 and len(calls) < 6  # a batch holds one voice (the models take one prompt per batch)
    assert client.get("/health").json()["batching"]["mean_batch"] > 1.5


def test_requests_with_other_decoding_options_are_decoded_apart(make_client, synthesizer, monkeypatch):
    client = make_client(max_batch=8, max_wait=0.3)
    calls = slow_decoding(monkeypatch, synthesizer, 0.2)
    options = [{}] * 4 + [{"temperature": 0.7}] * 4
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda fields: speech(client, **fields), options))
    assert all(a.status_code == 200 for a in answers)
    assert sum(calls) == 8 and len(calls) >= 2 and max(calls) <= 4  # a batch holds one set of options


def test_a_full_queue_answers_503_with_retry_after(make_client, synthesizer, monkeypatch):
    client = make_client(max_batch=2, queue_size=2, max_wait=0.0)
    slow_decoding(monkeypatch, synthesizer, 0.3)
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: speech(client, input="One. Two."), range(6)))
    busy = [a for a in answers if a.status_code == 503]
    assert busy and all(a.status_code in (200, 503) for a in answers)
    assert all(int(a.headers["retry-after"]) >= 1 and "busy" in a.json()["error"]["message"] for a in busy)
    assert speech(client).status_code == 200 and client.get("/health").json()["batching"]["queued"] == 0
