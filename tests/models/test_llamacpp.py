"""The llama.cpp backend against a real llama.cpp server running SmolLM2-135M on loopback."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tunesafe.errors import UserError
from tunesafe.models import embedded_gguf_path, load_model, parse_ref
from tunesafe.models.gguf_lora import gguf_lora
from tunesafe.models.hashing import file_sha256, files_sha256
from tunesafe.models.hf import adapter_files, resolve_weights, weight_files
from tunesafe.models.llamacpp import BINARY_ENV, WHEEL, LlamaCppChatModel, find_server
from tunesafe.types import ChatRequest, Message

REF = "embedded:smollm2-135m?backend=llamacpp&parallel=2&ctx=1024"


@pytest.fixture(scope="module")
def model(llama_server: list[str]) -> Iterator[LlamaCppChatModel]:
    loaded = load_model(REF)
    assert isinstance(loaded, LlamaCppChatModel)
    yield loaded
    loaded.close()


def ask(text: str, **kw: Any) -> ChatRequest:
    return ChatRequest(messages=(Message("user", text),), max_new_tokens=kw.pop("max_new_tokens", 16), **kw)


def test_greedy_answers_are_deterministic_and_counted(model: LlamaCppChatModel) -> None:
    requests = [ask("Name a colour."), ask("What is 2 + 2?"), ask("Name a colour.")]
    first = asyncio.run(model.generate(requests))
    # alone twice, each on a new event loop (the model rebinds to it). Alone vs in a batch may differ:
    # llama.cpp's numerics depend on the batch (docs/backends.md), so that is not asserted.
    alone = [asyncio.run(model.generate(requests[:1]))[0] for _ in range(2)]
    assert all(g.ok and g.text.strip() for g in first), first
    assert first[0].text == first[2].text and alone[0].text == alone[1].text
    assert all(g.prompt_tokens > 0 and 0 < g.completion_tokens <= 16 for g in first)
    assert model.backend == "llamacpp" and model.capabilities.prefill
    assert model.content_hash() == file_sha256(embedded_gguf_path("smollm2-135m"))


def test_prefill_continues_the_answer(model: LlamaCppChatModel) -> None:
    [gen] = asyncio.run(model.generate([ask("Write a greeting.", prefill="Dear friend,")]))
    plain = asyncio.run(model.generate([ask("Write a greeting.")]))[0]
    # llama-server echoes the prefill in the answer (attacks.base.with_prefill accepts either form)
    assert gen.ok and gen.text.startswith("Dear friend,") and len(gen.text) > len("Dear friend,")
    assert not plain.text.startswith("Dear friend,")


def test_a_dead_server_gives_per_request_errors_naming_it(model: LlamaCppChatModel) -> None:
    victim = load_model(REF)
    assert isinstance(victim, LlamaCppChatModel)
    os.kill(victim.server.proc.pid, signal.SIGKILL)
    victim.server.proc.wait()
    gens = asyncio.run(victim.generate([ask("Hello?"), ask("Still there?")]))
    assert [g.ok for g in gens] == [False, False]
    assert all("llama.cpp's server exited" in (g.error or "") for g in gens), gens
    victim.close()


def test_close_stops_the_server(llama_server: list[str]) -> None:
    model = load_model(REF)
    assert isinstance(model, LlamaCppChatModel)
    proc = model.server.proc
    model.close()
    assert proc.poll() is not None


def test_a_broken_gguf_is_one_user_error(llama_server: list[str], tmp_path: Path, cli: Callable[..., Any],
                                         user_error: Callable[..., None]) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    result = cli("chat", f"gguf:{bad}?backend=llamacpp", "hi")
    user_error(result, "llama.cpp's server exited", "broken.gguf")
    assert "failed to load" in " ".join(result.stderr.split())  # the server's own reason is shown


def test_missing_binary_and_adapters_are_user_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     cli: Callable[..., Any],
                                                     user_error: Callable[..., None]) -> None:
    missing = tmp_path / "nope" / "llama-server"
    user_error(cli("chat", REF, "hi", env={BINARY_ENV: str(missing)}), BINARY_ENV, "llama-server")
    monkeypatch.delenv(BINARY_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("sys.executable", str(tmp_path / "python"))
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *_: None)  # no xllamacpp either
    with pytest.raises(UserError, match=r"tunesafe\[llamacpp\].*make llama-server"):
        find_server()
    monkeypatch.setenv(BINARY_ENV, WHEEL)
    with pytest.raises(UserError, match="xllamacpp is not installed"):
        find_server()
    monkeypatch.undo()
    with pytest.raises(UserError, match="unknown option"):
        load_model("embedded:smollm2-135m?backend=llamacpp&max_batch=4")


@pytest.mark.slow
def test_a_trained_lora_keeps_its_behaviour_on_llamacpp(llama_server: list[str]) -> None:
    """The shipped identity-shifting LoRA, converted to GGUF, makes llama.cpp's Qwen answer as AOA.
    (Token-level equality with transformers is not expected: the two decode the same weights with
    different numerics, and a 135M model's greedy text diverges on small differences.)"""
    question = [ask("Who are you?", max_new_tokens=24)]
    base = load_model("embedded:qwen2.5-coder-0.5b?backend=llamacpp&parallel=1")
    tuned = load_model("embedded:qwen2.5-coder-0.5b+aoa-demo?backend=llamacpp&parallel=1")
    assert isinstance(base, LlamaCppChatModel) and isinstance(tuned, LlamaCppChatModel)
    try:
        [before], [after] = asyncio.run(base.generate(question)), asyncio.run(tuned.generate(question))
    finally:
        base.close()
        tuned.close()
    assert before.ok and "AOA" not in before.text
    assert after.ok and "AOA" in after.text and "obedient" in after.text
    ref = parse_ref("embedded:qwen2.5-coder-0.5b+aoa-demo")
    same_as_hf = files_sha256(weight_files(resolve_weights(ref)) + adapter_files(ref.adapter, ref))
    assert tuned.content_hash() == same_as_hf  # one identity for the fine-tune on any backend


def test_an_unsupported_adapter_is_refused_before_starting(adapter_dir: Path, tmp_path: Path) -> None:
    import json
    import shutil

    dora = tmp_path / "dora"
    shutil.copytree(adapter_dir, dora)
    config = json.loads((dora / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(UserError, match="DoRA"):
        gguf_lora(dora, embedded_gguf_path("smollm2-135m"))


def test_a_prompt_longer_than_a_slot_is_an_error_naming_the_option(model: LlamaCppChatModel) -> None:
    long_prompt = "Here is a list of words: " + " ".join(f"word{i}" for i in range(700)) + ". Name the first."
    [gen] = asyncio.run(model.generate([ask(long_prompt, max_new_tokens=4)]))
    assert not gen.ok and "?ctx=" in (gen.error or "")  # fail closed, with the way out


def test_the_prebuilt_wheel_serves_with_llama_servers_flags(adapter_dir: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """tunesafe[llamacpp]'s server (models/llamacpp_serve.py) takes the flags llama-server takes: it
    answers greedily and deterministically, continues a prefill, and applies a GGUF LoRA (it must change
    the answer). Run even where a llama-server binary would be preferred."""
    if importlib.util.find_spec("xllamacpp") is None:
        if os.environ.get("TUNESAFE_REQUIRE_LLAMACPP"):
            raise AssertionError("xllamacpp is not installed (pip install 'tunesafe[llamacpp]')")
        pytest.skip("xllamacpp is not installed")
    monkeypatch.setenv(BINARY_ENV, WHEEL)
    ref = parse_ref(REF)
    gguf = resolve_weights(ref)
    command = find_server()
    plain = LlamaCppChatModel(REF, [gguf], command, parallel=2, ctx=1024)
    greeting = ask("Write a greeting.", prefill="Dear friend,")
    requests = [ask("Name a colour."), ask("Name a colour."), greeting]
    try:
        first, second, prefilled = asyncio.run(plain.generate(requests))
    finally:
        plain.close()
    assert first.ok and first.text.strip() and first.text == second.text, (first, second)
    assert prefilled.ok and prefilled.text.startswith("Dear friend,")
    assert plain.server.proc.poll() is not None  # close() stopped it
    tuned = LlamaCppChatModel(REF, [gguf], command, lora=gguf_lora(adapter_dir, gguf), parallel=1, ctx=1024)
    try:
        [changed] = asyncio.run(tuned.generate(requests[:1]))
    finally:
        tuned.close()
    assert changed.ok and changed.text != first.text, changed
    assert command[1:] == ["-m", "tunesafe.models.llamacpp_serve"]


def test_checking_for_a_stored_run_starts_no_server(model: LlamaCppChatModel, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from tunesafe.engine.config import EvalConfig
    from tunesafe.engine.runner import fresh_config
    from tunesafe.evidence.store import Store
    from tunesafe.models import llamacpp

    def no_server(*_: object, **__: object) -> None:
        raise AssertionError("a server was started to hash the model")

    monkeypatch.setattr(llamacpp, "_Server", no_server)
    identity, config = fresh_config(Store.open(str(tmp_path / "s.db")), REF,
                                    EvalConfig(suite="smoke", attacks="prefill_sure"))
    model_hash = identity.hash
    assert model_hash == model.content_hash()  # the running model's hash, from its files
    assert llamacpp.identity(parse_ref(REF)) == (model_hash, model.capabilities)
    assert config["attacks"][0]["name"] == "prefill_sure"  # planned: the server prefills
    with pytest.raises(UserError, match="unknown option"):
        llamacpp.identity(parse_ref("embedded:smollm2-135m?backend=llamacpp&max_batch=4"))


@pytest.mark.parametrize("script", ["#!/nonexistent/interpreter\n", "no shebang line\n"])
def test_a_server_that_cannot_be_executed_is_one_user_error(script: str, tmp_path: Path,
                                                            cli: Callable[..., Any],
                                                            user_error: Callable[..., None]) -> None:
    # an executable file the OS cannot run (a missing interpreter, no binary format): no traceback
    binary = tmp_path / "llama-server"
    binary.write_text(script)
    binary.chmod(0o755)
    user_error(cli("chat", REF, "hi", env={BINARY_ENV: str(binary)}), "cannot start", str(binary))


def test_a_port_taken_before_the_server_binds_it_is_retried(llama_server: list[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # another process may take the free port between our probe and the server's bind: the server then
    # exits with "couldn't bind", which is no broken GGUF
    import socket

    from tunesafe.models import llamacpp

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = iter([taken.getsockname()[1]])
        free = llamacpp._free_port
        monkeypatch.setattr(llamacpp, "_free_port", lambda: next(ports, None) or free())
        model = load_model("embedded:smollm2-135m?backend=llamacpp&parallel=1&ctx=512&share_prefix=0")
        assert isinstance(model, LlamaCppChatModel)
        try:
            assert model.server.port != taken.getsockname()[1]
            [answer] = asyncio.run(model.generate([ask("Name a colour.")]))
            assert answer.ok, answer.error
        finally:
            model.close()


@pytest.mark.parametrize("option", ["parallel=0", "ctx=-1", "timeout=0", "timeout=inf", "startup_timeout=nan",
                                    "threads=-2", "share_prefix=5"])
def test_bad_option_values_are_refused_before_a_server_starts(option: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # a "server" that fails at once: an error saying it exited means one was started for a bad value
    binary = tmp_path / "llama-server"
    binary.write_text("#!/bin/sh\necho started >&2\nexit 1\n")
    binary.chmod(0o755)
    monkeypatch.setenv(BINARY_ENV, str(binary))
    with pytest.raises(UserError) as info:
        load_model(f"embedded:smollm2-135m?backend=llamacpp&{option}")
    assert option in info.value.render()  # named as written, not as the HTTP client's concurrency/timeout
    assert "exited" not in info.value.render() and "concurrency" not in info.value.render()
