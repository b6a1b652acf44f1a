"""The probe's greedy decoder (tunesafe.models.greedy_decode through LiveEngine) against generate():
the same tokens for batches of mixed-length prompts, rows leaving the batch at their end token, and
generate() wherever the decoder would not give its tokens."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from unittest.mock import patch

import pytest

torch = pytest.importorskip("torch")

from tunesafe.models.greedy_decode import ThreadChoice, greedy_decode, length_groups, plain_greedy  # noqa: E402
from tunesafe.models.hf import HFEngine  # noqa: E402
from tunesafe.training.live_model import LiveEngine, generation_mode  # noqa: E402
from tunesafe.types import ChatRequest, Generation, Message  # noqa: E402

SYSTEM = "You are a careful assistant. Answer briefly and plainly."
QUESTIONS = ["Hi", "What is a good name for a cat?", "Explain how rainbows form, in two sentences please.",
             "Plan a weekend in Rome with museums, food and a walk along the river for two people.",
             "How do magnets work?", "Tips?"]


def requests(max_new_tokens: int, *, system: bool = True) -> list[ChatRequest]:
    head = (Message("system", SYSTEM),) if system else ()
    out = [ChatRequest(messages=(*head, Message("user", q)), max_new_tokens=max_new_tokens, temperature=0.0)
           for q in QUESTIONS]
    out.append(ChatRequest(messages=(*head, Message("user", QUESTIONS[1])), prefill="Sure, here is",
                           max_new_tokens=max_new_tokens, temperature=0.0))
    return out


def both_paths(engine: LiveEngine, batch: list[ChatRequest]) -> tuple[list[Generation], list[Generation]]:
    prompts = [engine.prompt(r) for r in batch]
    with torch.inference_mode():
        reference = HFEngine._generate(engine, batch, prompts)  # transformers generate()
    return reference, engine._generate(batch, prompts)


def same(a: Sequence[Generation], b: Sequence[Generation]) -> list[tuple[Any, ...]]:
    assert all(g.ok for g in [*a, *b])
    key = [(g.text, g.finish_reason, g.completion_tokens, g.prompt_tokens) for g in a]
    assert key == [(g.text, g.finish_reason, g.completion_tokens, g.prompt_tokens) for g in b]
    return key


@contextmanager
def forward_shapes(model: Any) -> Iterator[list[tuple[int, int]]]:
    """(batch, tokens) of every pass through the model's layers while the block runs: the token
    embedding's inputs, which the forward and the probe's decode step (one token per row) both embed."""
    shapes: list[tuple[int, int]] = []
    handle = model.get_input_embeddings().register_forward_pre_hook(
        lambda _m, args: shapes.append((args[0].shape[0], args[0].shape[1] if args[0].dim() > 1 else 1)))
    try:
        yield shapes
    finally:
        handle.remove()


@pytest.fixture
def live(tiny: Any) -> Iterator[LiveEngine]:
    model = tiny.model(seed=3)
    model.train()  # as a Trainer hands it to the callback
    with generation_mode(model, tiny.tokenizer):
        yield LiveEngine(model, tiny.tokenizer)


def test_same_tokens_as_generate_with_the_shared_prefix_run_once(live: LiveEngine) -> None:
    batch = requests(12)
    with forward_shapes(live.model) as shapes:
        reference, fast = both_paths(live, batch)
    same(reference, fast)
    assert live.fast_greedy
    # generate()'s forwards all take the whole batch; the decoder's first runs the shared prefix once,
    # then the prompts' own tokens, group by group, with less padding than generate()'s prefill
    fast_start = next(i for i, (rows, _) in enumerate(shapes) if rows == 1)
    assert {rows for rows, _ in shapes[:fast_start]} == {len(batch)}
    prefix_tokens = shapes[fast_start][1]
    groups = [s for s in shapes[fast_start + 1:] if s[1] > 1]
    assert prefix_tokens > 5 and len(groups) > 1 and sum(rows for rows, _ in groups) == len(batch)
    padded = prefix_tokens + sum(rows * tokens for rows, tokens in groups)
    assert padded < len(batch) * shapes[0][1] - (len(batch) - 1) * prefix_tokens


def test_the_probe_multiplies_by_packed_weights_with_generate_s_tokens(live: LiveEngine) -> None:
    from tunesafe.models import packed_linear

    if not packed_linear.onednn_works():
        pytest.skip("this torch has no oneDNN packed linear")
    batch = requests(12)
    reference, fast = both_paths(live, batch)
    same(reference, fast)
    projections = [m.weight for m in live.model.modules()
                   if type(m) is torch.nn.Linear and m is not live.model.get_output_embeddings()]
    assert projections and all(id(w) in packed_linear._PACKS for w in projections)
    assert not any("forward" in m.__dict__ for m in live.model.modules())


def test_without_a_shared_prefix_the_batch_is_left_padded_as_generate_does(live: LiveEngine) -> None:
    batch = requests(10, system=False)
    reference, fast = both_paths(live, batch)
    same(reference, fast)


def test_rows_leave_the_batch_at_their_end_token(live: LiveEngine) -> None:
    batch = requests(16)
    plain = live._generate(batch, [live.prompt(r) for r in batch])
    # the tiny model knows no answers: make a token it emits mid-answer an end token, so rows end early
    ids = [live.tokenizer(g.text, add_special_tokens=False)["input_ids"] for g in plain]
    live.eos_ids.add(ids[0][min(3, len(ids[0]) - 1)])
    with forward_shapes(live.model) as shapes:
        reference, fast = both_paths(live, batch)
    outcomes = same(reference, fast)
    assert {o[1] for o in outcomes} == {"stop", "length"}
    fast_start = next(i for i, (rows, _) in enumerate(shapes) if rows == 1)
    decoder_steps = [rows for rows, tokens in shapes[fast_start:] if tokens == 1]
    assert decoder_steps[0] == len(batch) and min(decoder_steps) < len(batch)
    assert decoder_steps == sorted(decoder_steps, reverse=True)


def test_a_generation_config_that_changes_greedy_choices_goes_to_generate(live: LiveEngine) -> None:
    batch = requests(12)
    live.model.generation_config.repetition_penalty = 3.0
    penalised = LiveEngine(live.model, live.tokenizer)
    assert not plain_greedy(live.model) and not penalised.fast_greedy
    reference, fast = both_paths(penalised, batch)
    same(reference, fast)
    rows = [live.tokenizer(penalised.prompt(r), add_special_tokens=False)["input_ids"] for r in batch]
    with torch.inference_mode():
        bare = greedy_decode(live.model, rows, max_new_tokens=12, eos_ids=live.eos_ids)
    assert [live.tokenizer.decode(t, skip_special_tokens=True) for t in bare] != [g.text for g in reference]


def test_sliding_window_attention_falls_back_to_generate(live: LiveEngine) -> None:
    live.model.config.sliding_window, live.model.config.use_sliding_window = 4096, True
    batch = requests(8)
    reference, fast = both_paths(live, batch)
    same(reference, fast)
    assert not live.fast_greedy  # remembered: the next probe goes straight to generate()


def test_length_groups_pay_padding_only_where_it_is_cheaper_than_a_forward() -> None:
    assert length_groups([5, 6, 5, 7], overhead=32) == [[0, 2, 1, 3]]
    assert length_groups([40, 3, 41, 2], overhead=10) == [[3, 1], [0, 2]]
    assert length_groups([9], overhead=0) == [[0]]
    assert sorted(i for g in length_groups(list(range(30, 0, -1)), overhead=4) for i in g) == list(range(30))


def test_thread_choice_keeps_the_faster_count_and_retries_the_other_as_its_time_ages() -> None:
    now = [0.0]
    choice = ThreadChoice(4, half_life=10.0, clock=lambda: now[0])
    assert choice.settled() == 4
    timed = {4: 3.0, 1: 1.0}  # a busy machine: one thread is faster

    def steps(n: int) -> list[int]:
        picks = []
        for _ in range(n):
            picks.append(choice.pick())
            choice.record(picks[-1], timed[picks[-1]])
            now[0] += timed[picks[-1]]
        return picks

    # each count once, then the faster; 4's 3 s counts for less than 1's 1 s after about 17 s (log2(3)
    # half-lives), when 4 is tried again, loses, and waits as long again
    assert steps(20) == [4, 1] + [1] * 13 + [4] + [1] * 4
    assert choice.settled() == 1
    timed = {4: 0.5, 1: 1.0}  # the machine became idle: the next try of 4 wins and keeps it
    assert steps(20)[-3:] == [4, 4, 4] and choice.settled() == 4
    now[0] += 600  # a probe minutes later tries the other count again early
    assert 1 in steps(5) and choice.settled() == 4
    single = ThreadChoice(1)
    assert single.counts == [1] and [single.pick() for _ in range(3)] == [1, 1, 1]


def test_decode_steps_on_either_thread_count_give_generate_s_tokens(live: LiveEngine) -> None:
    live.threads = ThreadChoice(2, half_life=1e-9)  # the other count ever due: they alternate
    own = torch.get_num_threads()
    counts: list[int] = []
    handle = live.model.get_input_embeddings().register_forward_pre_hook(  # every forward and decode step
        lambda *_: counts.append(torch.get_num_threads()))
    try:
        reference, fast = both_paths(live, requests(16))
    finally:
        handle.remove()
    same(reference, fast)
    assert {1, 2} <= set(counts) and torch.get_num_threads() == own
    assert set(live.threads.seconds) == {1, 2}


def test_the_output_layer_read_through_its_bf16_screen_gives_generate_s_tokens(
        live: LiveEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    from tunesafe.models import screened_argmax

    monkeypatch.setattr(screened_argmax, "bf16_faster", lambda weight, rows=16: True)
    reference, fast = both_paths(live, requests(16))
    same(reference, fast)
    assert live.screen is not None and live.screen.trusted and live.screen.rows > len(QUESTIONS) * 10
    # the screen is rebuilt only when the weights change (here: an optimiser step), and the next probe's
    # engine starts from it
    screen = live.screen
    live._generate(requests(2)[:2], [live.prompt(r) for r in requests(2)[:2]])
    assert live.screen is screen
    next_probe = LiveEngine(live.model, live.tokenizer)
    next_probe._generate(requests(2)[:2], [live.prompt(r) for r in requests(2)[:2]])
    assert next_probe.screen is screen
    with torch.no_grad():
        live.model.lm_head.weight.mul_(1.01)
    reference, fast = both_paths(live, requests(8))
    same(reference, fast)
    assert live.screen is not screen


def test_empty_batch_and_empty_prompt(live: LiveEngine) -> None:
    assert greedy_decode(live.model, [], max_new_tokens=4, eos_ids={0}) == []
    with pytest.raises(ValueError, match="empty prompt"):
        greedy_decode(live.model, [[5, 6], []], max_new_tokens=4, eos_ids={0})


def lora_model(tiny: Any, dtype: Any = None) -> Any:
    from peft import LoraConfig, get_peft_model

    base = tiny.model(seed=3)
    if dtype is not None:
        base = base.to(dtype)
    torch.manual_seed(1)
    # init_lora_weights=False: a non-zero update, as after training (a fresh adapter changes nothing)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                                            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    model.train()
    return model


@contextmanager
def lora_merged_during_forwards(model: Any) -> Iterator[list[bool]]:
    from peft.tuners.lora import LoraLayer

    layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
    seen: list[bool] = []
    handle = model.get_base_model().register_forward_pre_hook(
        lambda *_: seen.append(all(m.merged for m in layers)))
    try:
        yield seen
    finally:
        handle.remove()


def test_lora_is_merged_for_the_decode_and_the_weights_come_back_bit_for_bit(tiny: Any) -> None:
    model = lora_model(tiny)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    batch = requests(12)
    with generation_mode(model, tiny.tokenizer):
        engine = LiveEngine(model, tiny.tokenizer)
        with lora_merged_during_forwards(model) as merged:
            reference, fast = both_paths(engine, batch)
    same(reference, fast)
    assert merged[0] is False and merged[-1] is True  # generate() unmerged, the decoder merged
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.training and not any(m.merged for m in model.modules() if hasattr(m, "merged"))
    # why the copy: PEFT's own unmerge subtracts the update again and does not give the same bits
    model.merge_adapter()
    model.unmerge_adapter()
    assert not all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_disabled_adapter_is_not_merged_into_the_probe(tiny: Any) -> None:
    """Under PEFT's `disable_adapter()` the model answers with its base weights (a baseline of the base
    taken through the adapted model): the probe's decoder must not merge the adapter back in."""
    model = lora_model(tiny)
    batch = requests(12)
    with generation_mode(model, tiny.tokenizer):
        engine = LiveEngine(model, tiny.tokenizer)
        prompts = [engine.prompt(r) for r in batch]
        with torch.inference_mode():
            adapted = HFEngine._generate(engine, batch, prompts)
        with model.disable_adapter():
            reference, fast = both_paths(engine, batch)
    assert [g.text for g in adapted] != [g.text for g in reference]  # the adapter changes the answers
    same(reference, fast)


