"""The probe's fused decode step (tunesafe.models.decode_step) against the model's own forward: the same
hidden states and the same greedy tokens on a tiny Llama (grouped query heads) and a tiny Qwen2 (query,
key and value biases), with and without packed weights, and no step wherever it would not compute the
model's forward."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tunesafe.models.decode_step import DecodeStep  # noqa: E402
from tunesafe.models.greedy_decode import greedy_decode  # noqa: E402
from tunesafe.models.packed_linear import onednn_works, packed_linears  # noqa: E402

PROMPTS = [[5, 9, 13, 2, 7, 30, 31], [5, 9, 13, 2, 44, 3], [5, 9, 13, 2, 8, 8, 60, 61, 62], [5, 9, 13, 2, 70]]


def qwen2(seed: int = 1, **overrides: Any) -> Any:
    torch.manual_seed(seed)
    settings = {"vocab_size": 96, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
                "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256,
                "use_sliding_window": False}
    config = transformers.Qwen2Config(**(settings | overrides))
    model = transformers.Qwen2ForCausalLM(config)
    with torch.no_grad():  # random biases: zeros would hide a bias the step forgot
        for layer in model.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias.normal_(0, 0.5)
    return model.eval()


def generate(model: Any, prompts: list[list[int]], new: int) -> list[list[int]]:
    """transformers' greedy generate() on each prompt alone (no padding): the reference tokens."""
    out = []
    for prompt in prompts:
        ids = model.generate(torch.tensor([prompt]), max_new_tokens=new, do_sample=False, min_new_tokens=new,
                             pad_token_id=0, eos_token_id=None)
        out.append(ids[0, len(prompt):].tolist())
    return out


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("make", ["llama", "qwen2"])
def test_the_step_gives_generate_s_tokens(tiny: Any, make: str, packed: bool) -> None:
    if packed and not onednn_works():
        pytest.skip("this torch has no oneDNN packed linear")
    model = tiny.model(seed=3).eval() if make == "llama" else qwen2()
    calls: list[int] = []
    with torch.inference_mode(), packed_linears(model) if packed else nullcontext(0) as count:
        assert bool(count) == packed
        step = DecodeStep.of(model, packed=packed)
        assert step is not None
        counted = _Counted(step, calls)
        fused = greedy_decode(model, PROMPTS, max_new_tokens=12, eos_ids=set(), decode_step=counted)
        plain = greedy_decode(model, PROMPTS, max_new_tokens=12, eos_ids=set())
    assert calls and all(rows == len(PROMPTS) for rows in calls)  # every step after the prefill
    assert fused == plain == generate(model, PROMPTS, 12)


def test_the_step_computes_the_forward_s_hidden_states() -> None:
    model = qwen2(seed=4)
    with torch.inference_mode():
        prompt = torch.tensor([PROMPTS[0], PROMPTS[0]])
        out = model.model(input_ids=prompt, use_cache=True)
        step = DecodeStep.of(model, packed=False)
        assert step is not None
        tokens = torch.tensor([11, 12])
        mask = torch.ones((2, prompt.shape[1] + 1), dtype=torch.long)
        mask[1, 0] = 0  # a padded slot in one row: masked out of its attention
        positions = torch.tensor([prompt.shape[1], prompt.shape[1] - 1])
        reference = model.model(input_ids=tokens[:, None], attention_mask=mask,
                                position_ids=positions[:, None], cache=_copy(out.past_key_values),
                                use_cache=True).last_hidden_state[:, -1]
        cache = out.past_key_values
        hidden = step(tokens, mask, positions, cache)
    assert torch.allclose(hidden, reference, atol=1e-5, rtol=1e-5)
    assert cache.get_seq_length() == prompt.shape[1] + 1  # the step extended the cache as the forward does


def test_no_step_where_it_would_not_compute_the_model_s_forward(tiny: Any) -> None:
    from peft import LoraConfig, get_peft_model

    from tunesafe.training.lora_merge import merge_lora

    assert DecodeStep.of(qwen2(), packed=False) is not None
    lora = get_peft_model(tiny.model(seed=3), LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                         init_lora_weights=False))
    assert DecodeStep.of(lora, packed=False) is None  # the LoRA path would be skipped: unmerged, no step
    restore = merge_lora(lora)
    assert restore is not None
    assert DecodeStep.of(lora, packed=False) is not None  # merged for the probe: the base layers compute it
    restore()
    assert DecodeStep.of(qwen2(use_sliding_window=True, sliding_window=4), packed=False) is None
    assert DecodeStep.of(qwen2(hidden_act="gelu"), packed=False) is None
    assert DecodeStep.of(qwen2().to(torch.bfloat16), packed=False) is None
    unscaled = qwen2()
    del unscaled.model.layers[1].self_attn.scaling  # an attention of another transformers version
    assert DecodeStep.of(unscaled, packed=False) is None
    torch.manual_seed(0)
    llama_mlp_bias = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, mlp_bias=True))
    assert DecodeStep.of(llama_mlp_bias, packed=False) is None
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2,
                                                                vocab_size=64))
    assert DecodeStep.of(gpt2, packed=False) is None


class _Counted:
    def __init__(self, step: DecodeStep, calls: list[int]) -> None:
        self.step, self.calls = step, calls

    def __call__(self, tokens: Any, mask: Any, positions: Any, cache: Any) -> Any:
        self.calls.append(tokens.shape[0])
        return self.step(tokens, mask, positions, cache)


def _copy(cache: Any) -> Any:
    import copy

    return copy.deepcopy(cache)
