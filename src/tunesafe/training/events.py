"""What the safety callback reports: one `TrainingEvent` per finding (a loss anomaly, a policy limit
reached, a probe regression or a probe that failed), each with the step, the value that triggered it and
a sentence saying why. The action (warn or stop) comes from the policy, never from the detector."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

Action = Literal["warn", "stop"]

# kind -> the key under `training.actions` of the policy that decides warn or stop
ACTION_KEYS: dict[str, str] = {
    "loss_spike": "loss_anomaly",
    "loss_divergence": "loss_anomaly",
    "loss_collapse": "loss_anomaly",
    "loss_nonfinite": "loss_nonfinite",
    "max_epochs": "max_epochs",
    "max_steps": "max_steps",
    "max_learning_rate": "max_learning_rate",
    "min_examples": "min_examples",
    "probe_asr": "probe_asr",
    "probe_over_refusal": "probe_over_refusal",
    "probe_error": "probe_error",
}


@dataclass(frozen=True)
class TrainingEvent:
    kind: str  # a key of ACTION_KEYS
    step: int  # optimizer step (global_step) when it was seen; 0 = before training
    value: float | None  # the measured value (loss, points of rise, learning rate, ...)
    reason: str
    action: Action | None = None  # None: the policy's action for this kind decides
    limit: float | None = None  # the threshold it was compared with, where there is one

    def with_action(self, action: Action) -> TrainingEvent:
        return replace(self, action=action)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
