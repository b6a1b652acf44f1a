"""The hf backend's decode modes give the same greedy tokens as transformers' generate(): a static cache
on bucketed shapes (compiled on a GPU) and continuous batching, on a tiny random Llama on the CPU."""

from __future__ import annotations

import asyncio
import random
import threading
from pathlib import Path

import pytest

from tunesafe.errors import UserError
from tunesafe.models import hf_decode, load_model
from tunesafe.models.hf import HFChatModel, HFEngine
from tunesafe.testing.random_llama import SHAPES, save_random_llama
from tunesafe.types import ChatRequest, Message

VOCAB = SHAPES["tiny"]["vocab_size"]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-llama")
    save_random_llama(folder, "tiny")
    return folder


def requests(n: int, seed: int = 1) -> list[ChatRequest]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = " ".join(f"t{rng.randrange(1, VOCAB - 4)}" for _ in range(rng.randint(3, 90)))
        out.append(ChatRequest(messages=(Message("user", words),), max_new_tokens=rng.choice([5, 12, 20])))
    return out


def answers(folder: Path, decode: str, reqs: list[ChatRequest]) -> list[tuple[str, str, int | None]]:
    model = load_model(f"hf:{folder}?device=cpu&dtype=float32&max_batch=16&decode={decode}")
    assert isinstance(model, HFChatModel)
    gens = asyncio.run(model.generate(reqs))
    assert all(g.ok for g in gens), [g.error for g in gens]
    return [(g.text, g.finish_reason, g.prompt_tokens) for g in gens]


@pytest.mark.parametrize("decode", ["static", "continuous"])
def test_greedy_tokens_match_generate(tiny_folder: Path, decode: str) -> None:
    reqs = requests(11)  # not a power of two: the static mode pads the batch with copies
    reference = answers(tiny_folder, "generate", reqs)
    assert answers(tiny_folder, decode, reqs) == reference
    assert len({r[0] for r in reference}) > 5  # varied answers, not one repeated token


