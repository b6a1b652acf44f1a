"""Probes run their blocking calls on the caller's own thread (tunesafe.training.probes.run_coroutine):
a second thread running torch gives the OpenMP runtime a second team and throttles its spin-waiting."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

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


def test_the_live_models_batches_run_on_the_training_thread(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe's model batches are the calls run_coroutine keeps on the training thread: the hf
    backend's one model thread (for eval's compiled graphs) must not take them to a second OpenMP team."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunesafe.models.hf import HFEngine
    from tunesafe.testing.random_llama import save_random_llama
    from tunesafe.training.live_model import generation_mode, live_chat_model
    from tunesafe.types import ChatRequest, Message

    save_random_llama(tmp_path, "tiny")
    model, tokenizer = AutoModelForCausalLM.from_pretrained(tmp_path), AutoTokenizer.from_pretrained(tmp_path)
    threads: list[threading.Thread] = []
    real = HFEngine.run

    def spy(self: HFEngine, *args: object, **kw: object) -> object:
        threads.append(threading.current_thread())
        return real(self, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(HFEngine, "run", spy)
    live = live_chat_model(model, tokenizer, max_batch=2)
    request = ChatRequest(messages=(Message("user", "t5 t9 t12"),), max_new_tokens=3)
    with generation_mode(model, tokenizer):
        generations = run_coroutine(live.generate([request, request]))
    assert all(g.ok for g in generations), [g.error for g in generations]
    assert threads and all(t is threading.current_thread() for t in threads)
