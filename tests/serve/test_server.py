"""``tts serve`` as a process: its log, SIGTERM while a request is in flight (answered whole, exit 0), bad command
lines in one line, and the documented commands (README's and docs/serve.md's) run against a started server."""

from __future__ import annotations

import http.client
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.serve.process import ServerProcess
from tests.support import snippet
from tts import cli

ROOT = Path(__file__).resolve().parents[2]


def post(port: int, path: str, body: dict) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    return conn.getresponse()


@pytest.mark.slow
def test_sigterm_answers_the_request_in_flight_then_exits_0(tiny_valle, tmp_path):
    text = " ".join(f"Sentence {i}." for i in range(6))
    with ServerProcess(tiny_valle, tmp_path / "voices", "--max-batch", "1") as server:
        response = post(server.port, "/v1/audio/speech",
                        {"model": "valle", "input": text, "voice": "lj", "stream": True})
        assert response.status == 200 and response.getheader("X-Sentences") == "6"
        first = response.read1(65536)  # the header and the first sentence: the request is in flight
        server.process.send_signal(signal.SIGTERM)
        rest = response.read()
        assert server.stop() == 0
    samples = np.frombuffer((first + rest)[44:], "<i2")
    pauses = 5 * int(0.2 * 24000)
    assert samples.size > pauses + 6 * 320  # every sentence came, after the signal
    log = "\n".join(server.log)
    for line in (r"loading the .* model", r"listening on http://127\.0\.0\.1:\d+/", r"ready: model valle",
                 r"request [0-9a-f]{8} POST /v1/audio/speech -> 200 in \d+\.\d+ s: ok", r"shutting down",
                 r"stopped after \d+ batches", r"stopped by SIGTERM"):
        assert re.search(line, log), f"{line} not in the log:\n{log}"
    assert "Traceback" not in log


def run_cli(capsys, *argv) -> tuple:
    try:
        code = cli.main(["serve", *map(str, argv)])
    except SystemExit as exit:
        code = exit.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("argv, code, words", [
    (["--host", "0.0.0.0"], 2, "--api-key is required when --host is not a loopback address"),
    (["--port", "70000"], 2, "--port: must be between 0 and 65535"),
    (["--port", "http"], 2, "--port: expected an integer"),
    (["--max-batch", "0"], 2, "--max-batch"),
    (["--max-wait-ms", "nan"], 2, "--max-wait-ms"),
    (["--queue-size", "4"], 2, "--queue-size must be at least --max-batch"),
    (["--api-key", " "], 2, "--api-key must not be empty"),
    (["--checkpoint", "/nonexistent/release"], 1, "is not a usable model release"),
    (["--model", "tacotron"], 1, "unknown model 'tacotron'"),
])
def test_bad_command_lines_fail_in_one_line(capsys, tmp_path, argv, code, words):
    status, err = run_cli(capsys, *argv, "--voices-dir", tmp_path)
    assert status == code and words in err and len(err.strip().splitlines()) == 1, err


def test_a_busy_port_fails_in_one_line(tiny_valle, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "tts.cli", "serve", "--checkpoint", str(tiny_valle), "--port",
                               str(port), "--voices-dir", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(f"tts: error: cannot listen on 127.0.0.1:{port}")
    assert "Traceback" not in proc.stderr


def shell_lines(block: str) -> list:
    """The commands of a documented bash block: continuation lines joined, comment lines dropped."""
    return [line for line in block.replace("\\\n", " ").splitlines() if line.strip() and not line.startswith("#")]


def run_against(server: ServerProcess, lines: list, cwd: Path) -> None:
    """Documented commands with the documented address replaced by the started server's."""
    script = "set -euo pipefail\n" + "\n".join(lines).replace("127.0.0.1:8000", f"127.0.0.1:{server.port}")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def check_serve_line(line: str) -> None:
    """A documented ``tts serve`` line parses, and its settings pass the server's checks."""
    from tts.serve import ServeConfig

    args = cli.build_parser().parse_args(shlex.split(line.replace('"$LCTTS_API_KEY"', "k"), comments=True)[1:])
    ServeConfig(host=args.host, port=args.port, api_key=args.api_key, max_batch=args.max_batch,
                queue_size=args.queue_size).check()


def test_readme_serve_commands(tiny_valle, tmp_path):
    """README's block: the install line is CI's, ``tts serve`` is started (on the tiny model, a free port), the curl
    command runs against it and writes speech."""
    lines = shell_lines(snippet("bash", "tts serve", "curl"))
    assert lines[0].startswith("pip install") and lines[1].startswith("tts serve")
    check_serve_line(lines[1])
    shutil_copy_examples(tmp_path)
    with ServerProcess(tiny_valle, tmp_path / "voices") as server:
        run_against(server, lines[2:], tmp_path)
    audio, rate = sf.read(tmp_path / "hello.wav")
    assert rate == 24000 and audio.size > 0


def shutil_copy_examples(folder: Path) -> None:
    import shutil

    shutil.copytree(ROOT / "examples", folder / "examples")


def test_serve_page_commands(tiny_valle, tmp_path):
    """docs/serve.md: the ``tts serve`` lines parse and pass the checks; the curl script (list, upload, speak
    streamed, delete) runs against a started server."""
    for line in shell_lines(snippet("bash", "tts serve --model mobilespeech")):
        check_serve_line(line)
    shutil_copy_examples(tmp_path)
    with ServerProcess(tiny_valle, tmp_path / "voices") as server:
        run_against(server, shell_lines(snippet("bash", "curl", "/v1/voices", "DELETE")), tmp_path)
    audio, rate = sf.read(tmp_path / "long.wav")
    assert rate == 24000 and audio.size > 0
    assert list((tmp_path / "voices").iterdir()) == []  # the script deleted the voice it added


@pytest.mark.slow
def test_load_benchmark_command(tiny_valle):
    """docs/serve.md's load benchmark, small: a few requests, on the tiny model."""
    line = snippet("bash", "benchmarks/serve_load.py").strip()
    args = shlex.split(line)
    assert args[0] == "OMP_NUM_THREADS=1" and args[1] == "python"
    small = {"--requests": "30", "--clients": "4"}
    args = [small[args[i - 1]] if i and args[i - 1] in small else a for i, a in enumerate(args)]
    proc = subprocess.run([sys.executable, *args[2:], "--baseline", "4", "--warmup", "8", "--checkpoint",
                           str(tiny_valle)], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    for words in ("baseline, 1 client", "batching gain (4 clients over 1)", "responses by status", "server memory",
                  "[x] no 5xx but queue-full 503s", "[x] every valid request got audio",
                  "[x] every bad request got a 4xx", "exit status 0"):
        assert words in proc.stdout, proc.stdout
