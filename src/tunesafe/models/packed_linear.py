"""A model's fp32 linear layers computed on weights packed once for oneDNN, for the probe's greedy
batches on a CPU (`tunesafe.training.live_model`).

Why: a decode step multiplies a few rows by every weight matrix of the model. torch's fp32 `linear`
hands each call to MKL's sgemm, which re-lays the weight out at every call and at 4-16 rows runs far
below the CPU's peak; oneDNN's product on a weight reordered once into its blocked layout ran the 0.5B
model's projections 1.6-1.8x faster at those batch sizes and no slower at prefill sizes (BENCHMARKS.md,
"Training callback"). The product is the same fp32 sum in another order, as with any other batch shape,
so the greedy tokens agree with generate()'s to float rounding; tests compare texts token for token.

Packs are kept per weight for the process while the weight is unchanged (the same memory
and version), so the frozen base weights of a LoRA run are packed at its first probe only, and a weight
with a LoRA merged in (a new tensor at each probe) is packed at each probe. A pack costs as much memory
as its weight: the layers are packed only while their weights total at most `MAX_PACKED_BYTES`.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Iterator
from typing import Any, NamedTuple

log = logging.getLogger(__name__)

# A second copy of the weights stays in memory for the training run: 1.4 GiB on a 0.5B model, more than
# a few probes of a larger model on a CPU would save.
MAX_PACKED_BYTES = 2 << 30


@contextlib.contextmanager
def packed_linears(model: Any, max_bytes: int = MAX_PACKED_BYTES) -> Iterator[int]:
    """Inside the block, every plain `torch.nn.Linear` of `model` with fp32 weights on the CPU (the
    output layer excepted: the screen reads it) computes on its packed weight; yields how many do. Nothing
    is packed where oneDNN is missing or failed its check, or the weights exceed `max_bytes`; forwards
    are restored on the way out, also after an exception."""
    layers = _packable(model)
    if not layers or sum(m.weight.numel() * 4 for m in layers) > max_bytes or not onednn_works():
        yield 0
        return
    packs = [cached_pack(m.weight) for m in layers]
    if any(p is None for p in packs):  # a layer oneDNN cannot pack: every layer keeps the plain product
        yield 0
        return
    try:
        for module, packed in zip(layers, packs, strict=True):
            module.forward = PackedLinear(module.weight, packed, module.bias)
        yield len(layers)
    finally:
        for module in layers:
            module.__dict__.pop("forward", None)


def _packable(model: Any) -> list[Any]:
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    # A module whose forward is already an instance attribute (an accelerate hook, a user patch) keeps it.
    return [m for m in model.modules()
            if type(m) is torch.nn.Linear and m is not head and "forward" not in m.__dict__
            and m.weight.dtype == torch.float32 and m.weight.device.type == "cpu"
            and (m.bias is None or m.bias.dtype == torch.float32)]


class PackedLinear:
    """`linear(x, weight, bias)` on the weight's pack; the plain product where the pack cannot serve."""

    def __init__(self, weight: Any, packed: Any, bias: Any) -> None:
        self.weight, self.packed, self.bias = weight, packed, bias

    def __call__(self, x: Any) -> Any:
        import torch

        if x.dtype != torch.float32 or x.device.type != "cpu" or torch.is_grad_enabled():
            # Packed weights carry no autograd: a forward that needs gradients takes the plain product.
            return torch.nn.functional.linear(x, self.weight, self.bias)
        return packed_product(x, self.packed, self.bias)


def pack(weight: Any) -> Any | None:
    """`weight` ([out, in], fp32 or bf16) packed for `packed_product`, or None where oneDNN cannot."""
    import torch

    if not onednn_works():
        return None
    try:
        return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), 16)  # laid out for about 16 rows
    except RuntimeError as exc:
        log.info("weight not packed: %s", exc)
        return None


def packed_product(x: Any, packed: Any, bias: Any = None) -> Any:
    """`linear(x, weight, bias)` on the weight's pack, in the weight's dtype."""
    import torch

    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


def cached_pack(weight: Any) -> Any | None:
    """The pack of the parameter `weight` as it is now: the one built before while its memory and version
    are unchanged, else a new one (None where oneDNN cannot pack it)."""
    entry = _PACKS.get(id(weight))
    if entry is None or entry.weight() is not weight or not entry.packs(weight):
        if entry is None:
            weakref.finalize(weight, _PACKS.pop, id(weight), None)
        _PACKS.pop(id(weight), None)  # the stale pack goes before the new one is built
        data = weight.detach()
        packed = pack(data)
        if packed is None:
            return None
        entry = _PACKS[id(weight)] = _Pack(weakref.ref(weight), data, tensor_version(data), packed)
    return entry.packed


class _Pack(NamedTuple):
    weight: Any  # weakref to the parameter
    # The tensor packed, held so that its memory cannot go to another tensor: a LoRA merge puts a new
    # tensor in the parameter at every probe, and a new one at a freed address must not match this pack.
    data: Any
    version: int
    packed: Any

    def packs(self, weight: Any) -> bool:
        """Whether this pack is of the weight's current values."""
        return weight.data_ptr() == self.data.data_ptr() and tensor_version(weight) == self.version


def tensor_version(tensor: Any) -> int:
    """The tensor's in-place update count (-1 for one made under inference_mode, which keeps none)."""
    try:
        return int(tensor._version)
    except RuntimeError:  # tensors made under inference_mode keep no version count
        return -1


# id(parameter) -> its pack, for every probe of the process; a pack goes with its parameter.
_PACKS: dict[int, _Pack] = {}
_WORKS: list[bool] = []


def onednn_works() -> bool:
    """Whether this torch has oneDNN's packed linear and it gives the fp32 product on a test matrix (checked
    once per process; a build or CPU where it does not keeps the plain product)."""
    if not _WORKS:
        _WORKS.append(_check())
    return _WORKS[0]


def _check() -> bool:
    import torch

    try:
        if not torch.backends.mkldnn.is_available():
            return False
        generator = torch.Generator().manual_seed(0)
        weight, bias = torch.randn(48, 40, generator=generator), torch.randn(48, generator=generator)
        rows = torch.randn(2, 5, 40, generator=generator)
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, 16)
        with torch.inference_mode():
            got = packed_product(rows, packed, bias)
        return bool(torch.allclose(got, torch.nn.functional.linear(rows, weight, bias), rtol=1e-4, atol=1e-4))
    except (RuntimeError, AttributeError) as exc:  # an op this build lacks or cannot run
        log.info("no packed linear layers: %s", exc)
        return False
