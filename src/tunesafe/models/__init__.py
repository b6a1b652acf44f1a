"""How tunesafe talks to an LLM: one ChatModel protocol, backends chosen by the model ref.

    model = load_model("embedded:qwen2.5-coder-0.5b")          # no API key, no hub
    model = load_model("openai:gpt-4o-mini@https://api.openai.com/v1")
    gens = await model.generate([ChatRequest(messages=(Message("user", "hi"),))])

Backends import lazily: `import tunesafe.models` does not load torch.
"""

from __future__ import annotations

from typing import Any

from tunesafe.models.base import ChatModel, error_generation
from tunesafe.models.embedded import DEFAULT_EMBEDDED, embedded_gguf_path
from tunesafe.models.refs import ModelRef, align_backends, parse_ref

DEFAULT_MODEL = f"embedded:{DEFAULT_EMBEDDED}"

__all__ = ["DEFAULT_MODEL", "ChatModel", "ModelRef", "align_backends", "backend_for", "embedded_gguf_path",
           "error_generation", "load_model", "parse_ref"]


def backend_for(ref: ModelRef) -> str:
    """The backend a parsed ref will run on (see tunesafe.models.refs for the rule)."""
    if ref.scheme == "openai":
        return "openai"
    if ref.scheme == "hf" or ref.adapter:
        return "hf"
    choice = ref.options.get("backend")
    if choice:
        return choice
    from tunesafe.models.llamacpp import llamacpp_available

    return "llamacpp" if llamacpp_available() else "hf"


def load_model(ref: str, **opts: Any) -> ChatModel:
    """Open the model named by `ref`. `opts` are backend options (same names as the ref's ?options,
    which they override). Bad refs, missing files or a wrong hash raise UserError."""
    parsed = parse_ref(ref)
    if opts:
        parsed = parsed.with_options(**{k: str(v) for k, v in opts.items()})
    backend = backend_for(parsed)
    if backend == "openai":
        from tunesafe.models.openai_http import OpenAIChatModel

        return OpenAIChatModel.from_ref(parsed)
    if backend == "llamacpp":
        if parsed.adapter:
            raise_adapter_needs_hf(parsed)
        from tunesafe.models.llamacpp import LlamaCppChatModel

        return LlamaCppChatModel.from_ref(parsed)
    from tunesafe.models.hf import HFChatModel

    return HFChatModel.from_ref(parsed)


def raise_adapter_needs_hf(ref: ModelRef) -> None:
    from tunesafe.errors import UserError

    raise UserError(f"'{ref}' has an adapter, which only the hf backend runs", where="model ref",
                    fix="drop ?backend=llamacpp (adapters run on backend=hf)")
