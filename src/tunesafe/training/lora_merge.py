"""A trained model's LoRA updates folded into its base weights for the length of a probe, and the base
weights put back bit for bit afterwards.

Why: an unmerged LoRA adds about five small operations to every adapted projection (96 of them in
Qwen2.5-0.5B with q/k/v/o adapters), roughly doubling the operations of a decode step; on a busy CPU
each costs a thread wake-up, so the probe's decode runs markedly slower unmerged. PEFT's unmerge
subtracts the update again, which rounds: the base weights are copied before the merge and copied back
after the unmerge, so training continues from exactly the weights it had.

Only fp32 base weights are merged (in bf16 or fp16 the sum W + BA rounds away much of a small update,
and the probe would measure another model), only when the copy stays under `MAX_COPY_BYTES`, and never
when the user already merged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MAX_COPY_BYTES = 1 << 30


def merge_lora(model: Any, max_copy_bytes: int = MAX_COPY_BYTES) -> Callable[[], None] | None:
    """Merge the active LoRA adapters; returns the function that restores the weights exactly, or None
    when nothing was merged (no LoRA, not fp32, too large, already merged, or the merge failed)."""
    import torch

    tensors = _base_tensors(model)
    if not tensors or sum(t.numel() * t.element_size() for t in tensors) > max_copy_bytes:
        return None
    saved = [(t, t.detach().clone()) for t in tensors]

    def restore() -> None:
        model.unmerge_adapter()
        with torch.no_grad():
            for tensor, copy in saved:
                tensor.copy_(copy)

    try:
        model.merge_adapter()
    except Exception:  # e.g. a PEFT config that forbids merging: probe the unmerged model
        restore()
        return None
    return restore


def _base_tensors(model: Any) -> list[Any]:
    import torch

    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:
        return []
    layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
    if not layers or not callable(getattr(model, "merge_adapter", None)) or any(m.merged for m in layers):
        return []
    tensors = []
    for layer in layers:
        base = layer.get_base_layer()
        tensors += [t for t in (getattr(base, "weight", None), getattr(base, "bias", None)) if t is not None]
    if any(not isinstance(t, torch.Tensor) or t.dtype != torch.float32 for t in tensors):
        return []
    return tensors
