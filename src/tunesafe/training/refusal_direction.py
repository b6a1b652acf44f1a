"""The refusal direction(s) of an aligned chat model from its own activations (Arditi et al. 2024).

Per decoder layer l, with x_l(p) the residual stream at the output of block l at the last prompt token
(the end of the chat template's generation prompt) of prompt p:

    d_l = mean_{p harmful} x_l(p) - mean_{p harmless} x_l(p)        (difference of means, in float64)
    r_l = d_l / ||d_l||

The paper selects one (layer, position) candidate by ablation scores; here every layer keeps its own r_l,
because the projection of an adapter needs the direction of the stream each layer writes into. The
prompts are the suite's harmful and benign items, picked deterministically across categories; the items
of the `smoke` suite are left out so that a smoke evaluation of the projected adapter is not measured on
the prompts the direction came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tunesafe.errors import UserError
from tunesafe.types import Behavior, canonical_json, sha256_hex

DEFAULT_PROMPTS = 32
HELD_BACK_SUITE = "smoke"


@dataclass(frozen=True)
class Directions:
    vectors: Any  # torch.Tensor [n_layers, hidden], unit rows, float32
    diff_norms: tuple[float, ...]  # ||d_l|| per layer: how far apart the two means are
    harmful_ids: tuple[str, ...]
    harmless_ids: tuple[str, ...]
    suite: str
    prompts_hash: str  # sha256 over the ids and texts of both prompt sets

    def provenance(self) -> dict[str, Any]:
        return {"suite": self.suite, "position": "last prompt token", "stream": "output of each block",
                "harmful_ids": list(self.harmful_ids), "harmless_ids": list(self.harmless_ids),
                "prompts_hash": self.prompts_hash, "held_back_suite": HELD_BACK_SUITE,
                "diff_norms": [round(x, 6) for x in self.diff_norms]}


def direction_prompts(suite: str, n: int) -> tuple[list[Behavior], list[Behavior]]:
    """n harmful and n benign behaviours of `suite`, spread over categories, none from the smoke suite."""
    from tunesafe.suite import load_suite
    from tunesafe.training.probes import _spread

    if n < 2:
        raise UserError(f"--prompts {n} is too few for a mean", where="--prompts", fix="use 8 or more")
    loaded = load_suite(suite)
    held_back = {b.id for b in load_suite(HELD_BACK_SUITE).behaviors}
    picked = []
    for kind in ("harmful", "benign"):
        pool = [b for b in loaded.select(kind=kind) if b.id not in held_back]
        if len(pool) < n:
            raise UserError(f"suite '{suite}' has {len(pool)} {kind} items outside the smoke suite, "
                            f"{n} are needed", where=suite, fix="lower --prompts or use a larger suite")
        picked.append(_spread(pool, n))
    return picked[0], picked[1]


def decoder_layers(model: Any) -> Sequence[Any]:
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None:
        raise UserError(f"cannot find the decoder layers of {type(model).__name__}", where="--base",
                        fix="use a Llama-style causal LM (model.model.layers), e.g. Llama, Qwen2, Mistral")
    return list(layers)


def _last_token_states(model: Any, tokenizer: Any, text: str) -> list[Any]:
    """The residual stream after every block at the last prompt token, one prompt at a time (no padding,
    so positions are exactly those of a real request)."""
    import torch

    from tunesafe.models.greedy_decode import last_logit_only

    ids = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                        tokenize=True, return_dict=True)["input_ids"]
    captured: list[Any] = []

    def keep(_module: Any, _inputs: Any, output: Any) -> None:
        hidden = output[0] if isinstance(output, tuple) else output
        captured.append(hidden[0, -1].detach().to(torch.float64))

    hooks = [layer.register_forward_hook(keep) for layer in decoder_layers(model)]
    try:
        with torch.no_grad():
            model(input_ids=torch.tensor([list(ids)]), **last_logit_only(model))  # no unused logits
    finally:
        for hook in hooks:
            hook.remove()
    return captured


def refusal_directions(model: Any, tokenizer: Any, harmful: Sequence[Behavior],
                       harmless: Sequence[Behavior], suite: str = "") -> Directions:
    import torch

    model.eval()
    means = []
    for group in (harmful, harmless):
        states = [torch.stack(_last_token_states(model, tokenizer, b.text)) for b in group]
        means.append(torch.stack(states).mean(dim=0))
    diff = means[0] - means[1]
    norms = diff.norm(dim=1)
    if bool((norms == 0).any()):
        raise UserError("harmful and harmless prompts give identical activations at some layer",
                        where="--base", fix="check that the base model is a trained chat model")
    vectors = (diff / norms[:, None]).to(torch.float32)
    digest = sha256_hex(canonical_json([[b.id, b.text] for b in (*harmful, *harmless)]))
    return Directions(vectors=vectors, diff_norms=tuple(float(x) for x in norms),
                      harmful_ids=tuple(b.id for b in harmful), harmless_ids=tuple(b.id for b in harmless),
                      suite=suite, prompts_hash=digest)
