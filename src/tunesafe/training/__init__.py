"""During fine-tuning: `SafetyCallback` for transformers / TRL trainers (loss monitoring, the policy's
training limits, checkpoint safety probes, the training_run evidence), and tunesafe's own LoRA trainer.

SafetyCallback is imported on first use, so `tunesafe.training.lora_sft` does not pay for transformers'
Trainer machinery."""

from __future__ import annotations

from typing import Any

__all__ = ["SafetyCallback"]


def __getattr__(name: str) -> Any:
    if name == "SafetyCallback":
        from tunesafe.training.callback import SafetyCallback

        return SafetyCallback
    raise AttributeError(f"module 'tunesafe.training' has no attribute {name!r}")
