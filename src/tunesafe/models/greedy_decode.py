"""Greedy decoding of a batch of chat prompts without the work `generate()` spends on padding, for the
training callback's probes (`tunesafe.training.live_model`).

A probe is compute-bound on a CPU: every prompt of its batch starts with the same chat-template
preamble (Qwen2.5's default system prompt, 20+ tokens), `generate()` computes that preamble once per
row and also runs the padded rows of a left-padded batch, and it keeps decoding rows that already
ended. Here the tokens every prompt shares are run once and their KV cache is repeated for the batch;
the rest of each prompt sits after it, left-padded, with the padding masked out and the positions
counted as if it were not there (prompts of similar length are prefilled together, so little padding is
computed); and a row leaves the batch (and its KV cache) at its first end token.

The tokens are those `generate(do_sample=False)` picks: the same prompts, positions, attention and argmax
(the arithmetic runs on differently shaped batches, so the logits agree to float rounding, not bit for
bit; tests compare the texts token for token). `plain_greedy` refuses models whose generation config
changes the greedy choice (a repetition penalty, beams, suppressed tokens, ...) and `greedy_decode`
raises `Unsupported` for caches it cannot reorganise (sliding-window or linear-attention layers): the
caller then uses `generate()`.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

from tunesafe.models.decode_step import DecodeStep
from tunesafe.models.screened_argmax import ScreenedArgmax

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


# A forward costs more than its tokens (per-layer overhead, a smaller matrix product): a prompt group of
# its own must save at least this many padded tokens.
GROUP_OVERHEAD_TOKENS = 32


class ThreadChoice:
    """The intra-op thread count of the decoder's forwards on a CPU: torch's own count or one thread,
    whichever its latest timed decode step was faster with. Keep one per process: it is about the
    machine, and what a probe learnt serves the next one's prefill and first steps.

    Why: on a machine shared with other work every multi-threaded operation waits for its slowest thread,
    and a thread that lost its core stalls it for a scheduler slice. A decode step is hundreds of small
    operations: on the busy 2-core machine of BENCHMARKS.md a probe decoded 4-5x slower on two threads
    than on one, while on an idle machine the second thread pays. The count in use is timed at every
    step; the other's last time counts for half as much every `half_life` seconds, so it is tried again
    (on one step) when it may have become the faster: soon after a near tie, rarely after a clear loss
    (each try costs one slow step), and at the first step of a probe minutes later."""

    def __init__(self, threads: int, half_life: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.counts = sorted({max(threads, 1), 1}, reverse=True)
        self.seconds: dict[int, float] = {}  # each count's latest step
        self.when: dict[int, float] = {}
        self.half_life, self.clock = half_life, clock

    def settled(self) -> int:
        """The count measured faster (torch's own before any step was timed)."""
        return min(self.seconds, key=self.seconds.__getitem__) if self.seconds else self.counts[0]

    def pick(self) -> int:
        untried = [n for n in self.counts if n not in self.seconds]
        if untried:
            return untried[0]
        now = self.clock()
        aged = {n: self.seconds[n] * 0.5 ** ((now - self.when[n]) / self.half_life) for n in self.counts}
        return min(aged, key=aged.__getitem__)

    def record(self, threads: int, seconds: float) -> None:
        self.seconds[threads], self.when[threads] = seconds, self.clock()


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
                  eos_ids: Collection[int], threads: ThreadChoice | None = None,
                  screen: ScreenedArgmax | None = None,
                  decode_step: DecodeStep | None = None) -> list[list[int]]:
    """The greedy continuation of each prompt (token ids), up to and including its first end token or
    `max_new_tokens` tokens. Call it under torch.inference_mode() with the model in eval mode. On a CPU,
    `threads` picks the intra-op thread count of each forward (torch's own count is put back after),
    `screen` (from `output_screen(model)`) takes each argmax without the full fp32 output layer, and
    `decode_step` (from `DecodeStep.of(model)`) runs the steps after the prefill in place of the forward."""
    import torch

    if not prompts or max_new_tokens < 1:
        return [[] for _ in prompts]
    if any(len(p) == 0 for p in prompts):
        raise ValueError("an empty prompt has no next-token position")
    device = next(model.parameters()).device
    if threads is None or device.type != "cpu":
        return _decode(model, prompts, max_new_tokens, eos_ids, device, None, screen, decode_step)
    own = torch.get_num_threads()
    try:
        return _decode(model, prompts, max_new_tokens, eos_ids, device, threads, screen, decode_step)
    finally:
        torch.set_num_threads(own)


