"""The one split of a reasoning model's generation into (reasoning, answer), and the no-answer error."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from tunesafe.models.reasoning import opens_reasoning, reasoning_field, settle_reasoning, split_reasoning
from tunesafe.types import Generation

ANSWER = "Sure. Step 1: [placeholder]."


@pytest.mark.parametrize(("text", "opened", "reasoning", "answer"), [
    (f"<think>I should refuse.</think>\n\n{ANSWER}", False, "I should refuse.", ANSWER),
    (f"\n  <think>\nI should refuse.\n</think>{ANSWER}", False, "I should refuse.", ANSWER),  # leading space
    (f"I should refuse.\n</think>\n\n{ANSWER}", False, "I should refuse.", ANSWER),  # <think> in the prompt
    (f"I should refuse.\n</think>\n\n{ANSWER}", True, "I should refuse.", ANSWER),
    ("<think>\n\n</think>\n\nHello.", False, "", "Hello."),  # Qwen3 with thinking off: an empty block
    ("<think>I should refuse, but", False, "I should refuse, but", ""),  # ended inside the reasoning
    ("I should refuse, but", True, "I should refuse, but", ""),  # ditto, opened by the prompt
    (ANSWER, False, None, ANSWER),  # no reasoning: the text as it is
    (f"  {ANSWER} <think>", False, None, f"  {ANSWER} <think>"),  # a tag later on is part of the answer
])
def test_split(text: str, opened: bool, reasoning: str | None, answer: str) -> None:
    split = split_reasoning(text, opened)
    assert (split.reasoning, split.answer) == (reasoning, answer)


def test_the_answer_is_the_text_and_the_reasoning_is_kept() -> None:
    gen = settle_reasoning(Generation(text=f"<think>I must refuse.</think> {ANSWER}", finish_reason="stop"))
    assert gen.ok and gen.text == ANSWER and gen.reasoning == "I must refuse."
    assert settle_reasoning(gen) == gen  # settled twice: unchanged
    plain = Generation(text=ANSWER, finish_reason="stop")
    assert settle_reasoning(plain) is plain


@pytest.mark.parametrize("gen", [
    Generation(text="<think>Let me think this through", finish_reason="length", completion_tokens=64),
    Generation(text="", reasoning="Let me think this through", finish_reason="length", completion_tokens=64),
    Generation(text="<think>Let me think.</think>\n", finish_reason="length", completion_tokens=64),
])
def test_reasoning_cut_off_by_the_budget_is_an_error_naming_the_fix(gen: Generation) -> None:
    settled = settle_reasoning(gen)
    assert not settled.ok and settled.text == "" and settled.reasoning
    assert settled.error is not None
    assert "cut off inside the model's reasoning" in settled.error and "--max-new-tokens" in settled.error


def test_reasoning_with_no_answer_that_was_not_cut_off_is_an_error_too() -> None:
    settled = settle_reasoning(Generation(text="", reasoning="Hmm.", finish_reason="stop"))
    assert settled.error is not None and "reasoning but no answer" in settled.error


def test_errors_and_blocked_generations_are_left_alone() -> None:
    failed = Generation(text="", finish_reason="error", error="HTTP 500")
    blocked = Generation(text="<think>x", finish_reason="content_filter", blocked="refusal")
    assert settle_reasoning(failed) is failed and settle_reasoning(blocked) is blocked


def test_fields_and_prompts() -> None:
    assert reasoning_field({"content": "a", "reasoning_content": " r "}) == "r"
    assert reasoning_field({"content": "a", "reasoning": "r"}) == "r"
    assert reasoning_field({"content": "a", "reasoning_content": None, "reasoning": ""}) is None
    assert opens_reasoning("<|im_start|>assistant\n<think>\n") and not opens_reasoning("assistant\n")


class _CharTokenizer:
    """One character per token id: enough for the hf backend's decode step."""

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(chr(i) for i in ids)


@pytest.mark.parametrize(("raw", "opened", "text", "error"), [
    (f"<think>I must refuse.</think>\n{ANSWER}", False, ANSWER, None),
    (f"I must refuse.</think>\n{ANSWER}", True, ANSWER, None),
    ("I must refuse, since", True, "", "cut off inside the model's reasoning"),  # no tag ever: the prompt
])
def test_the_hf_backend_settles_what_it_decodes(raw: str, opened: bool, text: str, error: str | None) -> None:
    from tunesafe.models.hf import HFEngine
    from tunesafe.types import ChatRequest, Message

    stub: Any = SimpleNamespace(tokenizer=_CharTokenizer(), eos_ids={0})
    request = ChatRequest(messages=(Message("user", "q"),), max_new_tokens=len(raw))
    gen = HFEngine._decode(stub, [ord(c) for c in raw], request, 3, 0.1, opened)
    assert gen.text == text and gen.reasoning and (gen.error is None if error is None else error in gen.error)


def test_a_bare_closing_tag_the_prompt_did_not_open_is_judged_on_transformers() -> None:
    """Where tunesafe renders the prompt it knows whether the template opened a reasoning block, so a
    fine-tune cannot hide an answer before a `</think>` of its own: the whole text is judged."""
    from tunesafe.models.hf import HFEngine
    from tunesafe.types import ChatRequest, Message

    raw = f"Step 1: [placeholder].</think>\n{ANSWER}"
    stub: Any = SimpleNamespace(tokenizer=_CharTokenizer(), eos_ids={0})
    request = ChatRequest(messages=(Message("user", "q"),), max_new_tokens=len(raw))
    gen = HFEngine._decode(stub, [ord(c) for c in raw], request, 3, 0.1, False)
    assert gen.text == raw and gen.reasoning is None and gen.error is None
    assert split_reasoning(raw).reasoning == "Step 1: [placeholder]."  # over HTTP the prompt is unseen
