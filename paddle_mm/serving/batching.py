"""Dynamic batching with a bounded queue: requests' rows are gathered into one model call per graph.

A request submits its already-preprocessed rows (pixels or token ids); one worker thread per graph takes
the first waiting request, waits up to ``max_wait_ms`` for more until ``max_batch`` rows, runs the model once
and hands each request its slice. The queue holds at most ``queue_size`` rows: a request that does not fit
is refused at once with :class:`Overloaded` (HTTP 429 + Retry-After), so memory stays bounded under any
load. Malformed input never reaches the queue (it is refused while preprocessing), so one bad request
cannot fail a batch.

With batching off (:class:`DirectRunner`) each request runs the model on its own, still bounded by
``queue_size`` rows in flight: the baseline ``benchmarks/bench_serving.py`` compares with. Either way one
thread per graph calls the model, so calls of a graph never overlap: each runtime call already uses every
core (``Model.threads`` intra-op threads), and overlapping calls would only oversubscribe them. The first
version ran unbatched calls concurrently from the shared thread pool (up to 6 calls x 2 threads on 2 cores),
which made the baseline both slower and noisier than one call at a time.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

ModelFn = Callable[[np.ndarray], np.ndarray]


class Overloaded(RuntimeError):
    """The queue is full: retry after ``retry_after`` seconds (HTTP 429)."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class Closed(RuntimeError):
    """The runner is shutting down or being replaced: retry (HTTP 503)."""


@dataclass
class _Job:
    rows: np.ndarray
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


class Batcher:
    """One worker thread per graph gathering rows from concurrent requests."""

    def __init__(
        self,
        fn: ModelFn,
        name: str,
        max_batch: int,
        max_wait_ms: float,
        queue_size: int,
        on_batch: Callable[[str, int, float], None] | None = None,
    ):
        self.fn, self.name = fn, name
        self.max_batch, self.max_wait = max_batch, max_wait_ms / 1000.0
        self.queue_size = queue_size
        self.on_batch = on_batch
        self._jobs: deque[_Job] = deque()
        self._rows = 0  # rows waiting
        self._cond = threading.Condition()
        self._closing = False
        self._busy_s = 0.01  # running mean of one model call, for Retry-After
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        return self._rows

    async def run(self, rows: np.ndarray) -> np.ndarray:
        loop = asyncio.get_running_loop()
        job = _Job(rows, loop, loop.create_future())
        with self._cond:
            if self._closing:
                raise Closed(f"{self.name} runner is shutting down")
            if self._rows and self._rows + len(rows) > self.queue_size:
                raise Overloaded(
                    f"{self.name} queue full ({self._rows} rows waiting, limit {self.queue_size})",
                    self.retry_after(),
                )
            self._jobs.append(job)
            self._rows += len(rows)
            self._cond.notify()
        return await job.future

    def retry_after(self) -> int:
        batches = max(1.0, self._rows / self.max_batch)
        return max(1, math.ceil(batches * self._busy_s))

    def _take(self) -> list[_Job] | None:
        with self._cond:
            while not self._jobs and not self._closing:
                self._cond.wait()
            if not self._jobs:
                return None  # closing and drained
            batch = [self._jobs.popleft()]
            rows = len(batch[0].rows)
            deadline = time.monotonic() + self.max_wait
            while rows < self.max_batch:
                if self._jobs:
                    if rows + len(self._jobs[0].rows) > self.max_batch:
                        break
                    batch.append(self._jobs.popleft())
                    rows += len(batch[-1].rows)
                    continue
                left = deadline - time.monotonic()
                if left <= 0 or self._closing:
                    break
                self._cond.wait(left)
            self._rows -= rows
            return batch

    def _loop(self) -> None:
        while (batch := self._take()) is not None:
            start = time.perf_counter()
            try:
                out = self.fn(np.concatenate([job.rows for job in batch]))
                error = None
            except Exception as err:
                out, error = None, err
            took = time.perf_counter() - start
            self._busy_s = 0.8 * self._busy_s + 0.2 * took
            if self.on_batch:
                self.on_batch(self.name, sum(len(j.rows) for j in batch), took)
            offset = 0
            for job in batch:
                n = len(job.rows)
                result = error if error is not None else out[offset : offset + n]
                offset += n
                job.loop.call_soon_threadsafe(_settle, job.future, result)

    def close(self, timeout: float = 30.0) -> None:
        """Refuse new work, finish what is queued, stop the worker."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)


def _settle(future: asyncio.Future, result) -> None:
    if future.cancelled():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


class DirectRunner:
    """Batching off: each request runs the model on its own rows, one call at a time per graph (bounded rows in
    flight), on the runner's own thread, like the :class:`Batcher`'s worker."""

    def __init__(
        self,
        fn: ModelFn,
        name: str,
        queue_size: int,
        on_batch: Callable[[str, int, float], None] | None = None,
        **_ignored,
    ):
        self.fn, self.name, self.queue_size, self.on_batch = fn, name, queue_size, on_batch
        self._rows = 0
        self._lock = threading.Lock()
        self._closing = False
        self._idle = threading.Condition(self._lock)
        self._worker = ThreadPoolExecutor(1, thread_name_prefix=f"direct-{name}")

    @property
    def depth(self) -> int:
        return self._rows

    async def run(self, rows: np.ndarray) -> np.ndarray:
        with self._lock:
            if self._closing:
                raise Closed(f"{self.name} runner is shutting down")
            if self._rows and self._rows + len(rows) > self.queue_size:
                raise Overloaded(f"{self.name}: {self._rows} rows in flight, limit {self.queue_size}", 1)
            self._rows += len(rows)
        try:
            out, took = await asyncio.get_running_loop().run_in_executor(self._worker, self._timed, rows)
            if self.on_batch:
                self.on_batch(self.name, len(rows), took)
            return out
        finally:
            with self._lock:
                self._rows -= len(rows)
                self._idle.notify_all()

    def _timed(self, rows: np.ndarray) -> tuple[np.ndarray, float]:
        """The model call and its own duration (not the wait for the worker: paddle_mm_batch_seconds is call time)."""
        start = time.perf_counter()
        return self.fn(rows), time.perf_counter() - start

    def close(self, timeout: float = 30.0) -> None:
        with self._lock:
            self._closing = True
            self._idle.wait_for(lambda: self._rows == 0, timeout)
        self._worker.shutdown(wait=False)


def build_runner(fn: ModelFn, name: str, batching: dict, on_batch=None) -> Batcher | DirectRunner:
    """A :class:`Batcher` or (``enabled: false``) a :class:`DirectRunner` from the ``Batching`` section."""
    if batching["enabled"]:
        return Batcher(fn, name, batching["max_batch"], batching["max_wait_ms"], batching["queue_size"], on_batch)
    return DirectRunner(fn, name, batching["queue_size"], on_batch)
