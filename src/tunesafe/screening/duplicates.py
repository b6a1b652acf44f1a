"""Near-duplicates inside the dataset, and contamination with evaluation suites.

Near-duplicates: MinHash over word 3-shingles with LSH banding (16 bands x 4 rows: pairs with Jaccard
0.7 collide with probability > 0.99, pairs at 0.3 with < 0.13), then the estimated Jaccard decides. Text
based on purpose: embeddings call paraphrases duplicates, and a paraphrase is new training signal.
Memory: 64 uint32 per example.

Contamination: an evaluation prompt whose word 6-grams are mostly (>= 60%) inside a training example,
or (for prompts shorter than 6 words) a user turn equal to it. The project's suites are always checked;
users add files (HarmBench/AdvBench/XSTest CSV, JSONL, plain text) with --contamination."""

from __future__ import annotations

import csv
import json
import re
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tunesafe.errors import UserError
from tunesafe.screening.base import Batch, ExampleScreener, ScanOptions, register_screener
from tunesafe.screening.records import Example, Finding

SHINGLE = 3  # training examples are short: one changed word must not hide a copy
PERMUTATIONS, BANDS = 64, 16
NEAR_DUPLICATE_JACCARD = 0.7
CONTAMINATION_NGRAM = 6
CONTAMINATION_CONTAINMENT = 0.6
_PRIME = (1 << 61) - 1
_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def shingle_hashes(tokens: list[str], n: int) -> np.ndarray:
    if len(tokens) < n:
        grams = [" ".join(tokens)] if tokens else []
    else:
        grams = [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return np.unique(np.fromiter((zlib.crc32(g.encode()) for g in grams), dtype=np.uint64, count=len(grams)))


class MinHasher:
    def __init__(self, permutations: int = PERMUTATIONS, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.a = rng.integers(1, _PRIME, size=(permutations, 1), dtype=np.uint64)
        self.b = rng.integers(0, _PRIME, size=(permutations, 1), dtype=np.uint64)

    def signature(self, hashes: np.ndarray) -> np.ndarray:
        if hashes.size == 0:
            return np.full(self.a.shape[0], np.iinfo(np.uint32).max, dtype=np.uint32)
        # uint64 arithmetic wraps; that is fine for hashing, the permutations stay independent enough.
        values = (self.a * hashes[None, :] + self.b) % np.uint64(_PRIME)
        return (values.min(axis=1) & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def example_text(ex: Example) -> str:
    return "\n".join(m.content for m in ex.messages)


class DuplicateScreener(ExampleScreener):
    name = "duplicates"
    version = "1"

    def __init__(self) -> None:
        self.hasher = MinHasher()
        self.exact: dict[int, tuple[int, int]] = {}  # crc of normalised text -> first (index, line)
        self.buckets: dict[tuple[int, bytes], list[int]] = defaultdict(list)
        self.signatures: list[np.ndarray] = []
        self.lines: list[int] = []

    def screen(self, batch: Batch) -> list[Finding]:
        return [f for ex in batch.examples for f in self._example(ex)]

    def _example(self, ex: Example) -> Iterator[Finding]:
        tokens = words(example_text(ex))
        key = zlib.crc32(" ".join(tokens).encode()) ^ (len(tokens) << 32)
        first = self.exact.setdefault(key, (ex.index, ex.line))
        signature = self.hasher.signature(shingle_hashes(tokens, SHINGLE))
        self.signatures.append(signature)
        self.lines.append(ex.line)
        if first[0] != ex.index:
            yield Finding(
                "duplicate.exact",
                "low",
                self.name,
                ex.index,
                ex.line,
                f"same text as line {first[1]}",
                extra={"duplicate_of": first[0]},
            )
            return
        rows = PERMUTATIONS // BANDS
        candidates: set[int] = set()
        for band in range(BANDS):
            bucket = self.buckets[(band, signature[band * rows : (band + 1) * rows].tobytes())]
            candidates.update(bucket)
            bucket.append(ex.index)
        best = max(
            candidates, key=lambda i: (float(np.mean(self.signatures[i] == signature)), -i), default=None
        )
        if best is not None:
            jaccard = float(np.mean(self.signatures[best] == signature))
            if jaccard >= NEAR_DUPLICATE_JACCARD:
                yield Finding(
                    "duplicate.near",
                    "low",
                    self.name,
                    ex.index,
                    ex.line,
                    f"near-duplicate of line {self.lines[best]} (Jaccard ~{jaccard:.2f})",
                    score=round(jaccard, 4),
                    extra={"duplicate_of": best},
                )


def load_eval_prompts(path: Path) -> list[str]:
    """Prompts of an evaluation file: CSV (a column named like a prompt), JSONL, a JSON array (of objects
    or of strings) or plain text lines."""
    from tunesafe.screening.readers import MAX_RECORD_BYTES, iter_json_array, starts_with_array

    if not path.is_file():
        raise UserError("no such file", where=str(path), fix="--contamination takes an evaluation set file")
    suffix = path.suffix.lower()
    if suffix == ".json" and starts_with_array(path):
        return [value if isinstance(value, str) else _prompt_of(value, path, n)
                for n, value in iter_json_array(path, MAX_RECORD_BYTES)]
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:  # -sig: a BOM is not part of the first field
            if suffix in (".csv", ".tsv"):
                return _csv_prompts(csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ","), path)
            if suffix in (".jsonl", ".json"):
                return [_json_prompt(line, path, n) for n, line in enumerate(f, 1) if line.strip()]
            return [line.strip() for line in f if line.strip()]
    except UnicodeDecodeError:
        raise UserError("not valid UTF-8", where=str(path), fix="re-encode the file as UTF-8") from None


PROMPT_COLUMNS = ("prompt", "goal", "behavior", "question", "instruction", "text", "query", "input")


def _csv_prompts(reader: csv.DictReader[str], path: Path) -> list[str]:
    fields = {name.lower(): name for name in reader.fieldnames or []}
    column = next((fields[c] for c in PROMPT_COLUMNS if c in fields), None)
    if column is None:
        raise UserError(
            f"no prompt column among {sorted(fields)}",
            where=f"{path}:1",
            fix=f"name the column one of: {', '.join(PROMPT_COLUMNS)}",
        )
    return [row[column] for row in reader if row.get(column)]


def _json_prompt(line: str, path: Path, n: int) -> str:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise UserError(f"malformed JSON: {exc.msg}", where=f"{path}:{n}", fix="fix that line") from None
    return _prompt_of(row, path, n)


def _prompt_of(row: object, path: Path, n: int) -> str:
    if isinstance(row, dict):
        for key in PROMPT_COLUMNS:
            if isinstance(row.get(key), str):
                return str(row[key])
            if isinstance(row.get(key.capitalize()), str):
                return str(row[key.capitalize()])
    raise UserError(
        "no prompt field in this record",
        where=f"{path}:{n}",
        fix=f"use one of the keys: {', '.join(PROMPT_COLUMNS)}",
    )


class ContaminationScreener(ExampleScreener):
    name = "contamination"
    version = "2"

    def __init__(self, sources: list[tuple[str, list[str]]]) -> None:
        self.items: list[tuple[str, str, int]] = []  # (source, prompt, number of its n-grams)
        self.index: dict[int, list[int]] = defaultdict(list)
        self.short: dict[str, int] = {}
        for source, prompts in sources:
            for prompt in prompts:
                tokens = words(prompt)
                if not tokens:
                    continue
                item = len(self.items)
                if len(tokens) < CONTAMINATION_NGRAM:
                    self.short.setdefault(" ".join(tokens), item)
                    self.items.append((source, prompt, 1))
                    continue
                grams = shingle_hashes(tokens, CONTAMINATION_NGRAM)
                self.items.append((source, prompt, len(grams)))
                for g in grams.tolist():
                    self.index[g].append(item)

    def screen(self, batch: Batch) -> list[Finding]:
        return [f for ex in batch.examples if (f := self._example(ex)) is not None]

    def _example(self, ex: Example) -> Finding | None:
        hits: Counter[int] = Counter()
        for g in shingle_hashes(words(example_text(ex)), CONTAMINATION_NGRAM).tolist():
            hits.update(self.index.get(g, ()))
        exact = self.short.get(" ".join(words(ex.user)))
        best, share = None, 0.0
        if exact is not None:
            best, share = exact, 1.0
        for item, count in hits.items():
            if count / self.items[item][2] > share:
                best, share = item, count / self.items[item][2]
        if best is None or share < CONTAMINATION_CONTAINMENT:
            return None
        source, prompt, _ = self.items[best]
        return Finding(
            "contamination",
            "medium",
            self.name,
            ex.index,
            ex.line,
            f"contains an evaluation prompt of {source} ({share:.0%} of its 6-grams): {prompt[:80]!r}",
            score=round(share, 4),
            extra={"source": source},
        )


@register_screener("duplicates")
def _duplicates(_options: ScanOptions) -> DuplicateScreener:
    return DuplicateScreener()


@register_screener("contamination")
def _contamination(options: ScanOptions) -> ContaminationScreener:
    from tunesafe.suite import load_suite

    sources = []
    for name in options.suites:
        suite = load_suite(name)
        sources.append((f"suite {suite.name} v{suite.version}", [b.text for b in suite.behaviors]))
    sources += [(str(path), load_eval_prompts(path)) for path in options.contamination]
    return ContaminationScreener(sources)