def test_lora_in_half_precision_is_left_unmerged(tiny: Any) -> None:
    from tunesafe.training.lora_merge import merge_lora

    assert merge_lora(lora_model(tiny, torch.bfloat16)) is None
    assert merge_lora(lora_model(tiny), max_copy_bytes=1024) is None
    assert merge_lora(tiny.model()) is None  # no LoRA
    model = lora_model(tiny)
    restore = merge_lora(model)
    assert restore is not None and all(m.merged for m in model.modules() if hasattr(m, "merged"))
    restore()
    assert not any(m.merged for m in model.modules() if hasattr(m, "merged"))


def test_lora_merge_is_peft_s_sum_and_the_restore_swaps_the_untouched_weights_back(tiny: Any,
                                                                                   monkeypatch: Any) -> None:
    from peft.tuners.lora import LoraLayer

    from tunesafe.training.lora_merge import merge_lora

    model = lora_model(tiny)
    layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
    weights: list[Any] = [m.get_base_layer().weight for m in layers]
    before = [(w.data_ptr(), w.detach().clone()) for w in weights]
    model.merge_adapter()  # PEFT's own in-place merge: the sums ours must give bit for bit
    peft_sums = [w.detach().clone() for w in weights]
    model.unmerge_adapter()
    for w, (_, original) in zip(weights, before, strict=True):
        w.data.copy_(original)
    own, originals = torch.get_num_threads(), [w.data for w in weights]
    other = 1 if own != 1 else 2  # not the current count, or the check below could not fail
    counts: list[int] = []
    delta = type(layers[0]).get_delta_weight
    with patch.object(type(layers[0]), "get_delta_weight",
                      lambda self, name: counts.append(torch.get_num_threads()) or delta(self, name)):
        restore = merge_lora(model, threads=other)
    assert counts and set(counts) == {other}  # the caller's count (the one its decode steps found faster)
    assert restore is not None and all(m.merged for m in layers) and torch.get_num_threads() == own
    assert all(torch.equal(w, s) for w, s in zip(weights, peft_sums, strict=True))
    # the merge wrote new tensors: the originals, still held, keep their bits while the probe runs
    assert all(torch.equal(d, o) for d, (_, o) in zip(originals, before, strict=True))
    restore()
    assert not any(m.merged for m in layers)
    assert all(w.data_ptr() == p and torch.equal(w, o) for w, (p, o) in zip(weights, before, strict=True))
    # a layer that cannot merge midway: the layers merged before it are put back, nothing stays merged
    monkeypatch.setattr(layers[3], "get_delta_weight", lambda _name: torch.ones(3))
    assert merge_lora(model) is None
    assert not any(m.merged for m in layers) and [w.data_ptr() for w in weights] == [p for p, _ in before]


