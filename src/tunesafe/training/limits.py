"""The policy's training limits as pure checks. `preflight` runs before the first step on the planned
configuration; `at_step` runs after every optimizer step on what the run actually does (a scheduler can
push the learning rate past what the arguments say)."""

from __future__ import annotations

from tunesafe.policy.model import TrainingPolicy
from tunesafe.training.events import TrainingEvent


def preflight(policy: TrainingPolicy, *, learning_rate: float, n_examples: int | None,
              planned_epochs: float | None, planned_steps: int) -> list[TrainingEvent]:
    """Learning rate and dataset size are decided now; epochs and steps are only announced (as warnings)
    here and enforced by `at_step` when the run reaches them (`planned_epochs` None: not known yet)."""
    events = []
    if policy.max_learning_rate is not None and learning_rate > policy.max_learning_rate:
        events.append(TrainingEvent("max_learning_rate", 0, learning_rate,
                                    f"learning rate {learning_rate:g} is above max_learning_rate "
                                    f"{policy.max_learning_rate:g}", limit=policy.max_learning_rate))
    if policy.min_examples is not None:
        if n_examples is None:
            events.append(TrainingEvent("min_examples", 0, None, "the number of training examples is not "
                                        "known (a dataset without a length, or packed rows that split "
                                        "examples), so min_examples cannot be checked (an unchecked limit is "
                                        "not a pass)",
                                        limit=policy.min_examples))
        elif n_examples < policy.min_examples:
            events.append(TrainingEvent("min_examples", 0, n_examples,
                                        f"{n_examples} training examples, fewer than min_examples "
                                        f"{policy.min_examples}", limit=policy.min_examples))
    for kind, planned, limit in (("max_epochs", planned_epochs, policy.max_epochs),
                                 ("max_steps", planned_steps, policy.max_steps)):
        if limit is not None and planned is not None and planned > limit:
            events.append(TrainingEvent(kind, 0, planned, f"configured for {planned:g} {kind[4:]}; the "
                                        f"policy allows {limit:g} ({kind}), enforced when the run gets there",
                                        action="warn", limit=limit))
    return events


def at_step(policy: TrainingPolicy, *, step: int, epoch: float, planned_steps: int,
            learning_rate: float | None) -> list[TrainingEvent]:
    """Limits crossed at this step. Epochs and steps count only while the run would go on past them:
    a run planned for exactly max_epochs ends by itself."""
    events = []
    more_to_come = step < planned_steps
    if policy.max_epochs is not None and epoch >= policy.max_epochs and more_to_come:
        events.append(TrainingEvent("max_epochs", step, epoch, f"reached epoch {epoch:.3g} of the "
                                    f"{policy.max_epochs:g} max_epochs allows", limit=policy.max_epochs))
    if policy.max_steps is not None and step >= policy.max_steps and more_to_come:
        events.append(TrainingEvent("max_steps", step, step, f"reached step {step} of the {policy.max_steps} "
                                    "max_steps allows", limit=policy.max_steps))
    if learning_rate is not None and policy.max_learning_rate is not None \
            and learning_rate > policy.max_learning_rate:
        events.append(TrainingEvent("max_learning_rate", step, learning_rate,
                                    f"learning rate {learning_rate:g} at step {step} is above "
                                    f"max_learning_rate {policy.max_learning_rate:g}",
                                    limit=policy.max_learning_rate))
    return events
