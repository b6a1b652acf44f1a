"""Guardrails: input/output filters in front of a model, behind one adapter interface (`Guard`, one
registry, refs like `llama-guard:MODEL_REF`), and their verification (`tunesafe guardrails verify`)."""

from tunesafe.guardrails.base import Guard, GuardDecision, load_guard, registry

__all__ = ["Guard", "GuardDecision", "load_guard", "registry"]
