"""The screened argmax (tunesafe.models.screened_argmax): the fp32 argmax of every row, near ties, ties and
non-finite rows included, read through a bf16 copy of the output layer; and the cases it declines."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tunesafe.models import screened_argmax  # noqa: E402
from tunesafe.models.screened_argmax import ScreenedArgmax, output_screen  # noqa: E402


@pytest.fixture(autouse=True)
def bf16_is_faster(monkeypatch: pytest.MonkeyPatch) -> None:
    # the speed decision is the machine's; here the screen must run whatever the CPU
    monkeypatch.setattr(screened_argmax, "bf16_faster", lambda weight, rows=16: True)


def head(vocab: int = 3000, hidden: int = 64, seed: int = 0) -> Any:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(vocab, hidden, generator=generator) * 0.05


def test_every_row_gets_the_fp32_argmax_including_near_ties() -> None:
    weight = head()
    # near ties the bf16 product cannot order: copies of a row nudged by less than bf16 resolves
    for offset, row in enumerate((7, 1200, 2999)):
        weight[100 + offset] = weight[row] * (1 + 3e-4)
    hidden = torch.randn(64, 64, generator=torch.Generator().manual_seed(1)) * 40
    hidden[:3] = weight[[7, 1200, 2999]] * 500  # rows that pick one of the nudged tokens
    screen = ScreenedArgmax(weight)
    exact = (hidden @ weight.T).argmax(dim=-1)
    assert torch.equal(screen(hidden), exact)
    assert screen.trusted
    approx = (hidden.bfloat16() @ weight.bfloat16().T).float().argmax(dim=-1)
    assert not torch.equal(approx, exact)  # bf16 alone would have picked other tokens


@pytest.mark.parametrize("onednn", [True, False])
def test_the_bf16_copy_is_read_through_its_pack_where_onednn_works(monkeypatch: pytest.MonkeyPatch,
                                                                  onednn: bool) -> None:
    from tunesafe.models import packed_linear

    if onednn and not packed_linear.onednn_works():
        pytest.skip("this torch has no oneDNN packed linear")
    monkeypatch.setattr(packed_linear, "_WORKS", [onednn])
    weight = head()
    hidden = torch.randn(16, 64, generator=torch.Generator().manual_seed(2)) * 40
    screen = ScreenedArgmax(weight)
    assert torch.equal(screen(hidden), (hidden @ weight.T).argmax(dim=-1))
    assert (screen._packed is not None and screen._packed[1] is not None) == onednn
    plain = torch.nn.functional.linear(hidden.bfloat16(), screen.low).float()
    assert torch.allclose(screen.approx(hidden)[0], plain, rtol=1e-2, atol=1e-2)


def test_exact_ties_go_to_the_lowest_token_id_as_argmax_does() -> None:
    weight = head()
    weight[2500] = weight[40]
    hidden = (weight[40] * 300).repeat(2, 1)
    assert ScreenedArgmax(weight)(hidden).tolist() == [40, 40]
    assert (hidden @ weight.T).argmax(dim=-1).tolist() == [40, 40]


def test_a_non_finite_row_is_read_in_full() -> None:
    weight = head()
    hidden = torch.randn(3, 64)
    hidden[1, 5] = torch.nan
    assert torch.equal(ScreenedArgmax(weight)(hidden), (hidden @ weight.T).argmax(dim=-1))


def test_a_bf16_product_outside_the_bound_is_not_trusted() -> None:
    weight = head()
    screen = ScreenedArgmax(weight)
    screen.low = weight.flip(0).bfloat16()  # a kernel that returns other logits altogether
    hidden = torch.randn(8, 64) * 10
    assert not screen.check(hidden)
    assert torch.equal(screen(hidden), (hidden @ weight.T).argmax(dim=-1))
    assert screen.trusted is False


def test_a_cpu_with_slow_bf16_keeps_the_fp32_product(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(screened_argmax, "bf16_faster", lambda weight, rows=16: False)
    weight = head()  # the screen holds its layer weakly
    screen = ScreenedArgmax(weight)
    assert not screen.check(torch.randn(4, 64))


def llama(**overrides: Any) -> Any:
    config = dict(vocab_size=500, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                  num_attention_heads=4, num_key_value_heads=2)
    config.update(overrides)
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(**config))


def test_the_screen_follows_the_weights_and_declines_heads_it_cannot_read() -> None:
    model = llama()
    screen = output_screen(model)
    assert screen is not None and screen.weight is model.lm_head.weight
    assert output_screen(model) is screen
    with torch.no_grad():
        model.lm_head.weight.add_(0.01)  # an optimiser step: the bf16 copy is stale
    fresh = output_screen(model)
    assert fresh is not None and fresh is not screen
    assert torch.equal(fresh.low, model.lm_head.weight.bfloat16())
    # the screen goes with its model: nothing of the model is kept alive for the next one
    gone = weakref.ref(fresh)
    del model, screen, fresh
    gc.collect()
    assert gone() is None

    assert output_screen(llama().to(torch.bfloat16)) is None  # not fp32
    biased = llama()
    biased.lm_head = torch.nn.Linear(32, 500, bias=True)
    assert output_screen(biased) is None
    gemma = transformers.Gemma2ForCausalLM(transformers.Gemma2Config(
        vocab_size=500, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8))
    assert output_screen(gemma) is None  # soft-capped logits: not a plain product


def test_weights_made_under_inference_mode_are_screened() -> None:
    with torch.inference_mode():
        weight = head()
        hidden = torch.randn(4, 64) * 20
        screen = ScreenedArgmax(weight)
        assert torch.equal(screen(hidden), (hidden @ weight.T).argmax(dim=-1))
    assert ScreenedArgmax.key_of(weight) == screen.key


def test_each_token_is_bounded_by_its_own_row_norm() -> None:
    # a few long rows (as in SmolLM2's head) must not widen every other token's bound
    weight = head(vocab=4000)
    weight[:20] *= 30
    hidden = torch.randn(16, 64, generator=torch.Generator().manual_seed(3)) * 40
    screen = ScreenedArgmax(weight)
    assert torch.equal(screen(hidden), (hidden @ weight.T).argmax(dim=-1))
    assert screen.fallbacks == 0
    assert screen.rescored < 16 * 40  # the largest row norm for every token let most of the layer through


def test_too_many_candidates_read_the_layer_in_full() -> None:
    weight = head(vocab=400)
    hidden = torch.zeros(4, 64)  # separates no token: every one stays in the race
    screen = ScreenedArgmax(weight)
    assert torch.equal(screen(hidden), (hidden @ weight.T).argmax(dim=-1))
    assert screen.fallbacks == 1 and screen.rescored == 0
