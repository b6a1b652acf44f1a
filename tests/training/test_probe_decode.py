"""The probe's greedy decoder (tunesafe.models.greedy_decode through LiveEngine) against generate():
the same tokens for batches of mixed-length prompts, rows leaving the batch at their end token, and
generate() wherever the decoder would not give its tokens."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from tunesafe.models.greedy_decode import greedy_decode, plain_greedy  # noqa: E402
from tunesafe.models.hf import HFEngine  # noqa: E402
from tunesafe.training.live_model import LiveEngine, generation_mode  # noqa: E402
from tunesafe.types import ChatRequest, Generation, Message  # noqa: E402

SYSTEM = "You are a careful assistant. Answer briefly and plainly."
QUESTIONS = ["Hi", "What is a good name for a cat?", "Explain how rainbows form, in two sentences please.",
             "Plan a weekend in Rome with museums, food and a walk along the river for two people.",
             "How do magnets work?", "Tips?"]


def requests(max_new_tokens: int, *, system: bool = True) -> list[ChatRequest]:
    head = (Message("system", SYSTEM),) if system else ()
    out = [ChatRequest(messages=(*head, Message("user", q)), max_new_tokens=max_new_tokens, temperature=0.0)
           for q in QUESTIONS]
    out.append(ChatRequest(messages=(*head, Message("user", QUESTIONS[1])), prefill="Sure, here is",
                           max_new_tokens=max_new_tokens, temperature=0.0))
    return out


def both_paths(engine: LiveEngine, batch: list[ChatRequest]) -> tuple[list[Generation], list[Generation]]:
    prompts = [engine.prompt(r) for r in batch]
    with torch.inference_mode():
        reference = HFEngine._generate(engine, batch, prompts)  # transformers generate()
    return reference, engine._generate(batch, prompts)


def same(a: Sequence[Generation], b: Sequence[Generation]) -> list[tuple[Any, ...]]:
    assert all(g.ok for g in [*a, *b])
    key = [(g.text, g.finish_reason, g.completion_tokens, g.prompt_tokens) for g in a]
    assert key == [(g.text, g.finish_reason, g.completion_tokens, g.prompt_tokens) for g in b]
    return key


@contextmanager
def batch_sizes(model: Any) -> Iterator[list[int]]:
    """The batch size of every forward() of the model while the block runs."""
    sizes: list[int] = []
    handle = model.register_forward_pre_hook(
        lambda _m, args, kwargs: sizes.append(int(kwargs["input_ids"].shape[0])), with_kwargs=True)
    try:
        yield sizes
    finally:
        handle.remove()


@pytest.fixture
def live(tiny: Any) -> Iterator[LiveEngine]:
    model = tiny.model(seed=3)
    model.train()  # as a Trainer hands it to the callback
    with generation_mode(model, tiny.tokenizer):
        yield LiveEngine(model, tiny.tokenizer)


def test_same_tokens_as_generate_with_the_shared_prefix_run_once(live: LiveEngine) -> None:
    batch = requests(12)
    with batch_sizes(live.model) as sizes:
        reference, fast = both_paths(live, batch)
    same(reference, fast)
    assert live.fast_greedy
    # generate()'s forwards all take the whole batch; the decoder's first runs the shared prefix once
    first_fast = sizes.index(1)
    assert set(sizes[:first_fast]) == {len(batch)} and sizes[first_fast + 1] == len(batch)


def test_without_a_shared_prefix_the_batch_is_left_padded_as_generate_does(live: LiveEngine) -> None:
    batch = requests(10, system=False)
    reference, fast = both_paths(live, batch)
    same(reference, fast)


def test_rows_leave_the_batch_at_their_end_token(live: LiveEngine) -> None:
    batch = requests(16)
    plain = live._generate(batch, [live.prompt(r) for r in batch])
    # the tiny model knows no answers: make a token it emits mid-answer an end token, so rows end early
    ids = [live.tokenizer(g.text, add_special_tokens=False)["input_ids"] for g in plain]
    live.eos_ids.add(ids[0][min(3, len(ids[0]) - 1)])
    with batch_sizes(live.model) as sizes:
        reference, fast = both_paths(live, batch)
    outcomes = same(reference, fast)
    assert {o[1] for o in outcomes} == {"stop", "length"}
    decoder_steps = sizes[sizes.index(1) + 2:]  # after the prefix and the batch's own prompt tokens
    assert min(decoder_steps) < len(batch) and decoder_steps == sorted(decoder_steps, reverse=True)


def test_a_generation_config_that_changes_greedy_choices_goes_to_generate(live: LiveEngine) -> None:
    batch = requests(12)
    live.model.generation_config.repetition_penalty = 3.0
    penalised = LiveEngine(live.model, live.tokenizer)
    assert not plain_greedy(live.model) and not penalised.fast_greedy
    reference, fast = both_paths(penalised, batch)
    same(reference, fast)
    rows = [live.tokenizer(penalised.prompt(r), add_special_tokens=False)["input_ids"] for r in batch]
    with torch.inference_mode():
        bare = greedy_decode(live.model, rows, max_new_tokens=12, eos_ids=live.eos_ids)
    assert [live.tokenizer.decode(t, skip_special_tokens=True) for t in bare] != [g.text for g in reference]


def test_sliding_window_attention_falls_back_to_generate(live: LiveEngine) -> None:
    live.model.config.sliding_window, live.model.config.use_sliding_window = 4096, True
    batch = requests(8)
    reference, fast = both_paths(live, batch)
    same(reference, fast)
    assert not live.fast_greedy  # remembered: the next probe goes straight to generate()


def test_empty_batch_and_empty_prompt(live: LiveEngine) -> None:
    assert greedy_decode(live.model, [], max_new_tokens=4, eos_ids={0}) == []
    with pytest.raises(ValueError, match="empty prompt"):
        greedy_decode(live.model, [[5, 6], []], max_new_tokens=4, eos_ids={0})


@pytest.mark.slow
def test_smollm2_with_a_lora_gives_generates_tokens_on_the_demo_probe() -> None:
    from peft import LoraConfig, get_peft_model

    from tunesafe.training.lora_sft import load_base
    from tunesafe.training.mitigation_demo import DEMO_PROBE
    from tunesafe.training.probes import select_probe_set

    model, tokenizer = load_base("embedded:smollm2-135m")
    torch.manual_seed(0)
    # init_lora_weights=False: a non-zero update, as after training (a fresh adapter changes nothing)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, init_lora_weights=False,
                                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    probe = select_probe_set("default", **DEMO_PROBE)
    batch = [ChatRequest(messages=a.messages, prefill=a.prefill, max_new_tokens=32, temperature=0.0)
             for a in probe.attempts]
    model.train()
    with generation_mode(model, tokenizer):
        engine = LiveEngine(model, tokenizer)
        lengths = {len(tokenizer(engine.prompt(r), add_special_tokens=False)["input_ids"]) for r in batch}
        assert len(lengths) > 5  # mixed lengths: the batch is padded
        reference, fast = both_paths(engine, batch)
    same(reference, fast)
    assert engine.fast_greedy and model.training
