"""One greedy decode step of a Llama-family decoder (Llama, Qwen2, Mistral) in fewer operations than the
model's own forward, for the probe's greedy decoder (`tunesafe.models.greedy_decode`).

Why: a probe's decode step on a CPU multiplies a few rows by every weight, and the rest of the model's
forward is some 50 small operations per layer (norms, rotary embedding, reshapes, the attention and
residual glue) plus transformers' per-module Python. On Qwen2.5-0.5B at 16 rows those took about a
quarter of the step (BENCHMARKS.md, "Training callback"). Here each layer runs its query, key and value
projections as one product on a weight concatenated once per probe, applies the rotary embedding to the
queries and keys together, and calls the model's other weights directly.

The arithmetic is the model's: the same RMSNorm formula, rotary embedding (the model's own rotary module),
attention (PyTorch's scaled_dot_product_attention over the same KV cache, grouped query heads packed as
transformers packs them for one query token), SiLU MLP and residual sums, on the same weights. Only the
summation order of the fused product differs, as with any other batch shape, so the tokens agree with
generate()'s to float rounding; tests compare texts token for token.

`DecodeStep.of` returns None for anything else (another architecture, a sliding window, biases or norms
these models do not have, an unmerged LoRA layer, non-fp32 weights); the decoder then calls the forward.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from tunesafe.models.packed_linear import PackedLinear, cached_pack, pack

log = logging.getLogger(__name__)

MODEL_TYPES = frozenset({"llama", "qwen2", "mistral"})


class _Layer:
    def __init__(self, layer: Any, config: Any, packed: bool) -> None:
        import torch

        attention, mlp = layer.self_attn, layer.mlp
        q, k, v = (_linear(getattr(attention, name)) for name in ("q_proj", "k_proj", "v_proj"))
        biases = [m.bias for m in (q, k, v)]
        qkv = torch.cat([q.weight, k.weight, v.weight]).detach()
        bias = torch.cat(biases).detach() if all(b is not None for b in biases) else None
        self.qkv = _product(qkv, bias, pack(qkv) if packed else None)
        self.o, self.gate, self.up, self.down = (
            _product(m.weight, m.bias, cached_pack(m.weight) if packed else None)
            for m in map(_linear, (attention.o_proj, mlp.gate_proj, mlp.up_proj, mlp.down_proj)))
        self.norms = [(n.weight, n.variance_epsilon) for n in (layer.input_layernorm,
                                                                layer.post_attention_layernorm)]
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = q.weight.shape[0] // self.heads
        self.scaling = attention.scaling


class DecodeStep:
    """Call with each row's newest token ([rows]), the attention mask over the cache and that token
    ([rows, cached + 1], 1 = attend), the token's position ([rows]) and the DynamicCache (extended in
    place, as the forward extends it); returns the final hidden state of each row ([rows, hidden])."""

    def __init__(self, decoder: Any, packed: bool) -> None:
        self.embed, self.rotary = decoder.embed_tokens, decoder.rotary_emb
        config = decoder.config
        self.layers = [_Layer(layer, config, packed) for layer in decoder.layers]
        self.norm = (decoder.norm.weight, decoder.norm.variance_epsilon)

    @classmethod
    def of(cls, model: Any, *, packed: bool) -> DecodeStep | None:
        """The step for `model` (weights as they are now: build it after a LoRA merge), or None where it
        would not compute the model's forward. `packed`: multiply on oneDNN packs (the caller holds
        `packed_linears`), else on the weights as stored."""
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        decoder = base.get_decoder() if hasattr(base, "get_decoder") else None
        if decoder is None or not _supported(decoder):
            return None
        try:
            return cls(decoder, packed)
        except (AttributeError, RuntimeError, _NotPlain) as exc:  # the forward can still run this probe
            log.info("decode steps through the model's forward: %s", exc)
            return None

    def __call__(self, tokens: Any, mask: Any, positions: Any, cache: Any) -> Any:
        import torch

        x = self.embed(tokens)
        cos, sin = self.rotary(x, positions[:, None])  # [rows, 1, head_dim]
        cos, sin = cos[:, None], sin[:, None]  # for every head: [rows, 1, 1, head_dim]
        attend = mask.bool()[:, None, None, :]
        rows = x.shape[0]
        for index, layer in enumerate(self.layers):
            h = _rms_norm(x, *layer.norms[0])
            qkv = layer.qkv(h)
            d, heads, kv_heads = layer.head_dim, layer.heads, layer.kv_heads
            # the rotary embedding of the queries and keys at once: [rows, heads + kv_heads, 1, d]
            qk = qkv[:, :(heads + kv_heads) * d].view(rows, heads + kv_heads, 1, d)
            half = d // 2
            qk = qk * cos + torch.cat((-qk[..., half:], qk[..., :half]), dim=-1) * sin
            q, k = qk[:, :heads], qk[:, heads:]
            v = qkv[:, (heads + kv_heads) * d:].view(rows, kv_heads, 1, d)
            keys, values = cache.update(k, v, index)
            # one query token: each key/value head's query heads as its queries (transformers' pack_gqa)
            q = q.reshape(rows, kv_heads, heads // kv_heads, d)
            out = torch.nn.functional.scaled_dot_product_attention(q, keys, values, attn_mask=attend,
                                                                   scale=layer.scaling)
            x = x + layer.o(out.reshape(rows, heads * d))
            h = _rms_norm(x, *layer.norms[1])
            x = x + layer.down(torch.nn.functional.silu(layer.gate(h)) * layer.up(h))
        return _rms_norm(x, *self.norm)


def _rms_norm(x: Any, weight: Any, eps: float) -> Any:
    """transformers' LlamaRMSNorm / Qwen2RMSNorm on fp32 states, operation for operation."""
    import torch

    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def _linear(module: Any) -> Any:
    """The plain Linear computing `module` now: itself, or a LoRA layer's base layer when the LoRA is
    merged into it (or has no active adapter)."""
    import torch

    if type(module) is torch.nn.Linear:
        return module
    base = module.get_base_layer() if hasattr(module, "get_base_layer") else None
    active = [n for n in getattr(module, "active_adapters", ()) if n in getattr(module, "lora_A", {})]
    if type(base) is torch.nn.Linear and (getattr(module, "merged", False) or not active):
        return base
    raise _NotPlain(type(module).__name__)


