"""A trained model's LoRA updates folded into its base weights for the length of a probe, and the base
weights put back bit for bit afterwards.

Why: an unmerged LoRA adds about five small operations to every adapted projection (96 of them in
Qwen2.5-0.5B with q/k/v/o adapters), roughly doubling the operations of a decode step; on a busy CPU
each costs a thread wake-up, so the probe's decode runs markedly slower unmerged.

The merged weights are new tensors, W + PEFT's own delta (the same sum, bit for bit, as PEFT's in-place
merge), swapped in as each base parameter's data; restoring swaps the untouched originals back. So the
restore does no arithmetic and no copy (PEFT's unmerge subtracts the update again, which rounds, and
would need a copy of the base weights to undo), and training continues from exactly the weights it had.
The merge runs on the intra-op thread count the caller gives, the one its decode steps found faster
(`ThreadChoice`): on an idle machine two threads merged Qwen2.5-0.5B's q/k/v/o in 0.11 s against 0.19 s
on one, and on a busy one every multi-threaded operation waits for its slowest thread (seconds in all).

Only plain LoRA (no DoRA or other variant, no LoRA bias) on fp32 base weights is merged (in bf16 or
fp16 the sum W + BA rounds away much of a small update, and the probe would measure another model),
only when the merged copies stay under `MAX_COPY_BYTES`, and never when the user already merged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MAX_COPY_BYTES = 1 << 30


def merge_lora(model: Any, max_copy_bytes: int = MAX_COPY_BYTES,
               threads: int = 1) -> Callable[[], None] | None:
    """Merge the active LoRA adapters; returns the function that restores the weights exactly, or None
    when nothing was merged (no plain LoRA, not fp32, too large, already merged, or the merge failed)."""
    import torch

    layers = _plain_lora_layers(model)
    weights = [layer.get_base_layer().weight for layer, _ in layers]
    if not layers or sum(w.numel() * w.element_size() for w in weights) > max_copy_bytes:
        return None
    originals = [w.data for w in weights]

    def restore() -> None:
        for (layer, _), weight, data in zip(layers, weights, originals, strict=True):
            weight.data = data
            layer.merged_adapters.clear()  # it was empty: nothing was merged before (_plain_lora_layers)

    own = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            for (layer, names), weight in zip(layers, weights, strict=True):
                merged = weight.data
                for name in names:
                    merged = merged + layer.get_delta_weight(name)
                if merged.shape != weight.shape:
                    raise ValueError(f"LoRA update of shape {tuple(merged.shape)} for {tuple(weight.shape)}")
                weight.data = merged
                layer.merged_adapters.extend(names)  # PEFT's forward now skips the adapter: it is in W
    except Exception:  # an unusual layer: probe the unmerged model
        restore()
        return None
    finally:
        torch.set_num_threads(own)
    return restore


def _plain_lora_layers(model: Any) -> list[tuple[Any, list[str]]]:
    """Each LoRA layer with the active adapters it would merge; empty when any layer is not plain fp32
    LoRA, or is already merged (that is the user's state, which we must not undo)."""
    import torch

    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:
        return []
    layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
    result = []
    for layer in layers:
        # under PEFT's disable_adapter() the forward uses the base weights alone: nothing to merge
        names = [] if layer.disable_adapters else [n for n in layer.active_adapters if n in layer.lora_A]
        base = layer.get_base_layer()
        weight = getattr(base, "weight", None)
        if (layer.merged or _has_extras(layer, names)
                or not isinstance(weight, torch.Tensor) or weight.dtype != torch.float32):
            return []
        if names:
            result.append((layer, names))
    return result


def _has_extras(layer: Any, names: list[str]) -> bool:
    """A DoRA (or other) variant or a LoRA bias: merged differently from W + BA (older PEFT versions
    have neither attribute)."""
    variants, bias = getattr(layer, "lora_variant", {}), getattr(layer, "lora_bias", {})
    return any(n in variants or bias.get(n) for n in names)