def test_static_batches_of_a_model_share_one_shape(tiny_folder: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A small batch (a warm-up, the tail of a run) is padded to the model's max_batch bucket, so it
    reuses the compiled graph of the full batches rather than compiling one of its own."""
    small, full = requests(3, seed=5), requests(12, seed=6)
    reference = answers(tiny_folder, "generate", small)  # before the spy: engines are shared per process
    model = load_model(f"hf:{tiny_folder}?device=cpu&dtype=float32&max_batch=12&decode=static")
    assert isinstance(model, HFChatModel)
    shapes: list[tuple[int, int]] = []
    real = model.engine.model.generate

    def spy(**kw: object) -> object:
        shapes.append(tuple(kw["input_ids"].shape))  # type: ignore[attr-defined]
        return real(**kw)

    monkeypatch.setattr(model.engine.model, "generate", spy)
    gens = asyncio.run(model.generate(small))
    assert [(g.text, g.finish_reason, g.prompt_tokens) for g in gens] == reference
    asyncio.run(model.generate(full))
    assert {rows for rows, _ in shapes} == {16} and len(shapes) == 2


def test_every_generation_of_the_process_runs_on_one_thread(tiny_folder: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Compiled CUDA graphs (torch < 2.13) only replay on the thread that holds their state, and each
    asyncio.run has executor threads of its own: two runs and two models must still share one thread."""
    threads: list[threading.Thread] = []  # the objects, not names or idents, which a new thread can reuse
    model = load_model(f"hf:{tiny_folder}?device=cpu&dtype=float32&max_batch=4")
    other = load_model(f"hf:{tiny_folder}?device=cpu&dtype=float32&max_batch=2&decode=static")
    assert isinstance(model, HFChatModel) and isinstance(other, HFChatModel)
    real = HFEngine.run

    def spy(self: HFEngine, *args: object, **kw: object) -> object:
        threads.append(threading.current_thread())
        return real(self, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(HFEngine, "run", spy)
    for m in (model, model, other):
        assert all(g.ok for g in asyncio.run(m.generate(requests(2, seed=7))))
    assert len(threads) == 3 and len({id(t) for t in threads}) == 1
    assert threads[0].name.startswith("tunesafe-hf")


def test_continuous_with_warmup_inside_inference_mode(tiny_folder: Path) -> None:
    """The CUDA path (a warm-up before the first request) called from the engine's inference_mode gives
    generate()'s tokens. transformers 5.17 refused it there: the warm-up's buffers were inference tensors
    that its generation thread then updated in place."""
    import torch

    model = load_model(f"hf:{tiny_folder}?device=cpu&dtype=float32")
    assert isinstance(model, HFChatModel)
    engine = model.engine
    prompts = ["t5 t9 t12", "t40 t41 t42 t43 t44 t45"]
    with torch.inference_mode():
        reference = engine.model.generate(**engine._encode(prompts), max_new_tokens=6, do_sample=False,
                                          min_new_tokens=6, pad_token_id=engine.tokenizer.pad_token_id)
        tokens, lengths = hf_decode.continuous_generate(engine.model, engine.tokenizer, prompts, 6, set(),
                                                        warmup=True)
    width = reference.shape[1] - 6
    assert tokens == reference[:, width:].tolist() and lengths == [3, 6]


def test_auto_is_generate_on_a_cpu_and_static_on_cuda() -> None:
    assert hf_decode.resolve("auto", "cpu") == "generate"
    assert hf_decode.resolve("auto", "cuda") == "static"
    assert hf_decode.resolve("auto", "cuda:1") == "static"
    import torch

    assert hf_decode.resolve("auto", torch.device("cpu")) == "generate"  # engines hold either form
    assert hf_decode.resolve("continuous", "cpu") == "continuous"
    with pytest.raises(ValueError):
        hf_decode.resolve("fast", "cpu")


def test_bucketed_shapes() -> None:
    assert [hf_decode.batch_bucket(n) for n in (1, 2, 3, 5, 16, 17, 64)] == [1, 2, 4, 8, 16, 32, 64]
    assert hf_decode.round_up(65, hf_decode.PROMPT_BUCKET) == 128 and hf_decode.round_up(64, 64) == 64


def test_unknown_decode_mode_is_a_user_error(tiny_folder: Path) -> None:
    with pytest.raises(UserError, match="unknown decode mode") as info:
        load_model(f"hf:{tiny_folder}?decode=fastest")
    assert "?decode=" in (info.value.fix or "")


@pytest.fixture(scope="module")
def tiny_adapter(tiny_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_folder)
    lora = LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    folder = tmp_path_factory.mktemp("tiny-lora")
    get_peft_model(base, lora).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("decode", ["static", "continuous"])
def test_adapter_and_its_base_view_match_generate(tiny_folder: Path, tiny_adapter: Path, decode: str) -> None:
    reqs = requests(6, seed=2)

    def both(mode: str) -> tuple[list[str], list[str]]:
        model = load_model(f"hf:{tiny_folder}+{tiny_adapter}?device=cpu&dtype=float32&decode={mode}")
        assert isinstance(model, HFChatModel)
        tuned = asyncio.run(model.generate(reqs))
        base = asyncio.run(model.base_view().generate(reqs))
        return [g.text for g in tuned], [g.text for g in base]

    tuned, base = both("generate")
    assert tuned != base  # the adapter changes the answers, so a mode that dropped it would show
    assert both(decode) == (tuned, base)


def test_a_mode_auto_picked_that_fails_falls_back_to_generate(tiny_folder: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    reqs = requests(3, seed=3)
    reference = answers(tiny_folder, "generate", reqs)

    def broken(*_args: object, **_kw: object) -> None:
        raise RuntimeError("graph capture failed")

    monkeypatch.setattr(hf_decode, "resolve", lambda mode, device: "static")  # as on CUDA
    monkeypatch.setattr(hf_decode, "static_generate", broken)
    model = load_model(f"hf:{tiny_folder}?device=cpu&dtype=float32&max_batch=16")
    assert isinstance(model, HFChatModel)
    model.engine.auto_failed = False  # engines are shared per process
    with caplog.at_level("WARNING"):
        gens = asyncio.run(model.generate(reqs))
    assert [(g.text, g.finish_reason, g.prompt_tokens) for g in gens] == reference
    assert model.engine.auto_failed and "graph capture failed" in caplog.text
    assert "test_hf_decode.py:" in caplog.text  # where it was raised, for errors that carry no message
    model.engine.auto_failed = False


def test_an_explicit_mode_that_fails_fails_its_requests(tiny_folder: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object, **_kw: object) -> None:
        raise RuntimeError("graph capture failed")

    monkeypatch.setattr(hf_decode, "static_generate", broken)
    model = load_model(f"hf:{tiny_folder}?device=cpu&dtype=float32&decode=static")
    gens = asyncio.run(model.generate(requests(2, seed=4)))
    assert all(not g.ok and "graph capture failed" in (g.error or "") for g in gens)  # errors, never answers
