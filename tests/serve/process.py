"""``tts serve`` as a real process on a free loopback port, for the tests that need one (signals, the browser, the
documented curl commands)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[2]


class ServerProcess:
    """``with ServerProcess(checkpoint, voices_dir) as server: server.url ...``; stopped with SIGTERM on exit, its
    exit status in ``returncode`` and its log lines in ``log``.

    Args:
        args: more ``tts serve`` arguments.
    """

    def __init__(self, checkpoint: Path, voices_dir: Path, *args: str, startup_seconds: float = 120):
        self.command = [sys.executable, "-m", "tts.cli", "serve", "--checkpoint", str(checkpoint), "--port", "0",
                        "--voices-dir", str(voices_dir), *args]
        self.startup_seconds = startup_seconds
        self.log: List[str] = []
        self.port = 0
        self.returncode: Optional[int] = None
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "ServerProcess":
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        self.process = subprocess.Popen(self.command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        if not self._ready.wait(self.startup_seconds) or self.process.poll() is not None:
            self.process.kill()
            raise RuntimeError("tts serve did not start:\n" + "\n".join(self.log[-20:]))
        return self

    def _read_log(self) -> None:
        for line in self.process.stderr:
            self.log.append(line.rstrip())
            found = re.search(r"listening on http://127\.0\.0\.1:(\d+)/", line)
            if found:
                self.port = int(found.group(1))
            if " ready: " in line:
                self._ready.set()
        self._ready.set()

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, then the exit status once the process has ended."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.returncode = self.process.wait(timeout)
        self._reader.join(timeout)  # the last lines of the log
        return self.returncode

    def __exit__(self, *exc) -> None:
        try:
            self.stop()
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
