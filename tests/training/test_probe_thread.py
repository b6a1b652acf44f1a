"""Probes run their blocking calls on the caller's own thread (tunesafe.training.probes.run_coroutine):
a second thread running torch gives the OpenMP runtime a second team and throttles its spin-waiting."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tunesafe.training.probes import run_coroutine


async def blocking_calls() -> list[str]:
    """The loop's thread, then the threads of two blocking calls (as the probe's model batches and the
    judge's embeddings make them)."""
    first = await asyncio.to_thread(lambda: threading.current_thread().name)
    second = await asyncio.get_running_loop().run_in_executor(None, lambda: threading.current_thread().name)
    return [threading.current_thread().name, first, second]


def test_blocking_calls_run_on_the_calling_thread() -> None:
    assert run_coroutine(blocking_calls()) == [threading.current_thread().name] * 3


def test_inside_a_running_loop_everything_runs_on_one_worker_thread() -> None:
    async def notebook() -> tuple[str, list[str]]:  # a Jupyter cell: a loop is already running
        return threading.current_thread().name, run_coroutine(blocking_calls())

    own, names = asyncio.run(notebook())
    assert names[0] == names[1] == names[2] != own


def test_an_error_in_a_blocking_call_reaches_the_caller() -> None:
    async def failing() -> None:
        await asyncio.to_thread(lambda: 1 / 0)

    with pytest.raises(ZeroDivisionError):
        run_coroutine(failing())
