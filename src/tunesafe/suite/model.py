"""The Suite record: a named, versioned, content-hashed tuple of behaviours."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

from tunesafe.types import Behavior, canonical_json, sha256_hex


@dataclass(frozen=True)
class Suite:
    name: str
    version: str
    behaviors: tuple[Behavior, ...]
    source: str = ""  # "builtin:default" or the file it was loaded from
    # Per behaviour id, fields of the source row that Behavior has no place for (the original category of
    # an external taxonomy, the XSTest type, the borderline type, ...). Not part of the content hash.
    extra: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # Rows of the file left out by design (HarmBench's copyright behaviours), with why: `suite validate`
    # says so, so that a file's rows and its items add up. Not part of the content hash.
    left_out: int = 0
    left_out_why: str = ""

    @cached_property
    def content_hash(self) -> str:
        """sha256 over the behaviours exactly as evaluated: two suites with this hash ask the same things."""
        return sha256_hex(canonical_json([asdict(b) for b in self.behaviors]))

    def counts(self) -> dict[str, int]:
        by_kind = Counter(str(b.kind) for b in self.behaviors)
        return {"items": len(self.behaviors), **{k: by_kind[k] for k in ("harmful", "borderline", "benign")}}

    def categories(self) -> list[str]:
        return sorted({b.category for b in self.behaviors})

    def select(self, *, kind: str | None = None, category: str | None = None) -> tuple[Behavior, ...]:
        return tuple(b for b in self.behaviors
                     if (kind is None or b.kind == kind) and (category is None or b.category == category))
