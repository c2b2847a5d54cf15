"""Dynamic batching: sentences of requests that arrive together, in one voice, are decoded in one model call.

Every request handler submits its sentences as jobs; one worker thread owns the model and runs them. The worker takes
the oldest job, then waits up to ``max_wait`` seconds (counted from when that job arrived) for more jobs of the same
voice and options, up to ``max_batch`` sentences, and decodes them together with ``Synthesizer.decode_batch``. The
models decode a batch of texts in one voice (``GenerationRequest`` has one acoustic prompt), so jobs of other voices
wait for the next round, in arrival order. At most ``queue_size`` sentences wait; a request that would overflow the
queue is refused whole (``QueueFull``), before any of it runs.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Deque, Dict, Hashable, List, Optional, Sequence

import numpy as np
import torch

from toolkit.memory import release_memory
from tts.models.sampling import SamplingConfig
from tts.serve.voices import Voice
from tts.synthesizer import Prompt, Sentence, Synthesizer

log = logging.getLogger("tts.serve")

PROMPT_CACHE = 32  # encoded voices kept; encoding one costs a codec pass over its prompt


class QueueFull(Exception):
    """The queue cannot take a request now; ``retry_after`` is a guess in whole seconds of when it can."""

    def __init__(self, retry_after: int):
        super().__init__(f"the server is busy; retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Decoding:
    """How a request's sentences are decoded (``Synthesizer.decode_batch``'s options): only jobs with equal options
    share a batch."""

    sampling: SamplingConfig
    steps: int
    speed: float


@dataclass
class Job:
    """Sentences of one request, in one voice, that must be decoded together or with others of the same ``key``."""

    request: object  # the token of ``Batcher.begin``
    voice: Voice
    sentences: Sequence[Sentence]
    decoding: Decoding
    generator: Optional[torch.Generator]  # a seeded request's own random source: it never shares a batch
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    arrived: float = field(default_factory=time.monotonic)

    @property
    def key(self) -> Hashable:
        return (self.voice.id, self.voice.audio, self.decoding, id(self.generator) if self.generator else None)


@dataclass
class BatchStats:
    """What the worker did so far (``GET /health`` shows it)."""

    batches: int = 0
    sentences: int = 0
    seconds: float = 0.0  # spent decoding

    @property
    def mean_batch(self) -> float:
        return self.sentences / self.batches if self.batches else 0.0


class Batcher:
    """The one worker thread that runs the model, and its bounded queue.

    Args:
        synthesizer: the model (used by the worker thread only).
        max_batch: sentences per model call at most. max_wait: seconds a batch waits to fill. queue_size: sentences
            waiting at most.
    """

    def __init__(self, synthesizer: Synthesizer, max_batch: int, max_wait: float, queue_size: int):
        self.synthesizer = synthesizer
        self.max_batch, self.max_wait, self.queue_size = max_batch, max_wait, queue_size
        self.stats = BatchStats()
        self._jobs: Deque[Job] = collections.deque()
        self._queued = 0  # sentences in _jobs
        self._active = 0  # requests between begin() and end()
        self._cond = threading.Condition()
        self._stopping = False
        self._prompts: "collections.OrderedDict[Hashable, Prompt]" = collections.OrderedDict()
        self._thread = threading.Thread(target=self._run, name="tts-batcher", daemon=True)

    @property
    def queued(self) -> int:
        return self._queued

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finish every queued job, then end the worker."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join()

    def forget(self, voice: Voice) -> None:
        """Drop a deleted voice's encoded prompt."""
        with self._cond:
            for key in [k for k in self._prompts if k[0] == voice.id]:
                del self._prompts[key]

    def begin(self) -> object:
        """A request starts (before its checks): batches being gathered may wait for it. Returns its token for
        ``submit``; ``end(token)`` must follow, once its answer is made or abandoned."""
        with self._cond:
            self._active += 1
        return object()

    def end(self, token: object) -> None:
        """The request ``token`` of ``begin`` is answered (or abandoned): batches no longer wait for it."""
        with self._cond:
            self._active -= 1
            self._cond.notify_all()

    def submit(self, request: object, voice: Voice, chunks: Sequence[Sequence[Sentence]], decoding: Decoding,
               generator: Optional[torch.Generator]) -> List[asyncio.Future]:
        """Queue a request's sentences, a job per chunk (each at most ``max_batch``), all or none; a future per chunk
        resolves to its waveforms. Raises ``QueueFull``."""
        loop = asyncio.get_running_loop()
        jobs = [Job(request, voice, chunk, decoding, generator, loop.create_future(), loop) for chunk in chunks]
        count = sum(len(chunk) for chunk in chunks)
        with self._cond:
            if self._stopping or self._queued + count > self.queue_size:
                raise QueueFull(self._retry_after(count))
            self._jobs.extend(jobs)
            self._queued += count
            self._cond.notify()
        return [job.future for job in jobs]

    def _retry_after(self, count: int) -> int:
        """Seconds until ``count`` more sentences would fit, from the mean time per sentence so far."""
        per_sentence = self.stats.seconds / self.stats.sentences if self.stats.sentences else 1.0
        return max(1, min(60, math.ceil((self._queued + count - self.queue_size) * per_sentence)))

    # The worker ---------------------------------------------------------------------------------------------------

    def _next_batch(self) -> Optional[List[Job]]:
        """The oldest job and the jobs of its key that fit in one batch, once it is full or has waited ``max_wait``;
        ``None`` when stopping with nothing left."""
        with self._cond:
            while not self._jobs:
                if self._stopping:
                    return None
                self._cond.wait()
            first = self._jobs.popleft()
            batch, size = [first], len(first.sentences)
            deadline = first.arrived + self.max_wait
            while size < self.max_batch:
                for job in [j for j in self._jobs if j.key == first.key]:
                    if size + len(job.sentences) <= self.max_batch:
                        self._jobs.remove(job)
                        batch.append(job)
                        size += len(job.sentences)
                left = deadline - time.monotonic()
                others = self._active - len({job.request for job in batch})  # they may still send sentences
                if size >= self.max_batch or left <= 0 or self._stopping or others <= 0:
                    break
                self._cond.wait(left)
            self._queued -= size
            return batch

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            live = [job for job in batch if not job.future.cancelled()]  # clients gone while their job waited
            if not live:
                continue
            start = time.monotonic()
            try:
                prompt = self._prompt(live[0].voice)
                sentences = [s for job in live for s in job.sentences]
                decoding = live[0].decoding
                audio = self.synthesizer.decode_batch(prompt, sentences, decoding.sampling, live[0].generator,
                                                      decoding.steps, decoding.speed)
            except Exception as err:  # noqa: BLE001 - the worker must outlive any one batch; the handler reports it
                log.exception("batch of %d sentence(s) failed", sum(len(j.sentences) for j in live))
                for job in live:
                    job.loop.call_soon_threadsafe(_fail, job.future, err)
                continue
            release_memory()
            seconds = time.monotonic() - start
            self.stats = BatchStats(self.stats.batches + 1, self.stats.sentences + len(sentences),
                                    self.stats.seconds + seconds)
            at = 0
            for job in live:
                n = len(job.sentences)
                job.loop.call_soon_threadsafe(_resolve, job.future, audio[at: at + n])
                at += n

    def _prompt(self, voice: Voice) -> Prompt:
        """The voice's encoded prompt, from the cache or encoded now (whole: voices are stored as they are used)."""
        key = (voice.id, voice.audio)
        with self._cond:
            prompt = self._prompts.get(key)
            if prompt is not None:
                self._prompts.move_to_end(key)
                return prompt
        prompt = self.synthesizer.prepare_prompt(voice.audio, voice.transcript, prompt_seconds=60.0)
        with self._cond:
            self._prompts[key] = prompt
            while len(self._prompts) > PROMPT_CACHE:
                self._prompts.popitem(last=False)
        return prompt


def _resolve(future: asyncio.Future, audio: List[np.ndarray]) -> None:
    if not future.done():
        future.set_result(audio)


def _fail(future: asyncio.Future, err: Exception) -> None:
    if not future.done():
        future.set_exception(err)


def stats_dict(batcher: Batcher) -> Dict[str, float]:
    """The batcher's state for ``GET /health``."""
    stats = batcher.stats
    return {"queued": batcher.queued, "queue_size": batcher.queue_size, "max_batch": batcher.max_batch,
            "batches": stats.batches, "sentences": stats.sentences, "mean_batch": round(stats.mean_batch, 2)}
