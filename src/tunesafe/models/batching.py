"""Micro-batching for local backends: concurrent `generate` calls (e.g. the engine's many workers,
each sending one attempt) are gathered into one batch for the model, which is far faster on a CPU or
GPU than one request at a time. Backend-agnostic: give it a blocking function that maps a list of items
to a list of results; it runs in a worker thread so the event loop stays responsive.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class MicroBatcher(Generic[Item, Result]):
    """Collects items from concurrent callers for up to `max_wait_s` (or until `max_batch` are waiting)
    and runs `run_batch` on them. Calls into `run_batch` never overlap (the model is not re-entrant),
    even across event loops, because they share `lock`. `executor` is where `run_batch` runs (default:
    the event loop's default executor, whose threads change from one event loop to the next)."""

    def __init__(self, run_batch: Callable[[list[Item]], list[Result]], *, max_batch: int = 8,
                 max_wait_s: float = 0.02, lock: threading.Lock | None = None,
                 executor: Executor | None = None) -> None:
        self.run_batch = run_batch
        self.executor = executor
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.lock = lock or threading.Lock()
        self._queue: asyncio.Queue[tuple[Item, asyncio.Future[Result]]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, items: Sequence[Item]) -> list[Result]:
        queue = self._ensure_worker()
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Result]] = []
        for item in items:
            future: asyncio.Future[Result] = loop.create_future()
            queue.put_nowait((item, future))
            futures.append(future)
        return list(await asyncio.gather(*futures))

    def _ensure_worker(self) -> asyncio.Queue[tuple[Item, asyncio.Future[Result]]]:
        loop = asyncio.get_running_loop()
        if self._queue is None or self._loop is not loop or self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._loop = loop
            self._worker = loop.create_task(self._work(self._queue))
        return self._queue

    async def _work(self, queue: asyncio.Queue[tuple[Item, asyncio.Future[Result]]]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            deadline = loop.time() + self.max_wait_s
            while len(batch) < self.max_batch:
                timeout = deadline - loop.time()
                if timeout <= 0 and queue.empty():
                    break
                try:
                    batch.append(queue.get_nowait() if not queue.empty()
                                 else await asyncio.wait_for(queue.get(), timeout))
                except (asyncio.TimeoutError, asyncio.QueueEmpty):
                    break
            live = [(item, fut) for item, fut in batch if not fut.cancelled()]
            if not live:
                continue
            try:
                results = await loop.run_in_executor(self.executor, self._locked_run, [i for i, _ in live])
            except Exception as exc:  # the batch failed as a whole: every caller gets the exception
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), result in zip(live, results, strict=True):
                if not fut.done():
                    fut.set_result(result)

    def _locked_run(self, items: list[Item]) -> list[Result]:
        with self.lock:
            results = self.run_batch(items)
        if len(results) != len(items):
            raise RuntimeError(f"batch function returned {len(results)} results for {len(items)} items")
        return results

    async def aclose(self) -> None:
        if self._worker is not None and self._loop is asyncio.get_running_loop():
            self._worker.cancel()
        self._worker = self._queue = self._loop = None
