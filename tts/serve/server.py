"""``tts serve``: load the model once, bind the port, run the app under uvicorn until SIGTERM or Ctrl-C.

SIGTERM (and the first Ctrl-C) shut down gracefully: the port stops accepting, requests in flight and their queued
sentences finish, then the process exits 0 (130 after Ctrl-C, the policy of every ``tts`` command).
"""

from __future__ import annotations

import logging
import signal
import socket
import sys

from tts.serve.config import ServeConfig
from tts.synthesizer import Synthesizer, SynthesisError

log = logging.getLogger("tts.serve")
GRACEFUL_SECONDS = 300  # in-flight requests get this long to finish after SIGTERM; a batch takes seconds


def listen(host: str, port: int) -> socket.socket:
    """A listening socket, bound before the app starts so that a busy port is one line, not a uvicorn traceback."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise SynthesisError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    sock.listen(2048)
    return sock


def run(config: ServeConfig) -> int:
    """Serve until stopped; returns the exit status. Bad settings, models and ports raise ``SynthesisError``."""
    try:
        import uvicorn

        from tts.serve.app import create_app
    except ImportError as err:
        raise SynthesisError(f"tts serve needs the serve extra (pip install -e '.[serve]'): {err}") from None
    try:
        config.check()
    except ValueError as err:
        raise SynthesisError(str(err)) from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s",
                        stream=sys.stderr)
    log.info("loading the %s model", config.model or (config.checkpoint or "bundled default"))
    synthesizer = Synthesizer.from_pretrained(config.checkpoint, config.model, config.device)
    app = create_app(config, synthesizer)
    sock = listen(config.host, config.port)
    host, port = sock.getsockname()[:2]
    log.info("listening on http://%s:%d/ (the page; the API under /v1)", f"[{host}]" if ":" in host else host, port)
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="warning", access_log=False,
                                           timeout_graceful_shutdown=GRACEFUL_SECONDS, lifespan="on"))
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again with the handler it found: this one, so
    # that the graceful stop ends with status 0 rather than death by signal.
    signal.signal(signal.SIGTERM, lambda *_: log.info("stopped by SIGTERM"))
    server.run(sockets=[sock])
    return 0 if server.started else 1
