"""Load test of ``tts serve``: concurrent clients against a server it starts on a free loopback port.

    python benchmarks/serve_load.py --requests 500 --clients 8

1. Starts ``tts serve`` (bundled model unless ``--checkpoint``/``--model``) and waits until it answers; warms it up
   with ``--warmup`` requests of the load's mix at full concurrency.
2. Baseline: one client sends ``--baseline`` valid requests, one after another.
3. Load: ``--clients`` clients send ``--requests`` requests in all, about ``--bad`` of them bad ones of every kind
   (malformed JSON, wrong types, unknown voice or model, unsupported format, text too long or unpronounceable, voice ids
   that try to escape their folder, uploads that are not audio, silent or too short).
4. SIGTERM while ``--clients`` requests are in flight: they must all be answered, and the server must exit 0.

Prints throughput, p50/p95 latency, the batching gain (valid requests per second under load over the baseline's),
every response by status, the server's memory (RSS) before and after the load, and the checks of ``docs/serve.md``.
Each request is bounded (``--timeout``) and so is their number: the script always stops by itself.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Result:
    kind: str  # "valid" or the kind of bad request
    status: int  # the last answer's; 0: no answer (connection refused or closed)
    seconds: float  # from the first try to the last answer
    audio_seconds: float = 0.0
    busy: int = 0  # 503 answers (queue full) before it, each followed by a wait of Retry-After seconds


def wav_bytes(samples: np.ndarray, rate: int = 24000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


def multipart(fields: Dict[str, str], file: bytes) -> Tuple[bytes, str]:
    boundary = "loadtestboundary7f3a"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="p.wav"\r\n'
                 f"Content-Type: audio/wav\r\n\r\n".encode() + file + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def bad_requests(model: str, voice: str) -> List[Tuple[str, str, str, bytes, str]]:
    """(kind, method, path, body, content type) of every kind of bad request; each must get a 4xx."""
    def speech(**fields) -> bytes:
        return json.dumps({"model": model, "input": "Hello.", "voice": voice, **fields}).encode()

    noise = 0.1 * np.sin(np.arange(12000) * 0.05)
    cases = [("malformed JSON", "/v1/audio/speech", b'{"model": "x", ', "application/json"),
             ("wrong type", "/v1/audio/speech", speech(input=42), "application/json"),
             ("unknown voice", "/v1/audio/speech", speech(voice="nobody"), "application/json"),
             ("escaping voice id", "/v1/audio/speech", speech(voice="../../etc/passwd"), "application/json"),
             ("unknown model", "/v1/audio/speech", speech(model="gpt-9"), "application/json"),
             ("unsupported format", "/v1/audio/speech", speech(response_format="aac"), "application/json"),
             ("text too long", "/v1/audio/speech", speech(input="word " * 600), "application/json"),
             ("unpronounceable text", "/v1/audio/speech", speech(input="\u4f60\u597d"), "application/json")]
    for kind, audio in (("upload not audio", b"this is not audio"), ("silent upload", wav_bytes(np.zeros(48000))),
                        ("upload under 1 s", wav_bytes(noise))):
        body, ctype = multipart({"transcript": "Hello there."}, audio)
        cases.append((kind, "/v1/voices", body, ctype))
    return [(kind, "POST", path, body, ctype) for kind, path, body, ctype in cases]


MAX_RETRIES = 10


class Client:
    """One keep-alive connection; sends a request and reads the whole answer, within ``timeout`` seconds. A 503 (queue
    full) is tried again after its Retry-After, as a well-behaved client does, at most ``MAX_RETRIES`` times."""

    def __init__(self, port: int, timeout: float):
        self.port, self.timeout = port, timeout
        self.conn: Optional[http.client.HTTPConnection] = None

    def send(self, kind: str, method: str, path: str, body: bytes, ctype: str) -> Result:
        start = time.monotonic()
        busy = 0
        while True:
            result, retry_after = self._send_once(kind, method, path, body, ctype)
            if result.status != 503 or busy >= MAX_RETRIES:
                result.seconds, result.busy = time.monotonic() - start, busy
                return result
            busy += 1
            time.sleep(min(retry_after, 10.0))

    def _send_once(self, kind: str, method: str, path: str, body: bytes, ctype: str) -> Tuple[Result, float]:
        start = time.monotonic()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            self.conn.request(method, path, body=body, headers={"Content-Type": ctype})
            response = self.conn.getresponse()
            data = response.read()
            if response.getheader("Connection", "").lower() == "close":
                self.close()
        except (OSError, http.client.HTTPException):
            self.close()
            return Result(kind, 0, time.monotonic() - start), 0.0
        audio = 0.0
        if response.status == 200 and data[:4] == b"RIFF":
            with wave.open(io.BytesIO(data)) as w:
                audio = w.getnframes() / w.getframerate()
        return Result(kind, response.status, time.monotonic() - start, audio), float(
            response.getheader("Retry-After") or 1)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def run_clients(port: int, clients: int, plan: List[Tuple[str, str, str, bytes, str]], timeout: float,
                on_result=None) -> Tuple[List[Result], float]:
    """Send ``plan`` with ``clients`` concurrent clients (each takes the next request when it is free)."""
    results: List[Result] = []
    lock = threading.Lock()
    position = [0]

    def work() -> None:
        client = Client(port, timeout)
        while True:
            with lock:
                if position[0] >= len(plan):
                    break
                item = plan[position[0]]
                position[0] += 1
            result = client.send(*item)
            with lock:
                results.append(result)
            if on_result is not None:
                on_result(result)
        client.close()

    start = time.monotonic()
    threads = [threading.Thread(target=work) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, time.monotonic() - start


def rss_mb(pid: int) -> float:
    """Resident memory of a process (Linux /proc), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(args: argparse.Namespace, voices: Path) -> Tuple[subprocess.Popen, int, List[str]]:
    cmd = [sys.executable, "-m", "tts.cli", "serve", "--port", "0", "--voices-dir", str(voices),
           "--max-batch", str(args.max_batch), "--queue-size", str(args.queue_size),
           "--max-wait-ms", str(args.max_wait_ms)]
    cmd += ["--checkpoint", str(args.checkpoint)] if args.checkpoint else []
    cmd += ["--model", args.model] if args.model else []
    server = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    log: List[str] = []
    port = [0]
    ready = threading.Event()

    def drain() -> None:  # the server's log, kept for the report; read all along so the pipe never fills
        for line in server.stderr:
            log.append(line.rstrip())
            found = re.search(r"listening on http://[^ ]*:(\d+)/", line)
            if found:
                port[0] = int(found.group(1))
            if " ready: " in line:
                ready.set()
        ready.set()

    threading.Thread(target=drain, daemon=True).start()
    if not ready.wait(300) or server.poll() is not None or not port[0]:
        server.kill()
        sys.exit("the server did not start:\n" + "\n".join(log[-20:]))
    return server, port[0], log


