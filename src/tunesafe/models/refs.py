"""Model references: `openai:MODEL@BASE_URL`, `hf:PATH[+ADAPTER]`, `gguf:PATH[+ADAPTER]`,
`embedded:NAME[+ADAPTER]`, each optionally followed by `?key=value&...` options, e.g.
`embedded:qwen2.5-coder-0.5b?backend=hf` or `openai:gpt-4o-mini@https://api.openai.com/v1?key_env=MY_KEY`.

Which backend runs a local ref: `hf` (transformers, white-box; the default) or `llamacpp` (fast CPU
GGUF, black-box, opt-in with `?backend=llamacpp`). Pre/post comparisons must use one backend for both
sides: see `align_backends`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, urlencode

from tunesafe.errors import UserError

SCHEMES = ("openai", "hf", "gguf", "embedded")
LOCAL_BACKENDS = ("hf", "llamacpp")
_OPENAI = re.compile(r"^(?P<model>[^@]+)@(?P<url>https?://\S+)$")
_REF_FIX = ("use openai:MODEL@http(s)://HOST/v1, hf:PATH[+ADAPTER], gguf:PATH[+ADAPTER] "
            "or embedded:NAME[+ADAPTER]")


@dataclass(frozen=True)
class ModelRef:
    scheme: str
    target: str  # model name (openai), path (hf/gguf) or embedded model name
    base_url: str | None = None
    adapter: str | None = None
    options: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        text = f"{self.scheme}:{self.target}"
        if self.base_url:
            text += f"@{self.base_url}"
        if self.adapter:
            text += f"+{self.adapter}"
        if self.options:
            text += "?" + urlencode(sorted(self.options.items()))
        return text

    @property
    def local(self) -> bool:
        return self.scheme != "openai"

    def with_options(self, **options: str) -> ModelRef:
        return replace(self, options={**self.options, **options})


def parse_ref(ref: str) -> ModelRef:
    """Parse a model ref; UserError naming the ref and the accepted forms for anything else."""
    scheme, sep, rest = ref.strip().partition(":")
    if not sep or scheme not in SCHEMES or not rest:
        raise UserError(f"unknown model ref '{ref}'", where="model ref", fix=_REF_FIX)
    rest, _, query = rest.partition("?")
    options = dict(parse_qsl(query, keep_blank_values=True)) if query else {}
    backend = options.get("backend")
    if backend is not None and backend not in (*LOCAL_BACKENDS, "openai"):
        raise UserError(f"unknown backend '{backend}' in '{ref}'", where="model ref",
                        fix=f"use backend={' or backend='.join(LOCAL_BACKENDS)}")
    if scheme == "openai":
        match = _OPENAI.match(rest)
        if not match:
            raise UserError(f"bad OpenAI-compatible ref '{ref}'", where="model ref",
                            fix="write openai:MODEL@http://HOST:PORT/v1")
        return ModelRef(scheme, match["model"], base_url=match["url"].rstrip("/"), options=options)
    target, adapter = _split_adapter(rest)
    if not target:
        raise UserError(f"model ref '{ref}' names no model", where="model ref", fix=_REF_FIX)
    return ModelRef(scheme, target, adapter=adapter, options=options)


def check_options(ref: ModelRef, allowed: Iterable[str], backend: str) -> None:
    """UserError naming the options of `ref` that `backend` does not take, and the ones it does."""
    unknown = sorted(set(ref.options) - set(allowed))
    if unknown:
        raise UserError(f"unknown option(s) {', '.join(unknown)} for the {backend} backend", where=str(ref),
                        fix=f"use {', '.join(allowed)}")


def parse_options(ref: ModelRef, converters: Mapping[str, Callable[[str], Any]],
                  backend: str) -> dict[str, Any]:
    """The ref's options (but `backend`) converted for the backend; UserError for unknown or bad ones."""
    check_options(ref, ("backend", *converters), backend)
    try:
        return {k: converters[k](v) for k, v in ref.options.items() if k != "backend"}
    except ValueError as exc:
        raise UserError(f"bad option value: {exc}", where=str(ref),
                        fix="give numbers for numeric options") from None


def _split_adapter(rest: str) -> tuple[str, str | None]:
    # A '+' may legitimately occur in a path, so only the last one separates the adapter.
    target, plus, adapter = rest.rpartition("+")
    return (target, adapter or None) if plus else (rest, None)


def align_backends(base: str, candidate: str) -> tuple[str, str]:
    """Make two local refs run on the same backend so their answers differ only by the weights.

    A candidate with an adapter runs on hf, so its base is forced onto hf too (`?backend=hf`).
    HTTP refs and refs with an explicit, matching backend are returned unchanged."""
    b, c = parse_ref(base), parse_ref(candidate)
    if not (b.local and c.local):
        return base, candidate
    wanted = {r.options["backend"] for r in (b, c) if "backend" in r.options}
    if (b.adapter or c.adapter) and not wanted:
        wanted.add("hf")  # adapters run on hf unless a side asks for llama.cpp (the faster, black-box path)
    if len(wanted) > 1:
        asked = ", ".join(sorted(wanted))
        raise UserError(f"'{base}' and '{candidate}' ask for different backends ({asked})",
                        where="model refs", fix="use the same ?backend= for base and candidate")
    if not wanted:
        return base, candidate
    backend = wanted.pop()
    return str(b.with_options(backend=backend)), str(c.with_options(backend=backend))
