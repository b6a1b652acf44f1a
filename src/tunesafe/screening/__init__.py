"""Fine-tuning data screening: harmful content, obedience-biased patterns, PII and secrets,
near-duplicates and contamination, and representational similarity to safety-relevant anchors.

    from tunesafe.screening import scan_dataset
    report = scan_dataset("train.jsonl")          # ScanReport: findings, similarity, rating, reasons

Screeners register in `tunesafe.screening.screeners` (entry-point group `tunesafe.screeners`)."""

from tunesafe.screening import duplicates, harmful, obedience, openers, pii  # noqa: F401  (register the built-ins)
from tunesafe.screening.base import Batch, ScanOptions, Screener, register_screener, screeners
from tunesafe.screening.records import Example, Finding, Span
from tunesafe.screening.scan import Scanner, ScanReport, scan_dataset

__all__ = [
    "Batch",
    "Example",
    "Finding",
    "ScanOptions",
    "ScanReport",
    "Scanner",
    "Screener",
    "Span",
    "register_screener",
    "scan_dataset",
    "screeners",
]