def test_dora_and_lora_bias_are_left_unmerged(tiny: Any) -> None:
    from peft import LoraConfig, get_peft_model

    from tunesafe.training.lora_merge import merge_lora

    targets = ["q_proj", "v_proj"]
    for config in (LoraConfig(r=4, target_modules=targets, use_dora=True),
                   LoraConfig(r=4, target_modules=targets, lora_bias=True)):
        assert merge_lora(get_peft_model(tiny.model(seed=3), config)) is None


@pytest.mark.slow
def test_smollm2_with_a_lora_decodes_the_demo_probe_as_generate_does() -> None:
    from peft import LoraConfig, get_peft_model

    from tunesafe.training.lora_sft import load_base
    from tunesafe.training.mitigation_demo import DEMO_PROBE
    from tunesafe.training.probes import select_probe_set

    model, tokenizer = load_base("embedded:smollm2-135m")
    torch.manual_seed(0)
    # init_lora_weights=False: a non-zero update, as after training (a fresh adapter changes nothing)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, init_lora_weights=False,
                                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    probe = select_probe_set("default", **DEMO_PROBE)
    batch = [ChatRequest(messages=a.messages, prefill=a.prefill, max_new_tokens=32, temperature=0.0)
             for a in probe.attempts]
    model.train()
    with generation_mode(model, tokenizer):
        engine = LiveEngine(model, tokenizer)
        lengths = {len(tokenizer(engine.prompt(r), add_special_tokens=False)["input_ids"]) for r in batch}
        assert len(lengths) > 5  # mixed lengths: the batch is padded
        reference, fast = both_paths(engine, batch)
    same(reference, fast)
    assert engine.fast_greedy and model.training


def test_a_template_opened_reasoning_block_is_settled_as_generate_settles_it(
        live: LiveEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """An R1-style template puts `<think>` in the prompt: both probe paths must read the new text as
    reasoning (here it never closes, so no answer: an error), not judge it as the answer."""
    template = live.tokenizer.chat_template + "{% if add_generation_prompt %}<think>\n{% endif %}"
    monkeypatch.setattr(live.tokenizer, "chat_template", template)
    batch = requests(6)[:3]
    reference, probe = both_paths(live, batch)
    assert not any(g.ok for g in reference)
    settled = [[(g.error, g.reasoning, g.text) for g in gens] for gens in (reference, probe)]
    assert settled[0] == settled[1]
