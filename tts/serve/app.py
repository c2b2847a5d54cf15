"""The HTTP API and the page: ``create_app(config, synthesizer)`` is the ASGI application ``tts serve`` runs.

- ``POST /v1/audio/speech``: OpenAI's request (``model``, ``input``, ``voice``, ``response_format``, ``speed``) plus
  ``stream`` (send each sentence as soon as it is decoded; wav and pcm), ``seed`` (reproducible audio; such a
  request is decoded apart from others) and the decoding options of ``tts synthesize`` (``greedy``, ``temperature``,
  ``top_k``, ``top_p``, ``guidance``, ``steps``).
- ``GET/POST /v1/voices``, ``DELETE /v1/voices/{id}``: the voices (``tts.serve.voices``).
- ``GET /v1/models``, ``GET /health``, and the page at ``/``.

Every refusal is a 4xx (503 for a full queue) with an OpenAI-style JSON error of one line. ``/v1`` needs the bearer
key when the config has one.
"""

from __future__ import annotations

import hmac
import logging
import os
import tempfile
import threading
from contextlib import asynccontextmanager
from importlib import resources
from typing import AsyncIterator, List, Optional

import numpy as np
import soundfile as sf
import torch
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from tts import __version__
from tts.serve.batching import Batcher, Decoding, QueueFull, stats_dict
from tts.serve.config import ApiError, ServeConfig
from tts.serve.formats import FORMATS, encode, pcm16, wav_stream_header
from tts.serve.middleware import ServeMiddleware
from tts.serve.voices import Voice, VoiceStore, read_prompt_upload
from tts.models.sampling import SamplingConfig
from tts.synthesizer import DEFAULT_STEPS, SENTENCE_PAUSE_SECONDS, Sentence, Synthesizer, SynthesisError, \
    check_option, check_text, join_sentences

log = logging.getLogger("tts.serve")

OPENAI_MODELS = ("tts-1", "tts-1-hd")  # what OpenAI clients send by default: served by the one model loaded
MAX_TRANSCRIPT_CHARS = 500
DECODING = SamplingConfig()  # the defaults of the decoding options, as tts synthesize has them


class SpeechRequest(BaseModel):
    """The body of ``POST /v1/audio/speech``; strict types (``"1.0"`` is not a number), unknown fields ignored."""

    model_config = ConfigDict(strict=True)

    model: str
    input: str
    voice: str
    response_format: str = "wav"
    speed: float = 1.0
    stream: bool = False
    seed: Optional[int] = None
    greedy: bool = DECODING.greedy
    temperature: float = DECODING.temperature
    top_k: int = DECODING.top_k
    top_p: float = DECODING.top_p
    guidance: float = DECODING.guidance
    steps: int = DEFAULT_STEPS

    def sampling(self) -> SamplingConfig:
        return SamplingConfig(greedy=self.greedy, temperature=self.temperature, top_k=self.top_k, top_p=self.top_p,
                              guidance=self.guidance)


