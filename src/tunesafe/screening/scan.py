"""One scan: read the dataset in batches, score each batch against the anchor sets once, run every
screener on it, then collect dataset-level findings, the similarity summary and the rating."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tunesafe import __version__
from tunesafe.screening.base import Batch, ScanOptions, Screener, screeners
from tunesafe.screening.embeddings import Embedder, HiddenStateEmbedder, SentenceEmbedder
from tunesafe.screening.fix import check_output, write_fixed
from tunesafe.screening.pii import redact
from tunesafe.screening.rating import counts, rate
from tunesafe.screening.readers import Record, dataset_sha256, open_dataset
from tunesafe.screening.records import Example, Finding
from tunesafe.screening.similarity import AnchorScorer, SimilarityAccumulator


@dataclass
class ScanReport:
    path: str
    format: str  # container/schema, e.g. "jsonl/chat"
    sha256: str
    examples: int
    findings: list[Finding]
    similarity: dict[str, Any]
    rating: str
    reasons: list[str]
    screeners: dict[str, str]
    seconds: float
    tool_version: str = __version__
    fix: dict[str, Any] | None = field(default=None)

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        return counts(self.findings)

    @property
    def flagged_examples(self) -> int:
        return len({f.index for f in self.findings if f.index is not None})

    def evidence_body(self) -> dict[str, Any]:
        """What the evidence record keeps: hashes, counts, rating, versions. No example text and no
        excerpts: the record must not copy PII or secrets out of the dataset."""
        body: dict[str, Any] = {
            "dataset": {
                "path": self.path,
                "sha256": self.sha256,
                "format": self.format,
                "examples": self.examples,
            },
            "rating": self.rating,
            "reasons": self.reasons,
            "counts": self.counts,
            "flagged_examples": self.flagged_examples,
            "similarity": {k: v for k, v in self.similarity.items() if k != "top_eroding"},
            "top_eroding_lines": [t["line"] for t in self.similarity.get("top_eroding", [])],
            "screeners": self.screeners,
            "tool_version": self.tool_version,
        }
        if self.fix:
            body["fix"] = {k: v for k, v in self.fix.items() if k != "removed"}
        return body

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "sha256": self.sha256,
            "examples": self.examples,
            "rating": self.rating,
            "reasons": self.reasons,
            "counts": self.counts,
            "flagged_examples": self.flagged_examples,
            "similarity": self.similarity,
            "findings": [f.to_dict() for f in self.findings],
            "screeners": self.screeners,
            "seconds": round(self.seconds, 3),
            "tool_version": self.tool_version,
            "fix": self.fix,
        }


def build_screeners(options: ScanOptions, names: Sequence[str] | None = None) -> list[Screener]:
    return [screeners.get(name)(options) for name in (names or screeners.names())]


def _batches(records: Iterator[Record], size: int) -> Iterator[list[Record]]:
    batch: list[Record] = []
    for record in records:
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class Scanner:
    """Holds the loaded embedders, so several datasets can be scanned with one model load."""

    def __init__(self, model: str | None = None, request_embedder: Embedder | None = None) -> None:
        self.model = model
        self.request_embedder = request_embedder or SentenceEmbedder()
        self._scorer: AnchorScorer | None = None

    @property
    def scorer(self) -> AnchorScorer:
        """Built on first use, after the input has been checked: bad input must not wait for a model load."""
        if self._scorer is None:
            representation = HiddenStateEmbedder(self.model) if self.model else self.request_embedder
            self._scorer = AnchorScorer(self.request_embedder, representation)
        return self._scorer

    def scan(
        self,
        path: str | Path,
        fmt: str = "auto",
        columns: Mapping[str, str] | None = None,
        options: ScanOptions | None = None,
        names: Sequence[str] | None = None,
        fix: str | Path | None = None,
    ) -> ScanReport:
        """Scan one dataset; with `fix`, also write the filtered copy and its manifest (the output path is
        checked before any work, so a bad --fix costs nothing)."""
        started = time.perf_counter()
        options = options or ScanOptions()
        dataset = open_dataset(path, fmt, columns)
        if fix is not None:
            check_output(dataset, fix)
        # Every record is read once before the models load: a bad line anywhere is one error in seconds,
        # not after the embedding of every line above it.
        for _ in dataset.records():
            pass
        sha = dataset_sha256(dataset.path)
        active = build_screeners(options, names)
        rejected_side = _RejectedSide(options, names)
        findings: list[Finding] = []
        similarity = SimilarityAccumulator(top_k=options.top_k)
        n = 0
        schema = ""
        for records in _batches(dataset.records(), options.batch_size):
            examples = [r.example for r in records]
            scores = self.scorer.score(examples)
            similarity.add(examples, scores)
            batch = Batch(examples, scores)
            by_index = {ex.index: ex for ex in examples}
            found: list[Finding] = []
            for screener in active:
                found.extend(_masked(screener.screen(batch), by_index))
            findings.extend(found)
            findings.extend(rejected_side.screen(records, self.scorer, found))
            n += len(examples)
            schema = records[0].schema
        for screener in active:
            findings.extend(_masked(screener.finish(), {}))
        findings.extend(rejected_side.finish())
        findings.sort(key=lambda f: (f.index if f.index is not None else -1, f.type))
        summary = similarity.result(self.scorer.representation.name)
        rating, reasons = rate(findings, summary)
        report = ScanReport(
            path=str(dataset.path.resolve()),
            format=f"{dataset.container}/{schema}",
            sha256=sha,
            examples=n,
            findings=findings,
            similarity=summary,
            rating=rating,
            reasons=reasons,
            screeners={s.name: s.version for s in active},
            seconds=0.0,
        )
        if fix is not None:
            report.fix = write_fixed(dataset, findings, fix)
        report.seconds = time.perf_counter() - started
        return report


class _RejectedSide:
    """The rejected answers of preference pairs, screened by screeners of their own (a stock opener's share
    or a near-duplicate is counted among the rejected answers, not mixed with the chosen ones). Each
    finding keeps the pair's index and line, says it is on the rejected side (`extra.side`, a reason
    starting "rejected answer: "; span message numbers count the prompt, then the rejected turns), and is
    dropped where the chosen side's pass already reported the same thing on the shared prompt. A harmful
    answer rejected in favour of a refusal of the same request is safety data, low like a refused request."""

    def __init__(self, options: ScanOptions, names: Sequence[str] | None) -> None:
        self.options, self.names = options, names
        self.active: list[Screener] | None = None  # built on the first pair: most datasets have none

    def screen(self, records: Sequence[Record], scorer: AnchorScorer,
               chosen: Sequence[Finding]) -> list[Finding]:
        examples = [r.rejected for r in records if r.rejected is not None]
        if not examples:
            return []
        if self.active is None:
            self.active = build_screeners(self.options, self.names)
        batch = Batch(examples, scorer.score(examples))
        by_index = {ex.index: ex for ex in examples}
        seen = {_same(f) for f in chosen}
        refused = {f.index for f in chosen if f.type == "harmful.request" and f.extra.get("refused")}
        out = []
        for screener in self.active:
            for f in _masked(screener.screen(batch), by_index):
                if _same(f) not in seen and not f.type.startswith("duplicate."):
                    out.append(_labelled(f, f.index in refused))
        return out

    def finish(self) -> list[Finding]:
        return [_labelled(f, False) for s in self.active or [] for f in _masked(s.finish(), {})
                if not f.type.startswith("duplicate.")]


def _same(f: Finding) -> tuple[Any, ...]:
    span = (f.span.message, f.span.start, f.span.end) if f.span else None
    return f.index, f.type, f.severity, span


def _labelled(f: Finding, safety_pair: bool) -> Finding:
    if safety_pair and f.type == "harmful.compliance":
        return replace(f, severity="low", reason=f"rejected answer: {f.reason}; the chosen answer refuses "
                       "(safety data)", extra={**f.extra, "side": "rejected", "chosen_refuses": True})
    return replace(f, reason=f"rejected answer: {f.reason}", extra={**f.extra, "side": "rejected"})


def _masked(findings: Iterable[Finding], examples: Mapping[int, Example]) -> Iterator[Finding]:
    """Findings whose excerpts mask any PII or secret in them: a harmful request or a system prompt
    quoted whole must not print the card number or key that the PII finding on the same turn masks. An
    excerpt cut short is masked on its whole span, then cut again: a key running over the cut would no
    longer match its pattern."""
    for f in findings:
        if f.span is not None:
            text = f.span.text
            ex = examples.get(f.index) if f.index is not None else None
            if ex is not None and 0 <= f.span.message < len(ex.messages):
                whole = ex.messages[f.span.message].content[f.span.start:f.span.end]
                if len(whole) > len(text) and whole.startswith(text):
                    text = redact(whole)[: len(text)]
            text = redact(text)
            if text != f.span.text:
                f = replace(f, span=replace(f.span, text=text))
        yield f


def scan_dataset(
    path: str | Path,
    fmt: str = "auto",
    columns: Mapping[str, str] | None = None,
    model: str | None = None,
    options: ScanOptions | None = None,
    fix: str | Path | None = None,
) -> ScanReport:
    return Scanner(model).scan(path, fmt, columns, options, fix=fix)
