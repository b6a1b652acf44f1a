"""Judging logged traffic: each LogRecord becomes an Assessment (judged, blocked, error or sampled out),
with its refusal, harmful-completion and jailbreak-shape flags.

A log carries no behaviour kind, so "harmful" is decided as in `tunesafe judge` on free pairs
(tunesafe.screening.request_kind): a harmful request (keyword signal or the request classifier), answered
(not refused, not degenerate). The request classifier embeds the request, which costs far more than the
pattern stage of the local judges; it only runs where it can change the outcome, i.e. on answers the judge
found neither refused nor degenerate (a refusal is never a harmful completion, whatever was asked).
Those requests are classified in one batch per chunk, after a triage model (tunesafe.screening.
request_triage) has cleared the plainly everyday ones without an embedding; `triage=False` embeds all.

Fail closed: an error in the log, or a judge that could not decide, is an `error` assessment, counted
apart and never as refused or safe. Sampling is deterministic by the record's hash, so a re-run samples
the same records; a sampled-out record is stored as such and counted, never as judged.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tunesafe.errors import UserError
from tunesafe.production.monitor_detect import Detector, get_detector
from tunesafe.production.monitor_formats import LogRecord
from tunesafe.types import cut_by_filter

LOCAL_JUDGES = ("default", "refusal", "classifier", "harm")
STATUSES = ("judged", "blocked", "error", "sampled_out")


@dataclass(frozen=True)
class Assessment:
    status: str  # one of STATUSES
    refused: bool | None = None
    harmful: bool | None = None  # a harmful completion (None unless judged)
    request_harmful: bool | None = None  # None where the request did not need classifying
    jailbreak: str | None = None  # "detector:family/attack", or "provider" for the provider's own filter
    category: str | None = None
    error: str | None = None

    @property
    def flagged(self) -> bool:
        """Kept with its conversation: what an incident may need to show."""
        return bool(self.harmful) or self.jailbreak is not None


def sampled(record_hash: str, rate: float) -> bool:
    """Deterministic by hash: the same record is in or out of the sample on every run."""
    return rate >= 1.0 or int(record_hash[:8], 16) < rate * 0x1_0000_0000


def check_sample(rate: float) -> float:
    if not 0.0 < rate <= 1.0:
        raise UserError(f"sample rate {rate} is not in (0, 1]", where="--sample",
                        fix="give the share of records to judge, e.g. 0.1 for one in ten (1 judges all)")
    return rate


class Assessor:
    """The judge and detectors for one ingest, built once (the embedding models load on first use)."""

    def __init__(self, judge: str = "default", detectors: Sequence[str] = ("attack_library",),
                 sample: float = 1.0, triage: bool = True) -> None:
        from tunesafe.judges.base import get_judge

        if judge not in LOCAL_JUDGES:
            raise UserError(f"judge {judge!r} cannot judge logs here", where="--judge",
                            fix=f"use a local judge: {', '.join(LOCAL_JUDGES)}")
        self.sample = check_sample(sample)
        self.judge = get_judge(judge)
        self.detectors: list[Detector] = [get_detector(name) for name in dict.fromkeys(detectors)]
        self.triage = triage
        self.request_classifier: str | None = None
        self.seconds: Counter[str] = Counter()  # per stage, for benchmarks/monitor.py
        self.classified = 0  # requests the request classifier embedded
        self.cleared = 0  # requests the triage model cleared as everyday

    def versions(self) -> dict[str, Any]:
        return {"judge": {"name": self.judge.name, "version": self.judge.version},
                "detectors": {d.name: d.version for d in self.detectors},
                "request_classifier": self.request_classifier, "sample_rate": self.sample}

    def assess(self, records: Sequence[LogRecord]) -> list[Assessment]:
        out: list[Assessment | None] = [None] * len(records)
        kept = []
        for i, rec in enumerate(records):
            if not sampled(rec.hash, self.sample):
                out[i] = Assessment("sampled_out")
            elif rec.error is not None:
                out[i] = Assessment("error", error=rec.error, category=rec.category)
            else:
                kept.append(i)
        start = time.perf_counter()
        shapes = self._jailbreaks([records[i] for i in kept])
        to_judge = [i for i in kept if records[i].blocked is None or _cut(records[i])]
        detected = time.perf_counter()
        verdicts = dict(zip(to_judge, self._judge([records[i] for i in to_judge]), strict=True))
        answered = [i for i in to_judge if verdicts[i].error is None and not verdicts[i].refused
                    and not verdicts[i].degenerate]
        judged = time.perf_counter()
        harms = self._request_harmful([records[i].request for i in answered])
        kinds = dict(zip(answered, harms, strict=True))
        self.seconds.update({"detect": detected - start, "judge": judged - detected,
                             "request_kind": time.perf_counter() - judged})
        for i, shape in zip(kept, shapes, strict=True):
            rec = records[i]
            verdict = verdicts.get(i)
            if verdict is not None and verdict.error is not None:
                out[i] = Assessment("error", jailbreak=shape, category=rec.category, error=verdict.error)
                continue
            harmful_request = kinds.get(i)
            if rec.blocked is not None and not harmful_request:  # the filter cut nothing harmful
                out[i] = Assessment("blocked", refused=True, harmful=False, jailbreak=shape,
                                    category=rec.category)
                continue
            assert verdict is not None
            out[i] = Assessment("judged", refused=bool(verdict.refused), harmful=bool(harmful_request),
                                request_harmful=harmful_request, jailbreak=shape, category=rec.category)
        return [a for a in out if a is not None]

    def _jailbreaks(self, records: Sequence[LogRecord]) -> list[str | None]:
        found: list[str | None] = ["provider" if r.provider_jailbreak else None for r in records]
        texts = [r.request_text for r in records]
        for detector in self.detectors:
            for i, hit in enumerate(detector.detect(texts)):
                if hit is not None and found[i] is None:
                    found[i] = f"{hit.detector}:{hit.label}"
        return found

    def _judge(self, records: Sequence[LogRecord]) -> list[Any]:
        from tunesafe.engine.executor import judge_safely
        from tunesafe.judges.base import JudgeInput, judge_answers

        if not records:
            return []
        # kind None: the harm decision is made below from the request; the judge decides refusal here
        items = [JudgeInput(request=r.request, response=r.response, id=r.hash) for r in records]
        return asyncio.run(judge_answers(self.judge, items, judge_safely))

    def _request_harmful(self, requests: Sequence[str]) -> list[bool]:
        from tunesafe.screening.harmful import keyword_signal
        from tunesafe.screening.request_kind import request_kinds

        # request_kinds calls a request harmful whenever the keyword signal fires, whatever the score:
        # those need no embedding
        decided = {r: True for r in dict.fromkeys(requests) if keyword_signal(r) is not None}
        rest = [r for r in dict.fromkeys(requests) if r not in decided]
        if not rest:
            return [decided[r] for r in requests]
        from tunesafe.screening.request_classifier import request_model

        self.request_classifier = request_model().digest
        if self.triage:
            from tunesafe.screening.request_triage import triage_model

            model = triage_model()
            cleared = model.clears(rest)
            decided.update((r, False) for r, c in zip(rest, cleared, strict=True) if c)
            rest = [r for r, c in zip(rest, cleared, strict=True) if not c]
            self.cleared += int(cleared.sum())
            self.request_classifier += f" after triage {model.digest}"
        harms = request_kinds(rest)
        self.classified += len(rest)
        decided.update((r, h.harmful) for r, h in zip(rest, harms, strict=True))
        return [decided[r] for r in requests]


def _cut(record: LogRecord) -> bool:
    return cut_by_filter(record.blocked, record.finish_reason, record.response)
