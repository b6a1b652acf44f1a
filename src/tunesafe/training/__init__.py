"""During fine-tuning: `SafetyCallback` for transformers / TRL trainers (loss monitoring, the policy's
training limits, checkpoint safety probes, the training_run evidence), `ConstrainedSFTTrainer` /
`constrained_sft_loss` (Qi et al. 2024's token-wise objective), and tunesafe's own LoRA trainer.

SafetyCallback and the constrained trainer are imported on first use, so `tunesafe.training.lora_sft`
does not pay for transformers' Trainer machinery."""

from __future__ import annotations

from typing import Any

__all__ = ["ConstrainedSFTTrainer", "SafetyCallback", "constrained_sft_loss"]


def __getattr__(name: str) -> Any:
    if name == "SafetyCallback":
        from tunesafe.training.callback import SafetyCallback

        return SafetyCallback
    if name in ("ConstrainedSFTTrainer", "constrained_sft_loss"):
        from tunesafe.training import constrained

        return getattr(constrained, name)
    raise AttributeError(f"module 'tunesafe.training' has no attribute {name!r}")
