"""What ``tts serve`` runs with (one frozen config, built by the command line or by a test) and the API's error."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

from tts.synthesizer import MAX_TEXT_CHARS

# examples/ of a source checkout: every NAME.wav there with its transcript NAME.txt is a built-in voice
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def default_voices_dir() -> Path:
    """Where uploaded voices live unless ``--voices-dir`` says otherwise: the user's data folder (XDG)."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "languagecodec-tts" / "voices"


@dataclass(frozen=True)
class ServeConfig:
    """Attributes:
        checkpoint, model, device: the model, as for ``tts synthesize`` (``None``: the bundled default).
        host, port: where to listen. api_key: the bearer token ``/v1`` requires (``None``: none; required off
            loopback, checked by ``check``).
        voices_dir: uploaded voices (created when missing). builtin_voices: the example prompts (``None``: none).
        max_batch: sentences decoded together at most. max_wait: seconds the first sentence of a batch waits for
            others to join it (while other requests are in flight). queue_size: sentences waiting at most; beyond it
            requests are answered 503.
        max_chars: longest input text. max_upload_bytes: largest voice upload.
    """

    checkpoint: Optional[Path] = None
    model: Optional[str] = None
    device: str = "cpu"
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: Optional[str] = None
    voices_dir: Path = field(default_factory=default_voices_dir)
    builtin_voices: Optional[Path] = EXAMPLES
    max_batch: int = 8
    max_wait: float = 0.05
    queue_size: int = 64
    max_chars: int = MAX_TEXT_CHARS
    max_upload_bytes: int = 10 * 2 ** 20

    def check(self) -> "ServeConfig":
        """This config, or a ``ValueError`` naming the first field out of range (one line for the user)."""
        if not 0 <= self.port <= 65535:
            raise ValueError(f"--port must be between 0 and 65535, got {self.port}")
        if not is_loopback(self.host) and not self.api_key:
            raise ValueError(f"--api-key is required when --host is not a loopback address (got {self.host})")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("--api-key must not be empty")
        if not 1 <= self.max_batch <= 256:
            raise ValueError(f"--max-batch must be between 1 and 256, got {self.max_batch}")
        if not 0 <= self.max_wait <= 10:
            raise ValueError(f"--max-wait-ms must be between 0 and 10000, got {self.max_wait * 1000:g}")
        if self.queue_size < self.max_batch:
            raise ValueError(f"--queue-size must be at least --max-batch ({self.max_batch}), got {self.queue_size}")
        if self.max_chars < 1 or self.max_upload_bytes < 1:
            raise ValueError("--max-chars and the upload limit must be positive")
        return self


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


class ApiError(Exception):
    """A request the API refuses: an HTTP status and a one-line message, sent as OpenAI-style JSON.

    Args:
        status: 4xx for the client's mistakes, 503 when the queue is full.
        message: what is wrong, for a person.
        param: the request field at fault, if one is.
        headers: extra response headers (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(self, status: int, message: str, param: Optional[str] = None,
                 headers: Optional[Dict[str, str]] = None):
        super().__init__(message)
        self.status, self.message, self.param, self.headers = status, message, param, headers or {}

    def body(self) -> Dict[str, object]:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.status}}
