"""How tunesafe talks to an LLM: one ChatModel protocol, backends chosen by the model ref.

    model = load_model("embedded:qwen2.5-coder-0.5b")          # no API key, no hub
    model = load_model("openai:gpt-4o-mini@https://api.openai.com/v1")
    gens = await model.generate([ChatRequest(messages=(Message("user", "hi"),))])

Backends import lazily: `import tunesafe.models` does not load torch.
"""

from __future__ import annotations

from typing import Any

from tunesafe.errors import UserError
from tunesafe.models.base import ChatModel, error_generation
from tunesafe.models.embedded import DEFAULT_EMBEDDED, embedded_gguf_path
from tunesafe.models.refs import ModelRef, align_backends, parse_ref

DEFAULT_MODEL = f"embedded:{DEFAULT_EMBEDDED}"

__all__ = ["DEFAULT_MODEL", "ChatModel", "ModelRef", "align_backends", "backend_for", "embedded_gguf_path",
           "error_generation", "load_model", "parse_ref"]


def backend_for(ref: ModelRef) -> str:
    """The backend a parsed ref runs on: openai for HTTP refs; for local refs `?backend=` or hf
    (transformers, the white-box backend). llama.cpp is opt-in (`?backend=llamacpp`): faster on CPUs
    (BENCHMARKS.md) but black-box, and base and candidate must share one backend (docs/backends.md)."""
    if not ref.local:  # an HTTP server (openai:, vllm:): the server's numerics
        return "openai"
    return ref.options.get("backend", "hf")


def load_model(ref: str, **opts: Any) -> ChatModel:
    """Open the model named by `ref`. `opts` are backend options (same names as the ref's ?options,
    which they override), and for HTTP refs `token_provider=CALLABLE` (the key, renewed on a 401, as with
    ?key_cmd=). Bad refs, missing files or a wrong hash raise UserError."""
    parsed = parse_ref(ref)
    token_provider = opts.pop("token_provider", None)
    if parsed.scheme == "guarded":
        from tunesafe.guardrails.base import load_guard
        from tunesafe.guardrails.guarded_model import GuardedModel

        assert parsed.guard is not None
        guard = load_guard(parsed.guard)
        given = {"token_provider": token_provider} if token_provider else {}
        inner = load_model(parsed.target, **opts, **given)
        return GuardedModel(inner, guard, parsed.guard)
    if opts:
        parsed = parsed.with_options(**{k: str(v) for k, v in opts.items()})
    backend = backend_for(parsed)
    if parsed.scheme == "vllm":
        from tunesafe.models.vllm import VLLMChatModel

        return VLLMChatModel.from_ref(parsed, token_provider)
    if backend == "openai":
        from tunesafe.models.openai_http import OpenAIChatModel
        from tunesafe.models.replicas import ReplicatedChatModel, replica_urls

        assert parsed.base_url is not None
        if "," in parsed.base_url and len(replica_urls(parsed.base_url, str(parsed))) > 1:
            return ReplicatedChatModel.from_ref(parsed, token_provider)
        return OpenAIChatModel.from_ref(parsed, token_provider)
    if token_provider is not None:
        raise UserError(f"token_provider is for HTTP models, not {parsed.scheme}:", where="load_model",
                        fix="leave token_provider out, or load an openai:MODEL@URL ref")
    if backend == "llamacpp":
        from tunesafe.models.llamacpp import LlamaCppChatModel

        return LlamaCppChatModel.from_ref(parsed)
    from tunesafe.models.hf import HFChatModel

    return HFChatModel.from_ref(parsed)