def percentile(values: List[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500, help="requests of the load phase (default 500)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--baseline", type=int, default=20, help="valid requests of the one-client baseline")
    parser.add_argument("--warmup", type=int, default=80, help="requests of the warm-up (the load's mix)")
    parser.add_argument("--bad", type=float, default=0.2, help="share of bad requests (default 0.2)")
    parser.add_argument("--text", default="Hello there.", help="what the valid requests say")
    parser.add_argument("--voice", default="lj", help="voice of the valid requests (default: built-in lj)")
    parser.add_argument("--checkpoint", type=Path, help="a release directory (default: the bundled model)")
    parser.add_argument("--model", help="bundled model type (default: valle)")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--queue-size", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=50.0)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one request may take")
    parser.add_argument("--no-sigterm", action="store_true", help="skip the SIGTERM phase")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as voices:
        server, port, log = start_server(args, Path(voices))
        try:
            model = json.loads(_get(port, "/health"))["model"]
            valid = ("valid", "POST", "/v1/audio/speech",
                     json.dumps({"model": model, "input": args.text, "voice": args.voice}).encode(),
                     "application/json")
            bad = bad_requests(model, args.voice)
            every = max(1, round(1 / args.bad)) if args.bad > 0 else 0
            plan = [bad[(i // every) % len(bad)] if every and i % every == every - 1 else valid
                    for i in range(args.requests)]
            # warm-up, the load's mix at full concurrency: the voice's prompt is encoded, and the allocators (PyTorch's,
            # the C library's arena per thread) reach the memory full batches and every handler thread use; they keep
            # what they freed, so growth after it is what the load itself adds
            run_clients(port, args.clients, plan[: args.warmup], args.timeout)
            base, base_wall = run_clients(port, 1, [valid] * args.baseline, args.timeout)
            before = rss_mb(server.pid)
            load, load_wall = run_clients(port, args.clients, plan, args.timeout)
            after = rss_mb(server.pid)
            batching = json.loads(_get(port, "/health"))["batching"]
            term = None if args.no_sigterm else sigterm_phase(server, port, valid, args)
        finally:
            if server.poll() is None:
                server.send_signal(signal.SIGTERM)
            code = server.wait(timeout=300)
    report(args, model, base, base_wall, load, load_wall, before, after, batching, term, code, log)
    return 0


def _get(port: int, path: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path)
    body = conn.getresponse().read().decode()
    conn.close()
    return body


def sigterm_phase(server: subprocess.Popen, port: int, valid, args: argparse.Namespace) -> Dict[str, object]:
    """``args.clients`` clients keep sending valid requests; SIGTERM goes out once they all are in flight (the first
    answer after that point). Requests answered after the signal were in flight when it came."""
    sent_signal: List[float] = []

    def on_result(result: Result) -> None:
        if not sent_signal:
            sent_signal.append(time.monotonic())
            server.send_signal(signal.SIGTERM)

    plan = [valid] * (3 * args.clients)
    results, _ = run_clients(port, args.clients, plan, args.timeout, on_result)
    code = server.wait(timeout=300)
    answered = [r for r in results[1:] if r.status == 200 and r.audio_seconds > 0]
    return {"answered_after": len(answered), "refused": sum(r.status == 0 for r in results),
            "other": sum(r.status not in (0, 200) for r in results), "exit": code}


def report(args, model, base, base_wall, load, load_wall, before, after, batching, term, code, log) -> None:
    base_ok = [r for r in base if r.status == 200 and r.audio_seconds > 0]
    valid = [r for r in load if r.kind == "valid"]
    valid_ok = [r for r in valid if r.status == 200 and r.audio_seconds > 0]
    bad = [r for r in load if r.kind != "valid"]
    base_rate = len(base_ok) / base_wall
    load_rate = len(valid_ok) / load_wall
    statuses = Counter(r.status for r in load)
    if any(r.busy for r in load):
        statuses[503] += sum(r.busy for r in load)  # answers that were tried again
    print(f"tts serve load test: model {model}, voice {args.voice}, text {args.text!r}, max batch {args.max_batch}, "
          f"queue {args.queue_size} sentences, max wait {args.max_wait_ms:g} ms, torch threads "
          f"{os.environ.get('OMP_NUM_THREADS', 'default')}")
    print(f"baseline, 1 client: {len(base_ok)}/{len(base)} valid requests answered with audio in {base_wall:.1f} s: "
          f"{base_rate:.2f} requests/s, latency p50 {percentile([r.seconds for r in base], 50):.2f} s, "
          f"p95 {percentile([r.seconds for r in base], 95):.2f} s")
    print(f"load, {args.clients} clients: {len(load)} requests ({len(valid)} valid, {len(bad)} bad) in "
          f"{load_wall:.1f} s: {len(load) / load_wall:.2f} requests/s, {load_rate:.2f} valid requests/s with audio")
    good_s, bad_ms = [r.seconds for r in valid_ok], [r.seconds * 1000 for r in bad]
    print(f"  latency of valid requests: p50 {percentile(good_s, 50):.2f} s, p95 {percentile(good_s, 95):.2f} s; bad "
          f"ones: p50 {percentile(bad_ms, 50):.0f} ms, p95 {percentile(bad_ms, 95):.0f} ms")
    print("  responses by status: " + ", ".join(f"{s or 'none'}: {n}" for s, n in sorted(statuses.items())))
    wrong = Counter(r.kind for r in bad if not 400 <= r.status < 500)
    print("  bad requests by kind: " + ", ".join(f"{k} {Counter(r.status for r in bad if r.kind == k).most_common()}"
                                                for k in sorted({r.kind for r in bad})))
    print(f"  server batches: {batching['batches']}, {batching['mean_batch']:.2f} sentences on average")
    gain = load_rate / base_rate if base_rate else float("nan")
    print(f"batching gain ({args.clients} clients over 1): {gain:.2f}x")
    growth = (after - before) / before * 100
    print(f"server memory (RSS): {before:.0f} MB before the load (after a warm-up of {args.warmup} requests at "
          f"{args.clients} clients, and the baseline), {after:.0f} MB after ({growth:+.1f} %)")
    if term is not None:
        print(f"SIGTERM with {args.clients} requests in flight: {term['answered_after']} answered with audio after "
              f"it (those in flight and those sent before the port closed), {term['refused']} refused (sent after "
              f"the port closed), {term['other']} other answers; exit status {term['exit']}")
    checks = {"no 5xx but queue-full 503s": all(s < 500 or s == 503 for s in statuses),
              "every valid request got audio": len(valid_ok) == len(valid),
              "every bad request got a 4xx": not wrong,
              "memory growth under 10 %": growth < 10,
              "batching gain of at least 2x": gain >= 2}
    if term is not None:
        checks["SIGTERM: in-flight requests answered, exit status 0"] = term["exit"] == 0 and term["other"] == 0
    for name, ok in checks.items():
        print(f"  [{'x' if ok else ' '}] {name}")
    if code not in (0, None):
        print(f"server exit status {code}; its last lines:\n" + "\n".join(log[-10:]))


if __name__ == "__main__":
    sys.exit(main())
