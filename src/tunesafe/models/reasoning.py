"""Reasoning traces: the one split of a generation into (reasoning, answer), used by every backend.

Reasoning models (Qwen3, DeepSeek-R1 and its distills) think before they answer. The trace reaches us
in one of three shapes:

    <think>reasoning</think> answer        inline, at the start of the text (local backends, servers
                                           without a reasoning parser)
    reasoning</think> answer               the chat template put `<think>` in the prompt (Qwen3, R1)
    content=answer, reasoning_content=...  a separate field (vLLM / DeepSeek `reasoning_content`,
                                           others `reasoning`): the backend passes it in

Only the answer is what the model said to the user, so only the answer goes to `Generation.text` (what
attacks, guards and judges read); the reasoning is kept in `Generation.reasoning` for reviewers. A
generation that has reasoning but no answer (the token budget ran out inside the reasoning) is an error
for its attempt: judging the reasoning as the answer would give a meaningless verdict either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from tunesafe.types import Generation

OPEN, CLOSE = "<think>", "</think>"
# For responses logged outside a run (pair files, production logs), where no token budget is known
LOGGED_NO_ANSWER = "the response is a reasoning trace with no answer after it (cut off?): nothing to judge"


@dataclass(frozen=True)
class Split:
    reasoning: str | None  # None: no reasoning in this generation
    answer: str  # empty when the text ended inside the reasoning


def split_reasoning(text: str, opened: bool = False, prompt_known: bool = False) -> Split:
    """Split inline reasoning off the start of `text`. `opened`: the prompt ended with the opening tag,
    so the text starts inside the reasoning even when it never closes. `prompt_known`: the caller rendered
    the prompt, so `opened` is the truth and a closing tag without it is text of the answer (an HTTP
    client cannot see the prompt and must read a bare closing tag as a template-opened block)."""
    stripped = text.lstrip()
    if stripped.startswith(OPEN):
        body = stripped[len(OPEN):]
    elif opened or (CLOSE in text and not prompt_known):
        body = text
    else:
        return Split(reasoning=None, answer=text)
    reasoning, _, answer = body.partition(CLOSE)
    return Split(reasoning=reasoning.strip(), answer=answer.lstrip())


def opens_reasoning(prompt: str) -> bool:
    """Whether a rendered prompt ends inside an opened reasoning block (R1-style templates add `<think>`
    to the generation prompt): the text then starts with reasoning and may never show a tag at all."""
    return prompt.rstrip().endswith(OPEN)


def settle_reasoning(generation: Generation, opened: bool = False, prompt_known: bool = False) -> Generation:
    """`generation` with its reasoning moved out of `text` into `reasoning`, or an error when the
    reasoning left no answer. A reasoning already in `generation.reasoning` (a separate field) is taken
    as given. Errors and blocked generations are returned as they are; applying it twice changes nothing."""
    if not generation.ok or generation.blocked is not None:
        return generation
    if generation.reasoning is None:
        split = split_reasoning(generation.text, opened, prompt_known)
        if split.reasoning is None:
            return generation
        generation = replace(generation, text=split.answer, reasoning=split.reasoning)
    if generation.text.strip():
        return generation
    return replace(generation, text="", error=no_answer_message(generation))


def no_answer_message(generation: Generation) -> str:
    """Why a generation with reasoning but no answer is an error, and what to do about it."""
    if generation.finish_reason == "length":
        return (f"the answer was cut off inside the model's reasoning ({generation.completion_tokens} "
                "tokens, finish_reason length): raise --max-new-tokens, reasoning models need room for "
                "their reasoning and then the answer")
    return (f"the model gave reasoning but no answer (finish_reason {generation.finish_reason}): the "
            "reasoning is not judged as an answer")


def reasoning_field(message: Mapping[str, Any]) -> str | None:
    """The reasoning an OpenAI-compatible server sent next to the content (vLLM / DeepSeek
    `reasoning_content`, OpenRouter / Ollama `reasoning`), or None when it sent none."""
    for key in ("reasoning_content", "reasoning"):
        value = message.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def content_parts(content: Any) -> tuple[str | None, str | None]:
    """A reply's `message.content` as (answer, reasoning). A string (or null) is the answer. A list of
    parts, as Mistral's reasoning models send (`[{"type": "thinking", "thinking": [...]}, {"type": "text",
    "text": "..."}]`), gives its text parts as the answer and its thinking parts as the reasoning. A part
    of any other type raises ValueError: dropping it could drop what the model said (fail closed)."""
    if content is None or isinstance(content, str):
        return content, None
    if not isinstance(content, list):
        raise ValueError(f"message.content is a {type(content).__name__}")
    answer: list[str] = []
    thoughts: list[str] = []
    for part in content:
        kind = part.get("type") if isinstance(part, Mapping) else "string" if isinstance(part, str) else None
        if kind == "string":
            answer.append(part)
        elif kind in ("text", "output_text") and isinstance(part.get("text"), str):
            answer.append(part["text"])
        elif kind == "thinking":
            inner = part.get("thinking")
            thoughts.append(inner if isinstance(inner, str) else content_parts(inner)[0] or "")
        else:
            raise ValueError(f"message.content has a part it cannot read: {str(part)[:80]}")
    reasoning = "\n".join(t for t in thoughts if t.strip()).strip()
    return "".join(answer), reasoning or None
