"""Greedy decoding of a batch of chat prompts without the work `generate()` spends on padding, for the
training callback's probes (`tunesafe.training.live_model`).

A probe is compute-bound on a CPU: every prompt of its batch starts with the same chat-template
preamble (Qwen2.5's default system prompt, 20+ tokens), `generate()` computes that preamble once per
row and also runs the padded rows of a left-padded batch, and it keeps decoding rows that already
ended. Here the tokens every prompt shares are run once and their KV cache is repeated for the batch;
the rest of each prompt sits after it, left-padded, with the padding masked out and the positions
counted as if it were not there; and a row leaves the batch (and its KV cache) at its first end token.

The tokens are those `generate(do_sample=False)` picks: the same prompts, positions, attention and argmax
(the arithmetic runs on differently shaped batches, so the logits agree to float rounding, not bit for
bit; tests compare the texts token for token). `plain_greedy` refuses models whose generation config
changes the greedy choice (a repetition penalty, beams, suppressed tokens, ...) and `greedy_decode`
raises `Unsupported` for caches it cannot reorganise (sliding-window or linear-attention layers): the
caller then uses `generate()`.
"""

from __future__ import annotations

import inspect
from collections.abc import Collection, Sequence
from typing import Any

# Generation-config keys that cannot change greedy tokens (sampling knobs are off when do_sample=False;
# the token ids, output and cache options do not touch the logits). Any other key set away from its
# default (repetition_penalty, num_beams, suppress_tokens, min_new_tokens, ...) sends the batch to
# generate(), which applies it.
_NEUTRAL_SETTINGS = frozenset({
    "_from_model_config", "transformers_version", "bos_token_id", "eos_token_id", "pad_token_id",
    "decoder_start_token_id", "do_sample", "temperature", "top_k", "top_p", "min_p", "typical_p", "top_h",
    "epsilon_cutoff", "eta_cutoff", "max_length", "max_new_tokens", "use_cache", "cache_implementation",
    "output_attentions", "output_hidden_states", "output_scores", "output_logits", "return_dict_in_generate",
    "renormalize_logits", "length_penalty", "early_stopping", "low_memory", "disable_compile",
    "compile_config",
})


class Unsupported(Exception):
    """The model cannot be decoded here; use generate()."""


def plain_greedy(model: Any) -> bool:
    """True when generate(do_sample=False) on this model is a bare argmax per step (no logits processor
    from the model's generation config)."""
    config = getattr(model, "generation_config", None)
    if config is None:
        return True
    try:
        changed = config.to_diff_dict()
    except Exception:  # an unusual config object: leave it to generate()
        return False
    return set(changed) <= _NEUTRAL_SETTINGS


def greedy_decode(model: Any, prompts: Sequence[Sequence[int]], *, max_new_tokens: int,
                  eos_ids: Collection[int]) -> list[list[int]]:
    """The greedy continuation of each prompt (token ids), up to and including its first end token or
    `max_new_tokens` tokens. Call it under torch.inference_mode() with the model in eval mode."""
    import torch

    if not prompts or max_new_tokens < 1:
        return [[] for _ in prompts]
    if any(len(p) == 0 for p in prompts):
        raise ValueError("an empty prompt has no next-token position")
    device = next(model.parameters()).device
    keys = _Keywords(model)
    n = len(prompts)
    # Each row keeps at least its last token of its own: its logits are that row's first new token.
    shared = min(_common_prefix(prompts), min(len(p) for p in prompts) - 1)
    cache = None
    if shared:
        out = model(input_ids=torch.tensor([list(prompts[0][:shared])], device=device), use_cache=True,
                    **keys.last_logit_only())
        cache = keys.cache_of(out)
        _check_cache(model, cache)
        cache.batch_repeat_interleave(n)
    rest = [list(p[shared:]) for p in prompts]
    width = max(len(r) for r in rest)
    ids = torch.zeros((n, width), dtype=torch.long)
    mask = torch.zeros((n, shared + width), dtype=torch.long)
    mask[:, :shared] = 1
    positions = torch.zeros((n, width), dtype=torch.long)
    for row, tokens in enumerate(rest):
        start = width - len(tokens)
        ids[row, start:] = torch.tensor(tokens)
        mask[row, shared + start:] = 1
        positions[row, start:] = torch.arange(shared, shared + len(tokens))
    ids, mask, positions = ids.to(device), mask.to(device), positions.to(device)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                **keys.cache_arg(cache), **keys.last_logit_only())
    cache = keys.cache_of(out)
    if not shared:
        _check_cache(model, cache)
    next_position = torch.tensor([len(p) for p in prompts], device=device)
    live = list(range(n))  # batch row -> prompt index
    generated: list[list[int]] = [[] for _ in prompts]
    for step in range(max_new_tokens):
        # generate() takes the argmax of the fp32 logits: the same ties, the same winner
        tokens = out.logits[:, -1, :].float().argmax(dim=-1)
        keep = []
        for row, (index, token) in enumerate(zip(live, tokens.tolist(), strict=True)):
            generated[index].append(token)
            if token not in eos_ids:
                keep.append(row)
        if not keep or step == max_new_tokens - 1:
            break
        if len(keep) < len(live):  # finished rows leave the batch and the cache
            kept = torch.tensor(keep, device=device)
            cache.batch_select_indices(kept)
            tokens, mask, next_position = tokens[kept], mask[kept], next_position[kept]
            live = [live[row] for row in keep]
        mask = torch.cat([mask, mask.new_ones((len(live), 1))], dim=1)
        out = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=next_position[:, None],
                    use_cache=True, **keys.cache_arg(cache))
        cache = keys.cache_of(out)
        next_position = next_position + 1
    return generated


def _common_prefix(prompts: Sequence[Sequence[int]]) -> int:
    first = prompts[0]
    length = min(len(p) for p in prompts)
    for i in range(length):
        token = first[i]
        if any(p[i] != token for p in prompts):
            return i
    return length


def _check_cache(model: Any, cache: Any) -> None:
    """Masked gaps between the shared prefix and a row's own tokens are only sound where attention
    spans the whole cache: a sliding window counts cache slots, not positions."""
    if cache is None or not hasattr(cache, "batch_select_indices"):
        raise Unsupported("the model returned no reorderable KV cache")
    for name in ("is_sliding", "is_linear"):
        if any(getattr(cache, name, ()) or ()):
            raise Unsupported(f"the KV cache has {name[3:]} layers")
    config = getattr(model, "config", None)
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        raise Unsupported("the model uses sliding-window attention")


class _Keywords:
    """The forward() keyword names of this transformers version (4.x: past_key_values and
    num_logits_to_keep; 5.x: cache and logits_to_keep)."""

    def __init__(self, model: Any) -> None:
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        params = set(inspect.signature(base.forward).parameters)
        self.cache = "cache" if "cache" in params else "past_key_values"
        self.keep = next((k for k in ("logits_to_keep", "num_logits_to_keep") if k in params), None)

    def cache_arg(self, cache: Any) -> dict[str, Any]:
        return {} if cache is None else {self.cache: cache}

    def cache_of(self, output: Any) -> Any:
        return getattr(output, self.cache, None)

    def last_logit_only(self) -> dict[str, int]:
        return {self.keep: 1} if self.keep else {}
