"""One model worker: a thread that runs jobs one at a time from a bounded queue.

The web server's handlers :meth:`Worker.submit` a job and wait for its future. A full queue refuses at once
(429 with a ``Retry-After`` estimate); a job whose deadline passed while it waited is never started; at
shutdown the running job finishes and the waiting ones fail with 503. No web code here.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable

from .protocol import RequestRefused


@dataclass
class WorkerStats:
    """Counts since start: ``submitted`` (accepted into the queue), ``refused`` (queue full or shutting down),
    ``completed`` (ran and returned), ``failed`` (ran and raised), ``expired`` (deadline passed in the queue),
    ``cancelled`` (the caller gave up before it started), ``dropped`` (failed at shutdown before starting)."""

    submitted: int = 0
    refused: int = 0
    completed: int = 0
    failed: int = 0
    expired: int = 0
    cancelled: int = 0
    dropped: int = 0
    busy_seconds: float = 0.0

    @property
    def ran(self) -> int:
        return self.completed + self.failed


@dataclass
class _Job:
    run: Callable[[], Any]
    deadline: float
    future: Future = field(default_factory=Future)


class Worker:
    """Runs submitted callables on one thread, in order.

    Args:
        max_queue: jobs that may wait besides the running one.
        name: the thread's name.
    """

    def __init__(self, max_queue: int, *, name: str = "quota-worker") -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be >= 1")
        self.max_queue = max_queue
        self.stats = WorkerStats()
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=max_queue)
        self._lock = threading.Lock()
        self._accepting = True
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def waiting(self) -> int:
        """Jobs in the queue, not counting the running one."""
        return self._queue.qsize()

    def retry_after(self) -> int:
        """Seconds a refused client should wait: the mean job time times the jobs ahead (at least 1)."""
        done = max(self.stats.ran, 1)
        return max(1, math.ceil(self.stats.busy_seconds / done * (self.waiting + 1)))

    def submit(self, run: Callable[[], Any], timeout: float) -> Future:
        """Queue ``run``; its future gets the result or the exception. ``timeout``: seconds the job may wait
        before it starts (it is never started after that).

        Raises:
            RequestRefused: 429 when the queue is full, 503 once shutdown began.
        """
        job = _Job(run, time.monotonic() + timeout)
        with self._lock:
            if not self._accepting:
                self.stats.refused += 1
                raise RequestRefused("the server is shutting down; send the request to another replica",
                                     status=503, kind="server_error", code="shutting_down",
                                     headers={"Retry-After": "1"})
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                raise self.busy() from None
            self.stats.submitted += 1
        return job.future

    def busy(self) -> RequestRefused:
        """The 429 refusal for a request that finds no room (counted in ``stats.refused``)."""
        self.stats.refused += 1
        return RequestRefused(f"the server is busy: {self.max_queue} requests are waiting; retry later",
                              status=429, kind="rate_limit_error", code="queue_full",
                              headers={"Retry-After": str(self.retry_after())})

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if not job.future.set_running_or_notify_cancel():
                self.stats.cancelled += 1
                continue
            if time.monotonic() >= job.deadline:
                self.stats.expired += 1
                job.future.set_exception(RequestRefused(
                    "the request waited longer than the server's --timeout in the queue", status=504,
                    kind="timeout_error", code="timeout"))
                continue
            start = time.perf_counter()
            try:
                result = job.run()
            except BaseException as exc:  # the caller decides what an error means
                self.stats.failed += 1
                job.future.set_exception(exc)
            else:
                self.stats.completed += 1
                job.future.set_result(result)
            finally:
                self.stats.busy_seconds += time.perf_counter() - start

    def close(self, wait: bool = True) -> None:
        """Stop accepting jobs, fail the waiting ones with 503, let the running one finish (``wait``: until it
        has)."""
        with self._lock:
            first = self._accepting
            self._accepting = False
            while True:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is not None and job.future.set_running_or_notify_cancel():
                    self.stats.dropped += 1
                    job.future.set_exception(RequestRefused(
                        "the server shut down before this request started; send it again", status=503,
                        kind="server_error", code="shutting_down", headers={"Retry-After": "1"}))
            if first:
                self._queue.put(None)  # the queue is empty now: this never blocks
        if wait and self._thread is not threading.current_thread():
            self._thread.join()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


__all__ = ["Worker", "WorkerStats"]
