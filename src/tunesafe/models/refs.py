"""Model references: `openai:MODEL@BASE_URL`, `hf:PATH[+ADAPTER]`, `gguf:PATH[+ADAPTER]`,
`embedded:NAME[+ADAPTER]`, each optionally followed by `?key=value&...` options, e.g.
`embedded:qwen2.5-coder-0.5b?backend=hf` or `openai:gpt-4o-mini@https://api.openai.com/v1?key_env=MY_KEY`.

Which backend runs a local ref: `hf` (transformers, white-box; the default) or `llamacpp` (fast CPU
GGUF, black-box, opt-in with `?backend=llamacpp`). Pre/post comparisons must use one backend for both
sides: see `align_backends`.

Credentials: a URL may carry them (`http://user:pw@host/v1`, or `?api_key=...` / `token=` / `key=`).
They reach the request (userinfo becomes an HTTP Basic header) but nothing stored, printed or reported:
every such place shows `redact_ref(ref)` (`http://***@host/v1`, `api_key=***`). Stored refs therefore
cannot restore credentials: resuming takes the ref again (`restore_ref`). Keys belong in an environment
variable named with `?key_env=VAR`; a ref with credentials says so once per process.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from tunesafe.errors import UserError

SCHEMES = ("openai", "vllm", "hf", "gguf", "embedded", "guarded")
# Not a local backend's weights: a server's (openai, vllm) or a composed system's (guarded); the gate
# aligns backends of local refs only.
REMOTE_SCHEMES = ("openai", "vllm", "guarded")
LOCAL_BACKENDS = ("hf", "llamacpp")
_OPENAI = re.compile(r"^(?P<model>[^@]+)@(?P<url>https?://\S+)$")
_REF_FIX = ("use openai:MODEL@http(s)://HOST/v1, vllm:MODEL[+ADAPTER]@URL or ?launch=1, hf:PATH[+ADAPTER], "
            "gguf:PATH[+ADAPTER] or embedded:NAME[+ADAPTER]")
REDACTED = "***"
# A comma separates replicas (models/replicas.py) only where another URL starts: RFC 3986 allows ','
# unescaped in userinfo, so splitting at every comma would cut a password in two.
REPLICA_SEPARATOR = re.compile(r",(?=\s*[a-z][a-z0-9+.-]*://)", re.IGNORECASE)
# userinfo up to the last '@' before the path (a raw '@', '?' or '#' in a password must not leak its
# tail; a query without a path that holds an '@' is masked too, which hides nothing secret)
_USERINFO = re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.-]*://)[^/\s'\"]*@", re.IGNORECASE)
_RAW_MARK_IN_USERINFO = re.compile(r"://[^/\s@]*[?#][^/\s]*@")
# a secret's value runs to the next parameter: a '#' in it is no fragment to show
_SECRET_PARAM = re.compile(
    r"(?P<name>[?&;](?:[\w.-]*[_-])?(?:api[_-]?key|key|token|access[_-]?token|auth|authorization|"
    r"password|passwd|pwd|secret|client[_-]?secret|sig|signature)=)[^&;\s'\"]*", re.IGNORECASE)
_LOST = re.compile(rf"://{re.escape(REDACTED)}@|={re.escape(REDACTED)}(?=[&;#\s]|$)")
_KEY_ENV_ADVICE = ("put the key in an environment variable and name it in the ref with ?key_env=VAR "
                   "(e.g. openai:MODEL@https://HOST/v1?key_env=MY_API_KEY)")
_warned = False
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelRef:
    scheme: str
    target: str  # model name (openai), path (hf/gguf) or embedded model name
    base_url: str | None = None
    adapter: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    guard: str | None = None  # guarded:MODEL_REF|GUARD_REF: the guardrail in front of the model

    def __str__(self) -> str:
        if self.scheme == "guarded":
            return f"guarded:{self.target}|{self.guard}"
        text = f"{self.scheme}:{self.target}"
        if self.adapter:
            text += f"+{self.adapter}"
        if self.base_url:
            text += f"@{self.base_url}"
        if self.options:
            text += "?" + urlencode(sorted(self.options.items()))
        return text

    @property
    def local(self) -> bool:
        return self.scheme not in REMOTE_SCHEMES

    def with_options(self, **options: str) -> ModelRef:
        return replace(self, options={**self.options, **options})


def take_option(ref: str, key: str) -> tuple[str, str | None]:
    """The ref without option `key` of its query, and that option's last value (None when absent): for an
    option that a wrapper (a guard, a judge) reads and the model backend would refuse as unknown."""
    head, sep, query = ref.partition("?")
    pairs = parse_qsl(query, keep_blank_values=True) if sep else []
    values = [value for name, value in pairs if name == key]
    if not values:
        return ref, None
    rest = urlencode([(name, value) for name, value in pairs if name != key])
    return (f"{head}?{rest}" if rest else head), values[-1]


def redact_ref(text: str) -> str:
    """`text` (a ref, a URL, or a message quoting them) with URL userinfo and secret query values masked:
    `openai:m@http://user:pw@host/v1?api_key=sk` -> `openai:m@http://***@host/v1?api_key=***`. Idempotent;
    the one function every place that stores, prints or reports a ref goes through."""
    text = _USERINFO.sub(rf"\g<scheme>{REDACTED}@", text)
    return _SECRET_PARAM.sub(rf"\g<name>{REDACTED}", text)


def has_credentials(ref: str) -> bool:
    return redact_ref(ref) != ref


def restore_ref(stored: str | None, given: str | None, where: str) -> str | None:
    """The ref to use when resuming from a stored one. A stored ref whose credentials were redacted
    cannot reach its server: take `given` (the same ref with its credentials) when it redacts to the
    stored form; without it, a UserError saying how to resume."""
    if stored is None or not _LOST.search(stored):
        return stored
    if given is not None and redact_ref(given) == stored:
        return given
    raise UserError(f"'{stored}' had credentials in its URL, which are never stored", where=where,
                    fix=f"pass the same ref again with its credentials, or {_KEY_ENV_ADVICE}")


def split_credentials(url: str) -> tuple[str, dict[str, str]]:
    """The URL without its userinfo, and the HTTP Basic Authorization header it stood for: the
    credentials then live only in the client's headers, never in the URL it prints or stores."""
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        return url, {}
    user, _, password = userinfo.partition(":")
    token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode()
    return urlunsplit(parts._replace(netloc=host)), {"Authorization": f"Basic {token}"}