def create_app(config: ServeConfig, synthesizer: Synthesizer) -> ServeMiddleware:
    """The server for ``synthesizer`` (loaded once, by the caller): the FastAPI app inside the middleware that logs
    every request and bounds request bodies."""
    config.check()
    store = VoiceStore(config.voices_dir, config.builtin_voices, synthesizer.sample_rate)
    batcher = Batcher(synthesizer, config.max_batch, config.max_wait, config.queue_size)
    model_name = synthesizer.release.model_type
    transcribe_lock = threading.Lock()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        log.info("ready: model %s, %d voices (%s), formats %s, batches of up to %d sentences within %.0f ms, "
                 "queue of %d", model_name, len(store.list()), store.folder, ", ".join(FORMATS), config.max_batch,
                 config.max_wait * 1000, config.queue_size)
        yield
        log.info("shutting down: finishing %d queued sentence(s)", batcher.queued)
        batcher.stop()
        log.info("stopped after %d batches of %.2f sentences on average", batcher.stats.batches,
                 batcher.stats.mean_batch)

    app = FastAPI(title="Language-Codec TTS", version=__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None)  # the interactive docs load scripts from a CDN; /openapi.json stays
    _install_error_handlers(app)

    async def authorize(request: Request) -> None:
        if config.api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), config.api_key.encode()):
            raise ApiError(401, "this server needs its API key: send the header 'Authorization: Bearer KEY'",
                           headers={"WWW-Authenticate": "Bearer"})

    api = APIRouter(prefix="/v1", dependencies=[Depends(authorize)])

    def sentences_of(voice: Voice, text: str) -> List[Sentence]:
        """The text as the model's sentences in ``voice`` (the transcript comes first for models that read it)."""
        prompt_phonemes = synthesizer.phonemize(voice.transcript) if synthesizer.needs_prompt_text else []
        return synthesizer.prepare_sentences([text], prompt_phonemes)

    @api.post("/audio/speech")
    async def speech(body: SpeechRequest) -> Response:
        if body.model not in (model_name, *OPENAI_MODELS):
            raise ApiError(400, f"unknown model {body.model[:80]!r}: this server runs {model_name} (also accepted: "
                                f"{', '.join(OPENAI_MODELS)})", "model")
        fmt = FORMATS.get(body.response_format)
        if fmt is None:
            raise ApiError(400, f"unsupported response_format {body.response_format[:40]!r} (supported: "
                                f"{', '.join(FORMATS)})", "response_format")
        if body.stream and not fmt.streams:
            raise ApiError(400, f"stream is available for {', '.join(f.name for f in FORMATS.values() if f.streams)}"
                                f", not {fmt.name}", "stream")
        for name in ("speed", "seed", "temperature", "top_k", "top_p", "guidance", "steps"):
            value = getattr(body, name)
            try:
                if value is not None:
                    check_option(name, value)
            except SynthesisError as err:
                raise ApiError(400, str(err), name) from None
        if body.speed != 1.0 and not synthesizer.supports_speed:
            raise ApiError(400, f"speed is not supported by the {model_name} model (only 1.0)", "speed")
        if body.guidance and not synthesizer.supports_guidance:
            raise ApiError(400, f"guidance is not supported by this {model_name} model (only 0): it was not trained "
                                f"to predict without the text", "guidance")
        if not body.input.strip():
            raise ApiError(400, "input is empty", "input")
        voice = store.get(body.voice)
        request = batcher.begin()  # from here until the answer is made, a batch being gathered may wait for it
        try:
            try:
                check_text([body.input], config.max_chars)
                sentences = await run_in_threadpool(sentences_of, voice, body.input)
            except SynthesisError as err:
                raise ApiError(400, f"input: {err}", "input") from None
            chunks = [sentences[i: i + config.max_batch] for i in range(0, len(sentences), config.max_batch)]
            generator = torch.Generator().manual_seed(body.seed) if body.seed is not None else None
            try:
                futures = batcher.submit(request, voice, chunks, Decoding(body.sampling(), body.steps, body.speed),
                                         generator)
            except QueueFull as full:
                raise ApiError(503, str(full), headers={"Retry-After": str(full.retry_after)}) from None
        except BaseException:
            batcher.end(request)
            raise
        rate = synthesizer.sample_rate
        headers = {"X-Sentences": str(len(sentences))}
        if not body.stream:
            try:
                waves = [wav for future in futures for wav in await future]
                data = await run_in_threadpool(encode, join_sentences(waves, rate), rate, fmt)
            finally:
                batcher.end(request)
                for future in futures:
                    future.cancel()  # a no-op once done; frees the queue if this request was abandoned
            return Response(data, media_type=fmt.media_type, headers=headers)

        async def pieces() -> AsyncIterator[bytes]:
            """The header (wav), then each sentence as it is decoded, the usual pause before all but the first."""
            pause = pcm16(np.zeros(int(SENTENCE_PAUSE_SECONDS * rate), np.float32))
            try:
                if fmt.name == "wav":
                    yield wav_stream_header(rate)
                first = True
                for future in futures:
                    for wav in await future:
                        yield pcm16(wav) if first else pause + pcm16(wav)
                        first = False
            finally:
                batcher.end(request)
                for future in futures:
                    future.cancel()

        return StreamingResponse(pieces(), media_type=fmt.media_type, headers=headers)

    @api.get("/voices")
    async def list_voices() -> dict:
        return {"object": "list", "data": [v.public() for v in store.list()]}

    @api.post("/voices", status_code=201)
    async def add_voice(request: Request) -> dict:
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise ApiError(415, "send the prompt as multipart/form-data: a field 'file' (audio) and optionally "
                                "'transcript' and 'name'")
        try:
            form = await request.form(max_files=1, max_fields=4, max_part_size=64 * 1024)
        except HTTPException as err:  # python-multipart's parse errors, as Starlette reports them
            raise ApiError(400, f"malformed upload: {err.detail}") from None
        try:
            upload, transcript, name = form.get("file"), form.get("transcript", ""), form.get("name", "")
            if not isinstance(upload, UploadFile):
                raise ApiError(400, "the field 'file' (the prompt's audio) is missing", "file")
            if not isinstance(transcript, str) or not isinstance(name, str):
                raise ApiError(400, "'transcript' and 'name' must be text fields, not files")
            data = await upload.read()
        finally:
            await form.close()
        transcript, name = " ".join(transcript.split()), " ".join(name.split())
        if len(name) > 64:
            raise ApiError(400, f"name has {len(name)} characters; at most 64", "name")
        given = bool(transcript)
        wav = await run_in_threadpool(read_prompt_upload, data, synthesizer.sample_rate, given)
        if given:
            try:
                check_text([transcript], MAX_TRANSCRIPT_CHARS)
                await run_in_threadpool(synthesizer.phonemize, transcript)
            except SynthesisError as err:
                raise ApiError(400, f"transcript: {err}", "transcript") from None
        elif synthesizer.needs_prompt_text:
            transcript = await run_in_threadpool(transcribe, wav)
        voice = await run_in_threadpool(store.add, wav, transcript, name)
        log.info("voice %s added (%.1f s, %s)", voice.id, voice.seconds, "transcript given" if given
                 else "transcribed offline" if transcript else "no transcript")
        return voice.public()

    def transcribe(wav: np.ndarray) -> str:
        """The transcript of an upload without one, for a model that needs it (offline, pocketsphinx)."""
        with tempfile.TemporaryDirectory() as folder, transcribe_lock:
            path = os.path.join(folder, "prompt.wav")
            sf.write(path, wav, synthesizer.sample_rate)
            try:
                return synthesizer.transcribe_prompt(path, prompt_seconds=len(wav) / synthesizer.sample_rate)
            except SynthesisError as err:
                raise ApiError(400, f"the {model_name} model needs the prompt's transcript; give it in the field "
                                    f"'transcript' ({err})", "transcript") from None

    @api.delete("/voices/{voice_id}")
    async def delete_voice(voice_id: str) -> dict:
        voice = await run_in_threadpool(store.delete, voice_id)
        batcher.forget(voice)
        log.info("voice %s deleted", voice.id)
        return {"id": voice.id, "object": "voice", "deleted": True}

    @api.get("/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "languagecodec-tts"}
                                           for name in (model_name, *OPENAI_MODELS)]}

    app.include_router(api)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "version": __version__, "model": model_name, "sample_rate": synthesizer.sample_rate,
                "voices": len(store.list()), "formats": list(FORMATS), "auth": config.api_key is not None,
                "needs_transcript": synthesizer.needs_prompt_text, "speed": synthesizer.supports_speed,
                "guidance": synthesizer.supports_guidance, "steps": synthesizer.supports_steps,
                "max_chars": config.max_chars, "max_upload_bytes": config.max_upload_bytes,
                "batching": stats_dict(batcher)}

    page = resources.files("tts.serve") / "page"

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        return HTMLResponse(page.joinpath("index.html").read_text(encoding="utf-8"))

    app.mount("/page", StaticFiles(directory=str(page)), name="page")
    return ServeMiddleware(app, config)


