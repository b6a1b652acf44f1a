"""`SafetyCallback`: tunesafe's watch over a fine-tuning run, added to a transformers `Trainer` or a TRL
`SFTTrainer` in one line:

    trainer = SFTTrainer(..., callbacks=[SafetyCallback(policy="policy.yaml", store="evidence.db")])

It does four things, each recorded as a TrainingEvent with step, value and reason:
- watches the training loss (tunesafe.training.loss_monitor: spikes, NaN/inf, divergence, collapse);
- enforces the `training:` limits of the gate policy (epochs, steps, learning rate, dataset size);
- probes the live model before the first step, during training, at every checkpoint save and at the
  end (tunesafe.training.probes) and compares with the first probe. By default (`probe_every="auto"`) a
  probe during training is due only when the probe time of the run, this probe included, stays within
  `probe_budget` (0.1) of the training time so far, and a probe at the run's end still fits the budget
  of the projected whole run (a run ends with a probe: the weights saved are probed). The probe share
  (`timing.probe_share`: the seconds of the probes this run ran over its wall time) then stays under
  the budget whenever the run's training is long enough to pay for its start and end probes, on any
  model and hardware; the steps probed are in the record. An integer probes every that many steps;
- writes the evidence: each event as a `training_event` record when it happens (so a killed process
  keeps them), and one `training_run` record when the run ends, stops early or raises.

The judge is built and warmed (its models loaded) before the run's clock starts: `timing` reports that
load apart (`judge_load_seconds`), so a probe's seconds are its generations and judging. Several runs
from the same base model can share one start probe (`baseline=`, see `baseline_probe`): it is recorded
as the step-0 probe, marked `reused`, and its seconds are reported apart (`reused_probe_seconds`).
A run resumed from a checkpoint needs it: its first probe (`resume`) and the later ones are compared with
the base's; resumed without one, the regression since the base cannot be checked (a `probe_error`).

Each event gets the action the policy gives its limit. `stop` sets `control.should_training_stop`, so the
Trainer ends the run cleanly after the current step (checkpoints and on_train_end as usual); a `stop`
found before the first step (learning rate, dataset size, a failed first probe) refuses the run: the
record is written and a UserError is raised. The first stop is the run's `stopped_by`.

Exceptions inside `trainer.train()` skip on_train_end; wrap the call in `with callback.guard():` (or
call `callback.finalize(status="error")`) so the record is written for them too.
"""

from __future__ import annotations

import contextlib
import math
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from tunesafe import __version__
from tunesafe.errors import UserError
from tunesafe.evidence.store import Store
from tunesafe.policy.model import Policy, TrainingPolicy
from tunesafe.training import run_record
from tunesafe.training.events import ACTION_KEYS, TrainingEvent
from tunesafe.training.limits import at_step, preflight
from tunesafe.training.live_model import text_tokenizer
from tunesafe.training.loss_monitor import LossMonitor, LossMonitorConfig, at_steps
from tunesafe.training.probes import (
    MAX_BATCH,
    ProbeResult,
    ProbeSet,
    judge_name,
    probe_findings,
    run_probe,
    select_probe_set,
    warm_judge,
)
from tunesafe.types import RecordType, canonical_json, sha256_hex

DEFAULT_PROBE_BUDGET = 0.10
LATCHED = ("max_epochs", "max_steps", "max_learning_rate")


def _bad(argument: str, message: str, fix: str) -> UserError:
    return UserError(message, where=f"SafetyCallback({argument}=)", fix=fix)


