"""SafetyCallback under the Trainer configurations teams use beyond the defaults: gradient accumulation,
sparse logging, fractional epochs, epoch and step checkpoints with the best model loaded at the end,
evaluation during training, warmup schedulers, the callback added twice, packed TRL datasets and LoRA.
Each runs the tiny model from conftest for a few steps with the local `default` judge."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from tunesafe.policy.model import TrainingPolicy
from tunesafe.training import SafetyCallback

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("probe_on_one_thread")


def policy(**training: Any) -> TrainingPolicy:
    return TrainingPolicy.model_validate(training)


def body_of(callback: SafetyCallback) -> dict[str, Any]:
    assert callback.record is not None
    return callback.record


def probes(body: dict[str, Any]) -> list[tuple[int, str]]:
    return [(p["step"], p["trigger"]) for p in body["probes"]]


def test_gradient_accumulation_counts_optimizer_steps_and_logs_the_mean_loss(tiny: Any,
                                                                             tmp_path: Path) -> None:
    """4 rows a step as 1 x 4 or as 2 accumulated micro-batches of 2: the same steps, probes and loss."""
    bodies = []
    for accumulate in (1, 2):
        callback = SafetyCallback(probe_every=2, max_new_tokens=4)
        tiny.trainer(tiny.model(), [callback], tmp_path / f"ga{accumulate}", learning_rate=1e-5, max_steps=4,
                     gradient_accumulation_steps=accumulate,
                     per_device_train_batch_size=4 // accumulate).train()
        bodies.append(body_of(callback))
    one, two = bodies
    assert probes(two) == probes(one) == [(0, "start"), (2, "interval"), (4, "interval")]
    assert [s for s, _ in two["loss_curve"]] == [1, 2, 3, 4] and two["steps"] == two["planned_steps"] == 4
    for (_, a), (_, b) in zip(one["loss_curve"], two["loss_curve"], strict=True):
        assert a == pytest.approx(b, rel=1e-3)  # the mean over micro-batches, not their sum


def test_a_nan_loss_the_trainer_filters_is_recorded_as_nan_not_as_a_zero_loss(tiny: Any,
                                                                             tmp_path: Path) -> None:
    """The Trainer's logging_nan_inf_filter logs a stand-in for a NaN loss (0.0 when every step is logged):
    the curve must not show a perfect loss, nor the monitor read it as the model memorising its data."""
    callback = SafetyCallback(policy=policy(actions={"loss_nonfinite": "warn"}), probe_every=None,
                              max_new_tokens=4)
    run = tiny.trainer(tiny.model(), [callback, tiny.PoisonAt(2)], tmp_path / "out", max_steps=9)
    run.train()
    body = body_of(callback)
    assert [e["kind"] for e in body["events"]] == ["loss_nonfinite"]  # no loss_collapse from stand-ins
    assert body["events"][0]["step"] == 3
    curve = dict(body["loss_curve"])
    assert all(isinstance(curve[s], float) and math.isfinite(curve[s]) for s in (1, 2))
    assert [curve[s] for s in range(3, 10)] == ["nan"] * 7


def test_sparse_logging_reads_only_the_logged_steps(tiny: Any, tmp_path: Path) -> None:
    callback = SafetyCallback(probe_every=None, max_new_tokens=4, log_every_step=False)
    tiny.trainer(tiny.model(), [callback], tmp_path / "out", learning_rate=1e-5, max_steps=9,
                 logging_steps=3).train()
    body = body_of(callback)
    assert [s for s, _ in body["loss_curve"]] == [3, 6, 9] and not body["events"]


@pytest.mark.parametrize("nan_filter", [True, False])
def test_sparse_logging_names_the_steps_a_nan_loss_may_have_come_from(tiny: Any, tmp_path: Path,
                                                                    nan_filter: bool) -> None:
    """Logged every 3 steps, the loss turns NaN at step 5 (weights poisoned after step 4) and is first seen
    in the log of step 6, the mean of steps 4-6: the event said "at step 6", a step it may not have come
    from. It is seen (and acted on) at step 6 and names the steps it may have come from."""
    callback = SafetyCallback(policy=policy(actions={"loss_nonfinite": "warn"}), probe_every=None,
                              max_new_tokens=4, log_every_step=False)
    tiny.trainer(tiny.model(), [callback, tiny.PoisonAt(4)], tmp_path / "out", max_steps=9, logging_steps=3,
                 logging_nan_inf_filter=nan_filter).train()
    (event,) = body_of(callback)["events"]
    assert event["kind"] == "loss_nonfinite" and event["step"] == 6
    assert "in steps 4-6" in event["reason"], event["reason"]


@pytest.mark.parametrize("length", [{"max_steps": -1, "num_train_epochs": 1.5},  # 9 steps of 6 an epoch
                                    {"max_steps": 8, "num_train_epochs": 3}])    # max_steps wins: 1.33
def test_a_run_of_a_fraction_of_an_epoch_is_not_announced_as_a_whole_one(tiny: Any, tmp_path: Path,
                                                                         length: dict[str, Any]) -> None:
    """The Trainer rounds its epoch count up (1.5 epochs -> 2); the run trains 1.5 or 1.33 epochs, within
    a max_epochs of 1.5, so there is nothing to announce."""
    callback = SafetyCallback(policy=policy(max_epochs=1.5), probe_every=None, max_new_tokens=4)
    run = tiny.trainer(tiny.model(), [callback], tmp_path / "out", learning_rate=1e-5, **length)
    run.train()
    body = body_of(callback)
    assert body["status"] == "completed" and body["events"] == []
    assert run.state.global_step == (9 if length["max_steps"] < 0 else 8)


def test_a_fractional_epoch_limit_stops_mid_epoch(tiny: Any, tmp_path: Path) -> None:
    callback = SafetyCallback(policy=policy(max_epochs=1.5), probe_every=None, max_new_tokens=4)
    run = tiny.trainer(tiny.model(), [callback], tmp_path / "out", learning_rate=1e-5, max_steps=-1,
                       num_train_epochs=3)
    run.train()
    body = body_of(callback)
    assert [(e["kind"], e["step"], e["action"]) for e in body["events"]] == [("max_epochs", 0, "warn"),
                                                                          ("max_epochs", 9, "stop")]
    assert body["events"][0]["value"] == 3 and run.state.global_step == 9


def test_epoch_checkpoints_are_probed_once_each(tiny: Any, tmp_path: Path) -> None:
    callback = SafetyCallback(max_new_tokens=4, probe_budget=1e-9)  # auto: no interval probe due
    tiny.trainer(tiny.model(), [callback], tmp_path / "out", learning_rate=1e-5, max_steps=-1,
                 num_train_epochs=2, save_strategy="epoch").train()
    body = body_of(callback)
    # the last save probed the final weights: no second probe of them at the end
    assert probes(body) == [(0, "start"), (6, "save"), (12, "save")]
    assert [c["step"] for c in body["checkpoints"]] == [6, 12]
    assert body["lineage"]["adapter"]["path"].endswith("checkpoint-12")


@pytest.mark.parametrize("probe_every", ["auto", None])
def test_the_best_checkpoint_loaded_at_the_end_is_what_the_record_names(tiny: Any, tmp_path: Path,
                                                                       probe_every: Any) -> None:
    """load_best_model_at_end puts the best checkpoint's weights back after the last step: those are the
    weights the run hands over (`trainer.save_model`), so the lineage names that checkpoint, and they
    are probed as the run's end (unless only saves are probed: it was probed when it was saved)."""
    callback = SafetyCallback(policy=policy(actions={"probe_asr": "warn", "probe_over_refusal": "warn"}),
                              probe_every=probe_every, probe_budget=1e-9, max_new_tokens=4)
    # greater_is_better on the eval loss: the first checkpoint, trained least, is the "best"
    run = tiny.trainer(tiny.model(), [callback], tmp_path / "out", save_strategy="steps", save_steps=2,
                       eval_strategy="steps", eval_steps=2, eval_rows=4, load_best_model_at_end=True,
                       metric_for_best_model="eval_loss", greater_is_better=True, save_total_limit=2)
    run.train()
    body = body_of(callback)
    assert run.state.best_model_checkpoint.endswith("checkpoint-2")
    best = next(c for c in body["checkpoints"] if c["step"] == 2)
    assert body["lineage"]["adapter"] == best
    expected = [(0, "start"), (2, "save"), (4, "save"), (6, "save")]
    if probe_every is None:
        assert probes(body) == expected
    else:
        assert probes(body) == [*expected, (6, "end")]
        assert body["probes"][-1]["checkpoint"].endswith("checkpoint-2")
        assert body["probes"][-1]["outcomes"] == body["probes"][1]["outcomes"]  # the same weights again
    # evaluation is not training: no eval loss in the loss curve
    assert [s for s, _ in body["loss_curve"]] == [1, 2, 3, 4, 5, 6]