def warn_credentials(ref: str) -> None:
    """Say once per process that credentials in a ref are kept out of records, and where keys belong."""
    global _warned
    if not _warned and has_credentials(ref):
        _warned = True
        log.warning("warning: the model ref %s carries credentials: they are used for the requests but never "
                    "stored or printed; %s", redact_ref(ref), _KEY_ENV_ADVICE)


def parse_ref(ref: str) -> ModelRef:
    """Parse a model ref; UserError naming the ref and the accepted forms for anything else."""
    warn_credentials(ref)
    shown = redact_ref(ref)
    if _RAW_MARK_IN_USERINFO.search(ref):  # the URL would end there, its password's head read as a port
        raise UserError(f"a '?' or '#' in the credentials of '{shown}' must be percent-encoded",
                        where="model ref",
                        fix=f"write '?' as %3F and '#' as %23 in the user and password, or {_KEY_ENV_ADVICE}")
    scheme, sep, rest = ref.strip().partition(":")
    if not sep or scheme not in SCHEMES or not rest:
        raise UserError(f"unknown model ref '{shown}'", where="model ref", fix=_REF_FIX)
    if scheme == "guarded":  # guarded:MODEL_REF|GUARD_REF (guardrails/guarded_model.py)
        model, bar, guard = rest.rpartition("|")
        if not bar or not guard.strip():
            raise UserError(f"bad guarded ref '{shown}'", where="model ref",
                            fix="write guarded:MODEL_REF|GUARD_REF, e.g. 'guarded:openai:ft@http://h/v1|"
                                "llama-guard:openai:lg@http://h/v1'")
        parse_ref(model)  # a bad model ref is its own error
        return ModelRef(scheme, model, guard=guard)
    rest, _, query = rest.partition("?")
    options = dict(parse_qsl(query, keep_blank_values=True)) if query else {}
    backend = options.get("backend")
    if backend is not None and backend not in (*LOCAL_BACKENDS, "openai"):
        raise UserError(f"unknown backend '{backend}' in '{shown}'", where="model ref",
                        fix=f"use backend={' or backend='.join(LOCAL_BACKENDS)}")
    if scheme == "openai":
        match = _OPENAI.match(rest)
        if not match:
            raise UserError(f"bad OpenAI-compatible ref '{shown}'", where="model ref",
                            fix="write openai:MODEL@http://HOST:PORT/v1")
        _check_urls(match["url"], shown)
        return ModelRef(scheme, match["model"], base_url=match["url"].rstrip("/"), options=options)
    if scheme == "vllm":  # vllm:MODEL[+ADAPTER][@URL]
        rest, at, url = rest.partition("@http")
        target, adapter = _split_adapter(rest)
        if not target:
            raise UserError(f"model ref '{shown}' names no model", where="model ref", fix=_REF_FIX)
        if at:
            _check_urls(f"http{url}", shown)
            if len(REPLICA_SEPARATOR.split(url)) > 1:  # one URL else: its path would hold the others
                raise UserError(f"'{shown}' lists several servers; a vllm: ref attaches to one vLLM server",
                                where="model ref", fix="list replicas in an openai:MODEL@URL1,URL2 ref, or "
                                                       "name one server")
        return ModelRef(scheme, target, adapter=adapter, base_url=f"http{url}".rstrip("/") if at else None,
                        options=options)
    target, adapter = _split_adapter(rest)
    if not target:
        raise UserError(f"model ref '{shown}' names no model", where="model ref", fix=_REF_FIX)
    return ModelRef(scheme, target, adapter=adapter, options=options)