def _check_arguments(*, probe_every: Any, probe_budget: Any, judge: Any, max_new_tokens: Any,
                     max_batch: Any) -> None:
    """What can be checked without a model: a notebook learns of a typo before train() loads anything,
    not after (an unknown judge name used to fail only as training began)."""
    if probe_every != "auto" and probe_every is not None and (
            not isinstance(probe_every, int) or isinstance(probe_every, bool) or probe_every < 1):
        raise _bad("probe_every", f"probe_every must be 'auto', None or at least 1, got {probe_every!r}",
                   "pass \"auto\", a number of steps, or None to probe only before training and at saves")
    # `not 0 < x <= 1` is also true for NaN
    if not isinstance(probe_budget, (int, float)) or isinstance(probe_budget, bool) \
            or not 0 < probe_budget <= 1:
        raise _bad("probe_budget", f"probe_budget must be in (0, 1], got {probe_budget!r}",
                   "pass a share of the training time, e.g. 0.1")
    for name, value in (("max_new_tokens", max_new_tokens), ("max_batch", max_batch)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise _bad(name, f"{name} must be a whole number of at least 1, got {value!r}",
                       f"pass {name}= as a positive int")
    from tunesafe import judges as _builtins  # noqa: F401  (registers the built-in judges)
    from tunesafe.judges.base import registry

    known = f"use one of: {', '.join(registry.names())} (or pass a Judge)"
    if isinstance(judge, str) and judge not in registry:
        raise _bad("judge", f"unknown judge {judge!r}", known)
    if not isinstance(judge, str) and not callable(getattr(judge, "judge", None)):
        raise _bad("judge", f"judge must be a judge name or a Judge, not {type(judge).__name__} {judge!r}",
                   known)


def _check_types(*, policy: Any, store: Any, baseline: Any, loss_config: Any) -> None:
    """Arguments whose wrong type would otherwise surface as an AttributeError, some of them (store=)
    only once training has begun."""
    expected = (("policy", policy, (str, Path, Policy, TrainingPolicy), "a policy file, a Policy or None"),
                ("store", store, (str, Path, Store), "a store URL, a SQLite path, a Store or None"),
                ("baseline", baseline, (ProbeResult,), "a ProbeResult from baseline_probe or None"),
                ("loss_config", loss_config, (LossMonitorConfig,), "a LossMonitorConfig or None"))
    for name, value, types, what in expected:
        if value is not None and not isinstance(value, types):
            raise _bad(name, f"{name} must be {what}, not {type(value).__name__} {value!r}"[:200],
                       f"pass {name}= as {what}")


def _probe_set(probe_set: Any) -> ProbeSet:
    if isinstance(probe_set, ProbeSet):
        return probe_set
    if probe_set is not None and not isinstance(probe_set, str):
        raise _bad("probe_set", f"probe_set must be a suite name, a suite file or a ProbeSet, not "
                                f"{type(probe_set).__name__} {probe_set!r}", "pass probe_set=\"default\"")
    try:
        return select_probe_set(probe_set or "default")
    except UserError as exc:  # keeps the suite's own place (a file's line) and fix
        raise _bad("probe_set", f"{exc.where}: {exc.message}" if exc.where else exc.message,
                   exc.fix or "pass a built-in suite name or a suite file") from None


class SafetyCallback(TrainerCallback):  # type: ignore[misc]  # transformers is untyped
    def __init__(self, policy: str | Path | Policy | TrainingPolicy | None = None,
                 probe_every: int | Literal["auto"] | None = "auto", store: str | Path | Store | None = None,
                 probe_set: str | ProbeSet | None = None, *, judge: str | Any = "default",
                 max_new_tokens: int = 32, max_batch: int = MAX_BATCH, model_name: str | None = None,
                 base_ref: str | None = None, data: str | Path | None = None, data_sha256: str | None = None,
                 loss_config: LossMonitorConfig | None = None, log_every_step: bool = True,
                 run_id: str | None = None, probe_budget: float = DEFAULT_PROBE_BUDGET,
                 baseline: ProbeResult | None = None) -> None:
        """`policy`: a policy file or Policy with a `training:` section (None: the section's defaults).
        `probe_every`: "auto" (probe time kept near `probe_budget` of the training time), a number of
        steps between probes, or None (only before training and at saves). `store`: the
        evidence store (a URL, a SQLite path or a Store; None: keep the record in `self.record` only).
        `probe_set`: a ProbeSet, or a suite name to select one from (default: the built-in suite).
        `judge`: a registered judge name or a Judge. `model_name`: the inventory name, the records'
        subject. `base_ref`, `data`/`data_sha256`: the lineage. `log_every_step`: make the Trainer log
        the loss every step, so the monitor sees each step rather than logging_steps averages.
        `baseline`: a start probe of this same model taken beforehand (`baseline_probe`, same probe set,
        judge and max_new_tokens), used as the step-0 probe instead of probing again; for several runs
        from one base model."""
        _check_types(policy=policy, store=store, baseline=baseline, loss_config=loss_config)
        self.policy, self.policy_hash = _training_policy(policy)
        _check_arguments(probe_every=probe_every, probe_budget=probe_budget, judge=judge,
                         max_new_tokens=max_new_tokens, max_batch=max_batch)
        self.probe_every = probe_every
        self.probe_budget = probe_budget
        self._store_arg = store
        # resolved now: a typo'd suite name fails here, before the Trainer loads or trains anything
        self._probe_set_arg = _probe_set(probe_set)
        self._judge_arg = judge
        self.max_new_tokens = max_new_tokens
        self.max_batch = max_batch
        self.model_name = model_name
        self.base_ref = base_ref
        self.data, self.data_sha256 = data, data_sha256
        self.loss_config = loss_config or LossMonitorConfig()
        self.log_every_step = log_every_step
        self._run_id_arg = run_id
        if baseline is not None and (baseline.trigger != "start" or baseline.step != 0):
            raise UserError(f"the baseline must be a start probe at step 0, got a {baseline.trigger} "
                            f"probe at step {baseline.step}", where="SafetyCallback(baseline=)",
                            fix="take it with tunesafe.training.baseline_probe before training")
        self.baseline = baseline
        self.record: dict[str, Any] | None = None  # the training_run body, once written
        self._active = False
        self._state: TrainerState | None = None  # the run being watched
        # the steps the hooks last handled: a callback in the Trainer's list twice is called twice
        self._step = 0
        self._logged_step: int | None = None
        self._saved_step: int | None = None
        self._final_weights: dict[str, Any] | None = None  # the best checkpoint, when loaded back at the end

    # ---- Trainer hooks -----------------------------------------------------------------------------

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       model: Any = None, processing_class: Any = None, train_dataloader: Any = None,
                       optimizer: Any = None, **kwargs: Any) -> None:
        if self._active and state is self._state:  # the callback is in the Trainer's list twice
            return
        if self._active:  # the last run raised outside guard(), which skips on_train_end: its record first
            self.finalize(status="error", error="the run ended without on_train_end: trainer.train() raised "
                                                "outside `with callback.guard():`")
        self._start(args, state, model, processing_class, train_dataloader)
        events = preflight(self.policy, learning_rate=_planned_lr(args, optimizer),
                           n_examples=self._lineage["dataset"]["n_examples"],
                           planned_epochs=_planned_epochs(args, state, train_dataloader),
                           planned_steps=state.max_steps)
        self._raise_events(events, control, before_start=True)
        if self.baseline is not None:
            self._take_baseline(control)
            if state.global_step > 0:  # resumed: the checkpoint's weights against the base's step-0 probe
                self._probe(state.global_step, "resume", control, before_start=True)
            return
        self._probe(state.global_step, "start", control, before_start=True)
        if state.global_step > 0:
            # the probe at the checkpoint is the only baseline: a regression before it would go unseen
            self._raise_events([TrainingEvent(
                "probe_error", state.global_step, None,
                f"resumed at step {state.global_step} without the probe from before training: the "
                "regression since the base cannot be checked (pass baseline=, a baseline_probe of the "
                "base model)")], control, before_start=True)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    optimizer: Any = None, **kwargs: Any) -> None:
        if not self._active or state.global_step == self._step:  # twice in the list: once a step
            return
        self._step = state.global_step
        if self.log_every_step:
            control.should_log = True
        lr = _current_lr(optimizer)
        self._raise_events(at_step(self.policy, step=state.global_step, epoch=float(state.epoch or 0.0),
                                   planned_steps=state.max_steps, learning_rate=lr), control)
        if self._probe_due(state.global_step):
            self._probe(state.global_step, "interval", control)

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        if not self._active or not logs or "loss" not in logs or state.global_step == self._logged_step:
            return
        step, loss = state.global_step, float(logs["loss"])
        # the first step this log covers: with sparse logging (log_every_step=False) the loss is the mean
        # since the last log, and a NaN is seen here, at the last of those steps
        first = (self._first_step if self._logged_step is None else self._logged_step) + 1
        self._logged_step = step
        grad_norm = float(logs.get("grad_norm") or 0.0)
        if math.isfinite(grad_norm):
            self._losses.append([step, loss if math.isfinite(loss) else str(loss)])
            self._raise_events(self._monitor.add(step, loss, first=first), control)
            return
        # The Trainer's logging_nan_inf_filter (on by default) logs a stand-in for a NaN loss (the mean of
        # the steps since the last log: 0.0 when every step is logged); the gradient norm shows the NaN.
        # The stand-in is no measurement: it is neither drawn nor read for spikes or a collapse.
        stand_in = bool(getattr(args, "logging_nan_inf_filter", False)) and math.isfinite(loss)
        self._losses.append([step, "nan" if stand_in else loss if math.isfinite(loss) else str(loss)])
        if "grad_nonfinite" not in self._latched:
            self._latched.add("grad_nonfinite")
            self._raise_events([TrainingEvent(
                "loss_nonfinite", step, None, f"gradient norm is {grad_norm} at step {step}: the loss turned "
                f"non-finite {at_steps(first, step)} (the Trainer's logging_nan_inf_filter hides it in the "
                "logged loss)")], control)

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                **kwargs: Any) -> None:
        if not self._active or state.global_step == self._saved_step:  # twice in the list: once a save
            return
        self._saved_step = state.global_step
        folder = Path(str(args.output_dir)) / f"checkpoint-{state.global_step}"
        weights = run_record.weights_hash(folder)
        if weights is not None:
            self._checkpoints.append({"step": state.global_step, **weights})
        if not self._probes or self._probes[-1].step != state.global_step:
            self._probe(state.global_step, "save", control, checkpoint=str(folder))

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                     **kwargs: Any) -> None:
        if self._active:
            self._final_weights = self._loaded_best(args, state)
            # the weights the run ends with are probed (a Trainer saves at the end only with save_strategy
            # "steps", and the last step can fall between interval probes); None asked for saves only
            if self.probe_every is not None:
                best = self._final_weights
                if best is not None and best.get("step") != state.global_step:
                    # load_best_model_at_end put an earlier checkpoint's weights back: probe those
                    self._probe(state.global_step, "end", control, checkpoint=best["path"])
                else:
                    self.probe_now(state.global_step, "end", control)
            self.finalize()

    # ---- public ------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def guard(self) -> Iterator[SafetyCallback]:
        """`with callback.guard(): trainer.train()`: the record is written even when training raises
        (status `error`, or `interrupted` for a KeyboardInterrupt)."""
        try:
            yield self
        except BaseException as exc:
            if self._active:
                self.finalize(status="interrupted" if isinstance(exc, KeyboardInterrupt) else "error",
                              error=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
            raise

    def finalize(self, status: str | None = None, error: str | None = None,
                 output: str | Path | None = None) -> dict[str, Any]:
        """Write the training_run record (once per run) and return its body. `output`: the folder the
        final weights were saved to (a trainer that saves before ending, like `train-lora`), linked as
        the lineage's adapter instead of the last checkpoint."""
        if not self._active:
            if self.record is None:
                raise RuntimeError("finalize() before the training started")
            return self.record
        self._active = False
        if status is None:
            status = "stopped" if self._stopped_by else "completed"
        probe_seconds = sum(p.seconds for p in self._probes if not p.reused)
        wall = time.perf_counter() - self._clock
        baseline = self._probes[0] if self._probes else None
        saved = run_record.weights_hash(output) if output is not None else None
        last = self._checkpoints[-1] if self._checkpoints else None
        lineage = {**self._lineage, "run": self.run_id, "adapter": saved or self._final_weights or last}
        body: dict[str, Any] = {
            "run_id": self.run_id, "model_name": self.model_name, "status": status,
            "stopped_by": self._stopped_by.as_dict() if self._stopped_by else None, "error": error,
            "started_at": self._started_at, "ended_at": _now(), "steps": self._step,
            "planned_steps": self._planned_steps, "config": self._config,
            "policy": {"hash": self.policy_hash, "training": self.policy.model_dump(mode="json")},
            "lineage": lineage, "probe_set": self._probe_set.describe(),
            "loss_curve": self._losses,
            "probes": [p.as_dict(baseline if p is not baseline else None) for p in self._probes],
            "events": [e.as_dict() for e in self._events], "checkpoints": self._checkpoints,
            "timing": {"wall_seconds": round(wall, 3), "probe_seconds": round(probe_seconds, 3),
                       "probe_share": round(probe_seconds / wall, 4) if wall > 0 else None,
                       # outside the wall time: not part of the share (docs/training.md, "Probe share")
                       "judge_load_seconds": round(self._judge_load_seconds, 3),
                       "reused_probe_seconds": round(sum(p.seconds for p in self._probes if p.reused), 3)},
            "tunesafe_version": __version__,
        }
        self.record = body
        try:
            self._append(RecordType.TRAINING_RUN, body)
        finally:
            self._close_store()
        return body

    def probe_now(self, step: int, trigger: str, control: TrainerControl) -> None:
        """Probe the live model now unless this step was just probed (a loop that ends between interval
        probes takes its final one here); findings act on `control` like any other probe's."""
        if self._active and (not self._probes or self._probes[-1].step != step):
            self._probe(step, trigger, control)

    def record_output(self, path: str | Path) -> dict[str, Any]:
        """After `trainer.save_model(path)`: link the saved weights to this run (a training_event record),
        the last link of the lineage base -> dataset -> run -> adapter."""
        weights = run_record.weights_hash(path)
        if weights is None:
            raise UserError("no saved model folder here", where=str(path),
                            fix="call trainer.save_model(PATH) first and pass the same PATH")
        if self.record is None:
            raise UserError("the training run has not ended yet", where="record_output",
                            fix="call it after trainer.train() returns")
        body = {"run_id": self.run_id, "kind": "output", "adapter": weights}
        self._append(RecordType.TRAINING_EVENT, body, reopen=True)
        return body

    # ---- internals ---------------------------------------------------------------------------------

    def _start(self, args: TrainingArguments, state: TrainerState, model: Any, processing_class: Any,
               train_dataloader: Any) -> None:
        if model is None or processing_class is None:
            raise UserError("the Trainer gave the callback no model or no tokenizer", where="SafetyCallback",
                            fix="pass processing_class=tokenizer to the Trainer")
        self.run_id = self._run_id_arg or uuid.uuid4().hex[:16]
        self.record = None
        self._model, self._tokenizer = model, text_tokenizer(processing_class)
        loading = time.perf_counter()
        self._judge = self._judge_arg
        if isinstance(self._judge_arg, str):
            from tunesafe.judges import get_judge

            self._judge = get_judge(self._judge_arg)
        warm_judge(self._judge)
        self._judge_load_seconds = time.perf_counter() - loading
        self._probe_set = self._probe_set_arg
        self._check_probe_set()
        # Distributed runs: every rank probes its copy of the model (FSDP / ZeRO-3 need all of them in
        # generate, and identical greedy answers give every rank the same stop decision); one writes.
        self._writes = bool(getattr(state, "is_world_process_zero", True))
        self._store: Store | None = None
        if self._writes:
            self._store = Store.open(str(self._store_arg)) if isinstance(self._store_arg, (str, Path)) \
                else self._store_arg
        dataset = getattr(train_dataloader, "dataset", None)
        packing = getattr(args, "packing_strategy", "bfd") if getattr(args, "packing", False) else None
        self._lineage = {"base": run_record.base_lineage(self.base_ref, model),
                         "dataset": run_record.data_lineage(self.data, self.data_sha256, dataset,
                                                            packing=packing)}
        self._config = {**run_record.trainer_config(args), "adapter": run_record.adapter_config(model),
                        "probe_every": self.probe_every, "probe_budget": self.probe_budget,
                        "probe_max_new_tokens": self.max_new_tokens,
                        "judge": judge_name(self._judge),
                        "judge_version": getattr(self._judge, "version", None)}
        self._planned_steps = state.max_steps
        self._first_step = state.global_step  # > 0 when resumed: the steps before it are not this run's
        self._monitor = LossMonitor(self.loss_config)
        self._losses: list[list[Any]] = []
        self._events: list[TrainingEvent] = []
        self._probes: list[ProbeResult] = []
        self._checkpoints: list[dict[str, Any]] = []
        self._latched: set[str] = set()
        self._stopped_by: TrainingEvent | None = None
        self._step = 0
        self._logged_step = self._saved_step = None
        self._final_weights = None
        self._state = state
        self._started_at = _now()
        self._clock = time.perf_counter()
        self._active = True

    def _check_probe_set(self) -> None:
        """A rate the policy limits needs items of its kinds in the probe set; without them every probe
        would fail that check (a probe_error at the first comparison), though no item errored."""
        kinds = {a.kind for a in self._probe_set.attempts}
        for key, label, needed in (("max_probe_asr_increase_points", "ASR", ("harmful",)),
                                   ("max_probe_over_refusal_increase_points", "over-refusal",
                                    ("benign", "borderline"))):
            if getattr(self.policy, key) is not None and not kinds & set(needed):
                raise UserError(f"the probe set has no {' or '.join(needed)} items: the probe {label} the "
                                "policy limits cannot be measured", where="SafetyCallback(probe_set=)",
                                fix=f"probe with a set that has them, or set training.{key}: null")

    def _loaded_best(self, args: TrainingArguments, state: TrainerState) -> dict[str, Any] | None:
        """The checkpoint whose weights `load_best_model_at_end` put back before on_train_end: the weights
        the run hands over. None when the model ends with its last step's weights."""
        best = getattr(state, "best_model_checkpoint", None)
        if not getattr(args, "load_best_model_at_end", False) or not best:
            return None
        path = Path(best).resolve()
        for saved in reversed(self._checkpoints):
            if Path(saved["path"]) == path:
                return saved
        weights = run_record.weights_hash(path)  # saved before a resume: not hashed by this run yet
        step = path.name.rpartition("-")[2]
        return {"step": int(step) if step.isdigit() else None, **weights} if weights else None

    def _probe(self, step: int, trigger: str, control: TrainerControl, *, before_start: bool = False,
               checkpoint: str | None = None) -> None:
        result = run_probe(self._model, self._tokenizer, self._probe_set, self._judge, step=step,
                           trigger=trigger, max_new_tokens=self.max_new_tokens, max_batch=self.max_batch,
                           checkpoint=checkpoint)
        baseline = self._probes[0] if self._probes else None
        self._probes.append(result)
        self._append(RecordType.TRAINING_EVENT, {"run_id": self.run_id, "kind": "probe",
                                                 "probe": result.as_dict(baseline)})
        self._raise_events(probe_findings(self.policy, baseline, result), control, before_start=before_start)

    def _take_baseline(self, control: TrainerControl) -> None:
        """The shared start probe as this run's step 0: checked against this run's probe set and
        settings, recorded like a probe taken here, and judged by the same findings (a baseline that
        errored refuses the run as a failed start probe would)."""
        baseline = self.baseline
        assert baseline is not None
        expected = [a.id for a in self._probe_set.attempts]
        if sorted(baseline.outcomes) != sorted(expected) and baseline.error is None:
            self.finalize(status="refused", error="baseline probe of another probe set")
            raise UserError("the baseline probe was taken on another probe set", where="SafetyCallback",
                            fix="take it with the probe set this callback probes with")
        if baseline.max_new_tokens not in (None, self.max_new_tokens) or \
                baseline.judge not in (None, self._config["judge"]):
            self.finalize(status="refused", error="baseline probe with other settings")
            raise UserError(f"the baseline probe was taken with {baseline.max_new_tokens} new tokens and "
                            f"judge {baseline.judge}; this run probes with {self.max_new_tokens} and "
                            f"{self._config['judge']}", where="SafetyCallback",
                            fix="take the baseline with the same judge and max_new_tokens")
        result = replace(baseline, reused=True)
        self._probes.append(result)
        self._append(RecordType.TRAINING_EVENT, {"run_id": self.run_id, "kind": "probe",
                                                 "probe": result.as_dict()})
        self._raise_events(probe_findings(self.policy, None, result), control, before_start=True)

    def _probe_due(self, step: int) -> bool:
        if self.probe_every is None:
            return False
        if self.probe_every == "auto":
            spent = sum(p.seconds for p in self._probes if not p.reused)
            next_cost = self._probes[-1].seconds if self._probes else 0.0
            trained = time.perf_counter() - self._clock - spent
            # this run's seconds over this run's steps: a resumed run's clock starts at the checkpoint
            done, planned = step - self._first_step, self._planned_steps - self._first_step
            projected = trained / done * planned if done > 0 and planned > done else None
            return probe_due(trained, spent, next_cost, self.probe_budget, projected)
        return step % self.probe_every == 0

    def _raise_events(self, events: list[TrainingEvent], control: TrainerControl, *,
                      before_start: bool = False) -> None:
        for found in events:
            event = found if found.action else found.with_action(getattr(self.policy.actions,
                                                                         ACTION_KEYS[found.kind]))
            if event.step > 0 and event.kind in LATCHED:
                if event.kind in self._latched:  # a limit is reported once per run, not at every step
                    continue
                self._latched.add(event.kind)
            self._events.append(event)
            self._append(RecordType.TRAINING_EVENT, {"run_id": self.run_id, "kind": "event",
                                                     "event": event.as_dict()})
            if event.action == "stop":
                control.should_training_stop = True
                if self._stopped_by is None:
                    self._stopped_by = event
        if before_start and self._stopped_by is not None:
            stop = self._stopped_by
            self.finalize(status="refused")
            raise UserError(f"training refused by the policy: {stop.reason}",
                            where=f"training.actions.{ACTION_KEYS[stop.kind]}",
                            fix="change the training configuration, or set the limit's action to warn")

    def _append(self, type_: str, body: Mapping[str, Any], *, reopen: bool = False) -> None:
        if not self._writes:
            return
        store = self._store
        if store is None and reopen and isinstance(self._store_arg, (str, Path)):
            store = Store.open(str(self._store_arg))
            try:
                store.append(type_, body, subject=self._subject())
            finally:
                store.close()
            return
        if store is not None:
            store.append(type_, body, subject=self._subject())

    def _subject(self) -> str:
        return self.model_name or f"training:{self.run_id}"

    def _close_store(self) -> None:
        if isinstance(self._store_arg, (str, Path)) and self._store is not None:
            self._store.close()
            self._store = None


def probe_due(trained_seconds: float, spent_seconds: float, next_seconds: float, budget: float,
              projected_seconds: float | None = None) -> bool:
    """Auto interval. `trained_seconds`: the run's training so far, probes excluded; `spent_seconds`:
    the probes this run has run; `next_seconds`: what the next probe will cost (the last one's time).
    Due when the probes, this one included, stay within `budget` of the training so far, and, when the
    run's projected training is known, one more probe for the end still fits its budget: the run ends
    with a probe, so an interval probe that would push it over is left out."""
    if (spent_seconds + next_seconds) > budget * trained_seconds:
        return False
    return projected_seconds is None or spent_seconds + 2 * next_seconds <= budget * projected_seconds


def _training_policy(policy: str | Path | Policy | TrainingPolicy | None) -> tuple[TrainingPolicy, str]:
    """The training section and the hash to record: the whole policy's, or the section's own."""
    if policy is None or isinstance(policy, TrainingPolicy):
        section = policy or TrainingPolicy()
        return section, sha256_hex(canonical_json(section.model_dump(mode="json")))
    if isinstance(policy, (str, Path)):
        from tunesafe.policy.load import load_policy

        where, policy = str(policy), load_policy(policy)
    else:
        where = "policy"
    if policy.training is None:
        raise UserError("the policy has no training: section", where=where,
                        fix="add one (`tunesafe policy init` shows it, commented out), or pass policy=None "
                            "for its defaults")
    return policy.training, policy.hash()


def _planned_lr(args: TrainingArguments, optimizer: Any) -> float:
    """The highest learning rate the run is set up with. An optimizer handed to the Trainer keeps its own
    rate (args.learning_rate is then unused), parameter groups can differ (LoRA+), and a warmup scheduler
    has lowered `lr` to its start while `initial_lr` (`max_lr` for OneCycleLR) keeps the peak it climbs to."""
    rates = [float(args.learning_rate)]
    for group in getattr(optimizer, "param_groups", None) or []:
        rates += [float(group[key]) for key in ("lr", "initial_lr", "max_lr") if group.get(key) is not None]
    return max(rates)


def _planned_epochs(args: TrainingArguments, state: TrainerState, train_dataloader: Any) -> float | None:
    """The epochs the run will train: its optimizer steps over one epoch's. The Trainer's own count rounds
    up (1.5 epochs, or a max_steps that ends mid-epoch, count as 2). None when a dataset without a length
    runs for max_steps: its epochs are not known before they end."""
    try:
        batches = len(train_dataloader)
    except TypeError:
        batches = 0
    if batches > 0:
        accumulate = max(int(getattr(args, "gradient_accumulation_steps", 1) or 1), 1)
        return state.max_steps / max(-(-batches // accumulate), 1)
    if int(getattr(args, "max_steps", -1) or -1) > 0:
        return None
    return float(state.num_train_epochs or args.num_train_epochs)


def _current_lr(optimizer: Any) -> float | None:
    groups = getattr(optimizer, "param_groups", None)
    if not groups:
        return None
    return max(float(g.get("lr", 0.0)) for g in groups)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