def _decode(model: Any, prompts: Sequence[Sequence[int]], max_new_tokens: int, eos_ids: Collection[int],
            device: Any, threads: ThreadChoice | None, screen: ScreenedArgmax | None,
            decode_step: DecodeStep | None) -> list[list[int]]:
    import torch

    if threads is not None:  # the prefill takes the count the last decode steps found faster
        torch.set_num_threads(threads.settled())
    keys = _Keywords(model, screen)
    # Each row keeps at least its last token of its own: its logits are that row's first new token.
    shared = min(_common_prefix(prompts), min(len(p) for p in prompts) - 1)
    prefix: list[tuple[Any, Any]] = []
    if shared:
        out = model(input_ids=torch.tensor([list(prompts[0][:shared])], device=device), use_cache=True,
                    **keys.last_logit_only())
        cache = keys.cache_of(out)
        _check_cache(model, cache)
        prefix = _layers(cache)
    rest = [list(p[shared:]) for p in prompts]
    width = max(len(r) for r in rest)
    groups = length_groups([len(r) for r in rest])
    live = [i for rows in groups for i in rows]  # batch row -> prompt index
    parts = [_prefill(keys, prefix, [rest[i] for i in rows], device) for rows in groups]
    tokens = torch.cat([first for first, _ in parts])
    cache = parts[0][1] if len(parts) == 1 else _join([kv for _, kv in parts], shared, width)
    mask = torch.zeros((len(live), shared + width), dtype=torch.long, device=device)
    mask[:, :shared] = 1
    for row, index in enumerate(live):
        mask[row, shared + width - len(rest[index]):] = 1
    next_position = torch.tensor([len(prompts[i]) for i in live], device=device)
    generated: list[list[int]] = [[] for _ in prompts]
    for step in range(max_new_tokens):
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
        if threads is not None:
            count = threads.pick()
            torch.set_num_threads(count)
            started = time.perf_counter()
        if decode_step is not None:
            tokens = keys.next_tokens(decode_step(tokens, mask, next_position, cache))
        else:
            cache, tokens = keys.forward(input_ids=tokens[:, None], attention_mask=mask,
                                         position_ids=next_position[:, None], use_cache=True,
                                         **keys.cache_arg(cache))
        if threads is not None:  # on a CPU the argmax has waited for the forward: the step's whole time
            threads.record(count, time.perf_counter() - started)
        next_position = next_position + 1
    return generated


