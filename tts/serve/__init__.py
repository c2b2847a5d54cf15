"""``tts serve``: an OpenAI-compatible HTTP API and a web page for zero-shot synthesis (the ``serve`` extra).

- ``tts.serve.config``: ``ServeConfig`` and ``ApiError``.
- ``tts.serve.voices``: built-in and uploaded voices, stored atomically.
- ``tts.serve.batching``: the worker thread that decodes requests that arrive together in one batch.
- ``tts.serve.formats``: response formats and streamed WAV.
- ``tts.serve.app``: the FastAPI app (``create_app``); ``tts.serve.middleware``: request log and body limits.
- ``tts.serve.server``: ``run(config)``, what the command runs; ``page/``: the page at ``/``.

Only ``config`` imports without the extra (FastAPI, uvicorn, python-multipart).
"""

from tts.serve.config import ApiError, ServeConfig

__all__ = ["ApiError", "ServeConfig"]
