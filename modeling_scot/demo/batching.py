"""Concurrent calls answered in batches by one worker thread: whatever requests wait when it is free go together."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

Request = TypeVar("Request")
Result = TypeVar("Result")


class Batcher(Generic[Request, Result]):
    """Calls `run_batch` on up to `max_batch_size` requests at a time, always from the same worker thread.

    `run_batch` gets a list of requests and returns one result per request, in order; if it raises, every
    request of that batch gets the exception. Requests that arrive while a batch runs go into the next one.
    One thread doing all the work keeps the model (and its tokenizer) single-threaded, and keeps the memory
    that its runs allocate and cache in one place instead of one copy per calling thread.
    """

    def __init__(self, run_batch: Callable[[list[Request]], Sequence[Result]], max_batch_size: int, name: str = "batcher"):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        self._run_batch, self.max_batch_size, self._name = run_batch, max_batch_size, name
        self._waiting: queue.SimpleQueue[tuple[Request, Future]] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._starting = threading.Lock()

    def __call__(self, request: Request) -> Result:
        """The result of `request`, computed in a batch with the requests of other threads waiting meanwhile."""
        future: Future = Future()
        self._waiting.put((request, future))
        with self._starting:
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name=self._name, daemon=True)
                self._worker.start()
        return future.result()

    def _work(self) -> None:
        while True:
            batch = [self._waiting.get()]
            while len(batch) < self.max_batch_size:
                try:
                    batch.append(self._waiting.get_nowait())
                except queue.Empty:
                    break
            self._run(batch)

    def _run(self, batch: list[tuple[Request, Future]]) -> None:
        try:
            results = self._run_batch([request for request, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} requests gave {len(results)} results")
        except Exception as error:  # every caller of the batch gets the failure, and the worker goes on
            for _, future in batch:
                future.set_exception(error)
            return
        for (_, future), result in zip(batch, results):
            future.set_result(result)


__all__ = ["Batcher"]