def check_options(ref: ModelRef, allowed: Iterable[str], backend: str) -> None:
    """UserError naming the options of `ref` that `backend` does not take, and the ones it does."""
    unknown = sorted(set(ref.options) - set(allowed))
    if unknown:
        raise UserError(f"unknown option(s) {', '.join(unknown)} for the {backend} backend",
                        where=redact_ref(str(ref)),
                        fix=f"use {', '.join(allowed)}")


def parse_options(ref: ModelRef, converters: Mapping[str, Callable[[str], Any]],
                  backend: str) -> dict[str, Any]:
    """The ref's options (but `backend`) converted for the backend; UserError for unknown or bad ones."""
    check_options(ref, ("backend", *converters), backend)
    try:
        return {k: converters[k](v) for k, v in ref.options.items() if k != "backend"}
    except ValueError as exc:
        raise UserError(f"bad option value: {redact_ref(str(exc))}", where=redact_ref(str(ref)),
                        fix="give numbers for numeric options") from None


def _check_urls(urls: str, shown: str) -> None:
    """UserError for a URL with no host or a malformed authority (an unclosed IPv6 bracket, a port that
    is no port): urllib raises ValueError for those at the first request, a traceback mid-run."""
    for url in REPLICA_SEPARATOR.split(urls):
        try:
            parts = urlsplit(url.strip())
            parts.port  # noqa: B018 -- parsing the port is the check
        except ValueError as exc:
            raise UserError(f"bad URL in model ref '{shown}': {exc}", where="model ref",
                            fix="write the server as http(s)://HOST[:PORT]/v1") from None
        if not parts.hostname:
            raise UserError(f"the URL in model ref '{shown}' names no host", where="model ref",
                            fix="write the server as http(s)://HOST[:PORT]/v1")


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
