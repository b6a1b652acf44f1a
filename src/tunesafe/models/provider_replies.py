"""What providers' chat-completion replies mean beyond the OpenAI shape: one reading for the HTTP client
(answers it receives) and for `tunesafe monitor` (answers it finds in logs), so a provider's filter is
`blocked` and a server's failure an error in both, never an answer to judge."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Finish reasons of a generation the server failed, whatever text came before: OpenRouter's "error";
# DeepSeek's "insufficient_system_resource" (its inference system ran out of resources mid-request);
# vLLM's "abort" (its engine aborted the request: shutdown, scale-down, sleep; vllm-project/vllm#57082)
SERVER_FAILED_FINISH = frozenset({"error", "insufficient_system_resource", "abort"})
# Gemini's FinishReason values for output its safety system stopped, which its OpenAI compatibility
# endpoint passes through instead of "content_filter" (ai.google.dev/api/generate-content#FinishReason)
GEMINI_FILTER_FINISH = frozenset({"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII",
                                  "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION"})


# Other servers' words for OpenAI's two ordinary ends: the model ended its answer ("stop") or ran out of
# the token budget ("length"). TGI says "eos_token"; Anthropic's OpenAI compatibility endpoint
# "end_turn", "stop_sequence" and "max_tokens"; Gemini "STOP" and "MAX_TOKENS"; some servers "eos".
# Read once, where a reply is parsed, so every check of a cut-off answer (finish_reason "length") holds.
_FINISH_ALIASES = {"eos": "stop", "eos_token": "stop", "end_turn": "stop", "stop_sequence": "stop",
                   "stop": "stop", "max_tokens": "length", "length": "length"}


def openai_finish(finish: str) -> str:
    """OpenAI's name for a finish reason another server words its own way; any other reason as given."""
    return _FINISH_ALIASES.get(finish.lower(), finish)


def filtered_finish(finish: str) -> bool:
    """Whether a finish reason says a provider's filter stopped the completion."""
    return finish == "content_filter" or finish.upper() in GEMINI_FILTER_FINISH


def prompt_filter(error: Any, status: int | None = None) -> list[str] | None:
    """The reasons a provider's filter refused a prompt, from its error object (empty when it names
    none), or None when the error is no filter: Azure's error.code "content_filter" (HTTP 400), OpenAI's
    "invalid_prompt" for a prompt flagged under its usage policy (reasoning models, HTTP 400), or
    OpenRouter's moderation error (HTTP 403, error.metadata.reasons and flagged_input; openrouter.ai/docs/
    errors "Moderation Errors"). `status`: the HTTP status when known (logs may not say)."""
    if not isinstance(error, Mapping):
        return None
    metadata = error.get("metadata")
    if status in (None, 403) and isinstance(metadata, Mapping) and isinstance(metadata.get("reasons"), list) \
            and "flagged_input" in metadata:
        return sorted(str(r) for r in metadata["reasons"])
    if status in (None, 400) and error.get("code") == "content_filter":
        inner = error.get("innererror")
        return filter_hits(inner.get("content_filter_result") if isinstance(inner, Mapping) else None)
    policy = "usage policy" in str(error.get("message"))
    if status in (None, 400) and error.get("code") == "invalid_prompt" and policy:
        return ["usage policy"]
    return None


def filter_hits(results: Any) -> list[str]:
    """The categories an Azure content-filter result marks filtered, sorted."""
    if not isinstance(results, Mapping):
        return []
    return sorted(k for k, v in results.items() if isinstance(v, Mapping) and v.get("filtered"))
