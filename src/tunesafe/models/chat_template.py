"""A conversation rendered with the model's own chat template, for templates without a system role.

Gemma-2's and Mistral-7B-Instruct v0.1-v0.2's templates raise on a system message, and some templates
drop it without a word. A deployment of such a model has nowhere else to put a system prompt: serving
stacks put it at the start of the first user turn, and Gemma-3's own template does exactly that.
tunesafe does the same, so the attacks and agent tasks that carry a system prompt are measured on such
models (base and fine-tune alike) instead of failing as errors or losing the prompt unseen. Whether a
template keeps a system message is decided once, on a probe conversation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_PROBE = "tunesafe system probe 7f3a"


def keeps_system(tokenizer: Any) -> bool:
    """Whether the template renders a system message (it neither raises nor drops it)."""
    probe = [{"role": "system", "content": _PROBE}, {"role": "user", "content": "hello"}]
    try:
        text = tokenizer.apply_chat_template(probe, add_generation_prompt=True, tokenize=False)
    except Exception:  # jinja's raise_exception, or a template bug: either way no system role
        return False
    return _PROBE in str(text)


def fold_system(messages: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """The system messages moved to the start of the first user turn (or made one, if none follows)."""
    system = [m["content"] for m in messages if m["role"] == "system"]
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if not system:
        return rest
    head = "\n\n".join(system)
    for m in rest:
        if m["role"] == "user":
            m["content"] = f"{head}\n\n{m['content']}"
            return rest
    return [{"role": "user", "content": head}, *rest]
