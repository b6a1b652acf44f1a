"""The built-in guardrail adapters; importing this package registers them."""

from tunesafe.guardrails.adapters import guarded_chat, llama_guard, moderation, nemo, python_callable

__all__ = ["guarded_chat", "llama_guard", "moderation", "nemo", "python_callable"]
