"""Loss anomalies during fine-tuning, from the training loss alone (pure: no torch, no Trainer).

- `loss_nonfinite`: NaN or infinity (the run is numerically broken).
- `loss_spike`: a point far above the recent ones, by a robust z-score: (x - median) / (1.4826 * MAD)
  over the previous `window` points. Median and MAD (median absolute deviation) ignore the spikes
  themselves, which a mean and standard deviation would not.
- `loss_divergence`: a sustained rise: the rolling median stays `divergence_ratio` times above the lowest
  rolling median seen so far for `divergence_points` points in a row (one spike never qualifies).
- `loss_collapse`: the recent median falls below `collapse_below` nats per token: the model is
  memorising a small set verbatim, the regime in which a handful of examples rewrites its behaviour.

Each condition is reported once when it starts (and again only after it has cleared), so a long NaN
stretch is one event, not thousands.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import median

from tunesafe.training.events import TrainingEvent

MAD_TO_SD = 1.4826  # MAD of a normal distribution times this is its standard deviation


@dataclass(frozen=True)
class LossMonitorConfig:
    window: int = 20
    min_history: int = 8  # points needed before spikes and divergence are judged
    spike_z: float = 6.0
    divergence_ratio: float = 1.5
    divergence_points: int = 5
    collapse_below: float = 0.02
    collapse_points: int = 5

    def __post_init__(self) -> None:
        if self.window < 3 or not 2 <= self.min_history <= self.window:
            raise ValueError("need window >= 3 and 2 <= min_history <= window")
        if self.spike_z <= 0 or self.divergence_ratio <= 1 or self.divergence_points < 1:
            raise ValueError("need spike_z > 0, divergence_ratio > 1 and divergence_points >= 1")
        if self.collapse_below < 0 or self.collapse_points < 1:
            raise ValueError("need collapse_below >= 0 and collapse_points >= 1")


def robust_z(value: float, history: Sequence[float]) -> float:
    """How many robust standard deviations `value` lies above the median of `history`. A flat history
    (MAD 0) gets a floor of 0.1% of the median, so a flat curve does not turn every wobble into a spike."""
    centre = median(history)
    mad = median(abs(h - centre) for h in history)
    scale = max(MAD_TO_SD * mad, 1e-3 * abs(centre), 1e-8)
    return (value - centre) / scale


def at_steps(first: int, step: int) -> str:
    """Where a logged point was measured. A Trainer that logs every few steps logs the mean of the steps
    since its last log, seen at the last of them: which one made a NaN is not known."""
    return f"at step {step}" if first >= step else f"in steps {first}-{step} (logged as one mean)"


class LossMonitor:
    """Feed it (step, loss) in order; `add` returns the events that point starts."""

    def __init__(self, config: LossMonitorConfig | None = None) -> None:
        self.config = config or LossMonitorConfig()
        self._recent: deque[float] = deque(maxlen=self.config.window)
        self._best_median: float | None = None
        self._above = 0
        self._nonfinite = False
        self._diverging = False
        self._collapsed = False

    def add(self, step: int, loss: float, *, first: int | None = None) -> list[TrainingEvent]:
        """`first`: the first step the point covers, when it is the mean of several (see `at_steps`)."""
        if not math.isfinite(loss):
            if self._nonfinite:
                return []
            self._nonfinite = True
            where = at_steps(step if first is None else first, step)
            return [TrainingEvent("loss_nonfinite", step, None, f"training loss is {loss} {where}")]
        self._nonfinite = False
        events = [e for e in (self._spike(step, loss),) if e]
        self._recent.append(loss)
        events += [e for e in (self._divergence(step), self._collapse(step)) if e]
        return events

    def _spike(self, step: int, loss: float) -> TrainingEvent | None:
        cfg = self.config
        if len(self._recent) < cfg.min_history:
            return None
        z = robust_z(loss, list(self._recent))
        if z <= cfg.spike_z:
            return None
        return TrainingEvent("loss_spike", step, loss,
                             f"loss {loss:.4g} is {z:.1f} robust SDs above the median "
                             f"{median(self._recent):.4g} of the previous {len(self._recent)} points "
                             f"(limit {cfg.spike_z:g})",
                             limit=cfg.spike_z)

    def _divergence(self, step: int) -> TrainingEvent | None:
        cfg = self.config
        if len(self._recent) < cfg.min_history:
            return None
        current = median(self._recent)
        best = current if self._best_median is None else min(self._best_median, current)
        self._best_median = best
        if current <= best * cfg.divergence_ratio:
            self._above = 0
            self._diverging = False
            return None
        self._above += 1
        if self._above < cfg.divergence_points or self._diverging:
            return None
        self._diverging = True
        return TrainingEvent("loss_divergence", step, current,
                             f"rolling median loss {current:.4g} has stayed above {cfg.divergence_ratio:g}x "
                             f"its lowest value {best:.4g} for {self._above} points",
                             limit=best * cfg.divergence_ratio)

    def _collapse(self, step: int) -> TrainingEvent | None:
        cfg = self.config
        if len(self._recent) < cfg.collapse_points:
            return None
        recent = median(list(self._recent)[-cfg.collapse_points:])
        if recent >= cfg.collapse_below:
            if recent >= 2 * cfg.collapse_below:  # hysteresis: a wobble at the edge is not a new event
                self._collapsed = False
            return None
        if self._collapsed:
            return None
        self._collapsed = True
        return TrainingEvent("loss_collapse", step, recent,
                             f"median loss of the last {cfg.collapse_points} points is {recent:.4g}, below "
                             f"{cfg.collapse_below:g}: the model is memorising its training examples",
                             limit=cfg.collapse_below)


def scan(curve: Iterable[tuple[int, float]], config: LossMonitorConfig | None = None) -> list[TrainingEvent]:
    """All events of a whole loss curve, as the callback would have raised them live."""
    monitor = LossMonitor(config)
    return [event for step, loss in curve for event in monitor.add(step, loss)]