def test_a_stop_on_a_step_with_a_save_due_is_recorded_once(tiny: Any, tmp_path: Path) -> None:
    from tunesafe.evidence.store import Store
    from tunesafe.types import RecordType

    db = tmp_path / "evidence.db"
    callback = SafetyCallback(policy=policy(max_steps=4), probe_every=None, max_new_tokens=4, store=db)
    run = tiny.trainer(tiny.model(), [callback], tmp_path / "out", learning_rate=1e-5, max_steps=8,
                       save_strategy="steps", save_steps=4)
    run.train()
    with Store.open(str(db)) as store:
        (record,) = store.records(type=RecordType.TRAINING_RUN)
    body = record.body
    assert body["status"] == "stopped" and body["stopped_by"]["kind"] == "max_steps" and body["steps"] == 4
    assert probes(body) == [(0, "start"), (4, "save")] and [c["step"] for c in body["checkpoints"]] == [4]


def test_the_callback_added_twice_watches_the_run_once(tiny: Any, tmp_path: Path) -> None:
    callback = SafetyCallback(probe_every=2, max_new_tokens=4)
    run = tiny.trainer(tiny.model(), [callback, callback], tmp_path / "out", learning_rate=1e-5, max_steps=4,
                       save_strategy="steps", save_steps=4)
    run.train()
    body = body_of(callback)
    assert probes(body) == [(0, "start"), (2, "interval"), (4, "interval")]
    assert [s for s, _ in body["loss_curve"]] == [1, 2, 3, 4]
    assert [c["step"] for c in body["checkpoints"]] == [4]
    first = body["run_id"]
    # the same callback on a second trainer: a run of its own
    tiny.trainer(tiny.model(), [callback], tmp_path / "again", learning_rate=1e-5, max_steps=2).train()
    again = body_of(callback)
    assert again["run_id"] != first and probes(again) == [(0, "start"), (2, "interval")]