def _product(weight: Any, bias: Any, packed: Any) -> Callable[[Any], Any]:
    """x @ weight.T + bias: on the oneDNN pack where there is one, else torch's linear."""
    import torch

    if packed is not None:
        return PackedLinear(weight, packed, bias)
    return functools.partial(torch.nn.functional.linear, weight=weight, bias=bias)


class _NotPlain(Exception):
    pass


def _supported(decoder: Any) -> bool:
    import torch

    config = getattr(decoder, "config", None)
    plain_config = (
        getattr(config, "model_type", None) in MODEL_TYPES and getattr(config, "hidden_act", None) == "silu"
        and not (getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True))
        and all(t == "full_attention" for t in getattr(config, "layer_types", None) or ())
        and getattr(config, "pretraining_tp", 1) == 1 and not getattr(config, "mlp_bias", False))
    if not plain_config or type(getattr(decoder, "embed_tokens", None)) is not torch.nn.Embedding:
        return False
    try:
        return hasattr(decoder, "rotary_emb") and _has_norm(decoder.norm) and all(
            _plain_layer(layer) for layer in decoder.layers)
    except (_NotPlain, AttributeError):
        return False


def _plain_layer(layer: Any) -> bool:
    """fp32 CPU projections (biases on the query, key and value only, all or none), RMSNorms, and no other
    module in the attention (no query/key norms)."""
    import torch

    attention, mlp = layer.self_attn, layer.mlp
    qkv = [_linear(getattr(attention, n)) for n in ("q_proj", "k_proj", "v_proj")]
    rest = [_linear(m) for m in (attention.o_proj, mlp.gate_proj, mlp.up_proj, mlp.down_proj)]
    return (all(p.weight.dtype == torch.float32 and p.weight.device.type == "cpu" for p in qkv + rest)
            and all(p.bias is None for p in rest) and len({p.bias is None for p in qkv}) == 1
            and _has_norm(layer.input_layernorm) and _has_norm(layer.post_attention_layernorm)
            and set(attention._modules) == {"q_proj", "k_proj", "v_proj", "o_proj"}
            and isinstance(getattr(attention, "scaling", None), float))


def _has_norm(norm: Any) -> bool:
    """An RMSNorm of transformers' form: a weight and an epsilon, nothing else."""
    return hasattr(norm, "variance_epsilon") and set(norm.state_dict()) == {"weight"}