def length_groups(lengths: Sequence[int], overhead: int = GROUP_OVERHEAD_TOKENS) -> list[list[int]]:
    """Indices by ascending length, cut into the groups that minimise the padded tokens of a prefill run
    group by group (each group padded to its longest), counting `overhead` tokens per extra forward."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    best = [0] + [0] * len(order)  # best[j]: cost of the first j rows
    cut = [0] * (len(order) + 1)
    for j in range(1, len(order) + 1):
        best[j], cut[j] = min((best[i] + (j - i) * lengths[order[j - 1]] + overhead, i) for i in range(j))
    groups = []
    j = len(order)
    while j:
        groups.append(order[cut[j]:j])
        j = cut[j]
    return groups[::-1]


def _prefill(keys: _Keywords, prefix: list[tuple[Any, Any]], rest: list[list[int]],
             device: Any) -> tuple[Any, Any]:
    """One group's own prompt tokens, left-padded after the shared prefix (masked out, positions counted
    as if absent): its first new tokens and its KV cache."""
    import torch
    from transformers import DynamicCache

    n, width, shared = len(rest), max(len(r) for r in rest), prefix[0][0].shape[2] if prefix else 0
    cache = None
    if prefix:
        cache = DynamicCache()
        for layer, (k, v) in enumerate(prefix):
            cache.update(k.expand(n, -1, -1, -1).contiguous(), v.expand(n, -1, -1, -1).contiguous(), layer)
    ids = torch.zeros((n, width), dtype=torch.long)
    mask = torch.zeros((n, shared + width), dtype=torch.long)
    mask[:, :shared] = 1
    positions = torch.zeros((n, width), dtype=torch.long)
    for row, tokens in enumerate(rest):
        start = width - len(tokens)
        ids[row, start:] = torch.tensor(tokens)
        mask[row, shared + start:] = 1
        positions[row, start:] = torch.arange(shared, shared + len(tokens))
    result, tokens = keys.forward(input_ids=ids.to(device), attention_mask=mask.to(device),
                                  position_ids=positions.to(device), use_cache=True, **keys.cache_arg(cache))
    if not prefix:
        _check_cache(keys.model, result)
    return tokens, result


def _join(caches: list[Any], shared: int, width: int) -> Any:
    """One batch cache from the groups' caches, each group's gap after the shared prefix widened to the
    longest group's (zeros there are never attended: the mask hides them)."""
    import torch
    from transformers import DynamicCache

    joined = DynamicCache()
    per_group = [_layers(c) for c in caches]
    for layer in range(len(per_group[0])):
        keys, values = [], []
        for group in per_group:
            k, v = group[layer]
            gap = k.new_zeros((k.shape[0], k.shape[1], shared + width - k.shape[2], k.shape[3]))
            keys.append(torch.cat([k[:, :, :shared], gap, k[:, :, shared:]], dim=2))
            gap = v.new_zeros((v.shape[0], v.shape[1], shared + width - v.shape[2], v.shape[3]))
            values.append(torch.cat([v[:, :, :shared], gap, v[:, :, shared:]], dim=2))
        joined.update(torch.cat(keys), torch.cat(values), layer)
    return joined


def _layers(cache: Any) -> list[tuple[Any, Any]]:
    """(keys, values) per layer, [batch, heads, tokens, head_dim]; iterating a DynamicCache gives them
    first in transformers 4 and 5."""
    return [(entry[0], entry[1]) for entry in cache]


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


def last_logit_only(model: Any) -> dict[str, int]:
    """forward() keywords that compute the output layer at the last position only (transformers 4.x:
    num_logits_to_keep, 5.x: logits_to_keep); none for a model that takes neither."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(base.forward).parameters
    key = next((k for k in ("logits_to_keep", "num_logits_to_keep") if k in params), None)
    return {key: 1} if key else {}


class _Keywords:
    """The model's forward() as the decoder calls it: the keyword names of this transformers version
    (4.x: past_key_values and num_logits_to_keep; 5.x: cache and logits_to_keep), and the next token of
    each row from the last position's logits, or from the final hidden state through a screen."""

    def __init__(self, model: Any, screen: ScreenedArgmax | None = None) -> None:
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        params = set(inspect.signature(base.forward).parameters)
        self.cache = "cache" if "cache" in params else "past_key_values"
        self._last_only = last_logit_only(base)
        self.model, self.screen = model, screen
        self.decoder: Any = base.get_decoder() if screen is not None else None
        self.head: Any = base.get_output_embeddings()

    def forward(self, **inputs: Any) -> tuple[Any, Any]:
        """The KV cache after these inputs and each row's greedy next token."""
        if self.screen is not None:
            out = self.decoder(**inputs)
            return self.cache_of(out), self.screen(out.last_hidden_state[:, -1, :])
        out = self.model(**inputs, **self.last_logit_only())
        # generate() takes the argmax of the fp32 logits: the same ties, the same winner
        return self.cache_of(out), out.logits[:, -1, :].float().argmax(dim=-1)

    def next_tokens(self, hidden: Any) -> Any:
        """Each row's greedy next token from its final hidden state ([rows, hidden])."""
        if self.screen is not None:
            return self.screen(hidden)
        return self.head(hidden).float().argmax(dim=-1)

    def cache_arg(self, cache: Any) -> dict[str, Any]:
        return {} if cache is None else {self.cache: cache}

    def cache_of(self, output: Any) -> Any:
        return getattr(output, self.cache, None)

    def last_logit_only(self) -> dict[str, int]:
        return self._last_only