def _install_error_handlers(app: FastAPI) -> None:
    """Every refusal as ``ApiError``'s JSON, with its one-line message kept for the request log."""

    def respond(request: Request, err: ApiError) -> JSONResponse:
        request.state.outcome = err.message
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError) -> JSONResponse:
        return respond(request, err)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        errors = err.errors()
        fields = [str(part) for part in errors[0].get("loc", ()) if part != "body"] if errors else []
        return respond(request, ApiError(400, validation_message(errors), fields[0] if fields else None))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        message = {404: f"no such endpoint: {request.method} {request.url.path}",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(err.status_code, str(err.detail))
        return respond(request, ApiError(err.status_code, message, headers=dict(err.headers or {})))

    @app.exception_handler(Exception)
    async def crashed(request: Request, err: Exception) -> JSONResponse:
        log.error("request %s failed: %r", getattr(request.state, "request_id", "?"), err)
        return respond(request, ApiError(500, "internal error; the server log has the details"))


def validation_message(errors: list) -> str:
    """pydantic's first complaint about a request body as one line (``malformed JSON: ...``, ``speed: ...``)."""
    if not errors:
        return "invalid request"
    first = errors[0]
    fields = [str(part) for part in first.get("loc", ()) if part != "body"]
    if first.get("type") == "json_invalid":
        return f"malformed JSON: {first.get('ctx', {}).get('error', first.get('msg'))}"
    if not fields:
        return f"the body must be a JSON object ({first.get('msg')})"
    return f"{'.'.join(fields)}: {first.get('msg')}" + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")