def test_a_warmup_scheduler_is_checked_at_its_peak_rate(tiny: Any, tmp_path: Path) -> None:
    from tunesafe.errors import UserError

    callback = SafetyCallback(policy=policy(max_learning_rate=1e-3), max_new_tokens=4)
    with pytest.raises(UserError, match="learning rate 0.01 is above"):
        tiny.trainer(tiny.model(), [callback], tmp_path / "out", warmup_steps=3).train()
    assert body_of(callback)["status"] == "refused"


def test_a_packed_sft_dataset_counts_its_examples_not_its_packed_rows(tiny: Any, tmp_path: Path) -> None:
    """TRL packs the 24 short conversations into one row; min_examples is about the 24."""
    trl = pytest.importorskip("trl", reason="the SFTTrainer test needs tunesafe[train]")
    from datasets import Dataset

    callback = SafetyCallback(policy=policy(min_examples=10), probe_every=None, max_new_tokens=4)
    config = trl.SFTConfig(output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=4,
                           learning_rate=1e-5, report_to=[], save_strategy="no", use_cpu=True,
                           disable_tqdm=True, logging_steps=50, bf16=False, seed=0, packing=True)
    rows = Dataset.from_list(tiny.rows(tiny.REFUSAL))
    sft = trl.SFTTrainer(model=tiny.model(), args=config, train_dataset=rows, processing_class=tiny.tokenizer,
                         callbacks=[callback])
    assert len(sft.train_dataset) < 10  # packed
    sft.train()
    body = body_of(callback)
    assert body["status"] == "completed" and body["lineage"]["dataset"]["n_examples"] == 24
    assert body["config"]["packing"] is True


class InterruptAt(transformers.TrainerCallback):  # type: ignore[misc]
    """Ctrl-C after a given step."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.step:
            raise KeyboardInterrupt


def test_a_run_interrupted_from_the_keyboard_is_recorded_as_interrupted(tiny: Any, tmp_path: Path) -> None:
    from tunesafe.training.report import outcome_line, render_markdown

    callback = SafetyCallback(probe_every=None, max_new_tokens=4)
    run = tiny.trainer(tiny.model(), [callback, InterruptAt(3)], tmp_path / "out", learning_rate=1e-5)
    with pytest.raises(KeyboardInterrupt), callback.guard():
        run.train()
    body = body_of(callback)
    assert body["status"] == "interrupted" and body["error"] == "KeyboardInterrupt"
    assert body["steps"] == 3 and body["stopped_by"] is None
    assert outcome_line(body) == "interrupted at step 3: KeyboardInterrupt"
    assert "INTERRUPTED" in render_markdown(body)


def test_a_run_that_raised_outside_guard_is_recorded_when_the_callback_starts_another(tiny: Any,
                                                                                      tmp_path: Path) -> None:
    """Without guard() an exception skips on_train_end; the callback used again on a second trainer
    writes the first run's record (status error) before it starts watching the second."""
    from tunesafe.evidence.store import Store
    from tunesafe.types import RecordType

    db = tmp_path / "evidence.db"
    callback = SafetyCallback(probe_every=None, max_new_tokens=4, store=db)
    failing = tiny.trainer(tiny.model(), [callback, InterruptAt(2)], tmp_path / "first", learning_rate=1e-5)
    with pytest.raises(KeyboardInterrupt):
        failing.train()
    first = callback.run_id
    tiny.trainer(tiny.model(), [callback], tmp_path / "second", learning_rate=1e-5, max_steps=2).train()
    with Store.open(str(db)) as store:
        runs = {r.body["run_id"]: r.body for r in store.records(type=RecordType.TRAINING_RUN)}
    assert len(runs) == 2 and runs[callback.run_id]["status"] == "completed"
    assert runs[first]["status"] == "error" and runs[first]["steps"] == 2
    assert "guard()" in runs[first]["error"]
