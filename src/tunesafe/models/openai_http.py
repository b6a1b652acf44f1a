"""Any OpenAI-compatible chat server (vLLM, TGI, Ollama, llama-server, SGLang, OpenAI, Azure, ...).

Ref: `openai:MODEL@BASE_URL[?options]`. Options (also keyword arguments of load_model):
  key_env=OPENAI_API_KEY   name of the env var holding the API key (unset var: no key header)
  key_cmd=                 a command (URL-encoded, run without a shell) that prints the key: a token
                           that expires, e.g. Entra ID's from `az account get-access-token ...`; run at
                           first use and again, once per 401 burst, when the endpoint answers 401
                           (models/credentials.py). Not together with key_env. In Python:
                           OpenAIChatModel(..., token_provider=CALLABLE)
  key_header=authorization the header the key goes in: authorization (`Authorization: Bearer KEY`) or
                           api-key (`api-key: KEY`, Azure OpenAI's key header)
  api_version=             added as the `api-version` query parameter to every request, chat and
                           /models (Azure OpenAI's classic deployment URLs require it), e.g. 2024-10-21
  concurrency=16           requests in flight at once
  timeout=60               seconds per HTTP attempt
  max_retries=4            retries of 408 / 409 / 424 / 498 / 5xx / timeouts / dropped connections /
                           malformed replies (429s and 529s wait instead, up to max_pause: the
                           server's retry-after(-ms), or when OpenAI's x-ratelimit-reset-* says
                           the spent limit resets, else backoff)
  breaker=8                consecutive failed attempts that open the circuit breaker
  cooldown=30              seconds between probes while the endpoint keeps failing (requests wait)
  max_pause=600            seconds the breaker may stay open (the endpoint failing) before generate
                           raises EndpointUnavailable; an evaluation sets it from --max-pause
  prefill=0                1 = the server continues a final assistant message (vLLM
                           `continue_final_message`); otherwise prefill requests fail (fail closed)
  client=auto              auto = see "Transport" below; httpx = always httpx (a server that the
                           lean client cannot talk to)

A struggling endpoint pauses callers instead of failing them: while the breaker is open, requests wait,
and the half-open trial is a one-token probe that no prompt of the run can make fail, sent at once when
the breaker trips (a burst of failing prompts on a healthy server costs no pause) and then every
`cooldown` while it fails, so an outage costs time, not attempts. An attempt is an error only once its
own retries are spent. A request's repeated failures count toward opening the breaker only while
nothing else succeeds: once the endpoint has answered anyone (or a probe) since the request first
failed, its failures are about the prompt (a server that always fails that one), not the endpoint.

Azure OpenAI: its classic deployment URL is the base URL,
`openai:DEPLOYMENT@https://RES.openai.azure.com/openai/deployments/DEPLOYMENT?key_header=api-key&api_version=V`,
and so is its v1 API, `openai:DEPLOYMENT@https://RES.openai.azure.com/openai/v1` (Bearer or api-key). Neither
lists deployments at /models, so their model_info is None and the hash is the ref's alone.

Provider content filters are an answer, not a failure: Azure's HTTP 400 `content_filter`, OpenAI's HTTP
400 `invalid_prompt` (a reasoning model's prompt flagged under the usage policy), OpenRouter's
HTTP 403 for an input its moderation flagged (`error.metadata.reasons`), a 200 with
`finish_reason: "content_filter"` (or Gemini's own `SAFETY`, `PROHIBITED_CONTENT`, ...), or an OpenAI
`message.refusal` come back as a Generation with `blocked` set (no retry, not counted by the breaker).

A reasoning model's trace, inline (`<think>...</think>` before the answer) or in a separate field
(`reasoning_content` / `reasoning`), is split off the answer (models/reasoning.py); a reply whose
reasoning left no answer (content empty or null) is an error, not retried: the same budget would cut
it off again.

OpenAI's reasoning models refuse `max_tokens` and `stop`: after the 400 that names one, requests are
built without it for the rest of the run (models/openai_params.py).

The API key lives only in the client's headers: it is never part of the ref, an error message, a log
line or anything stored (error text is scrubbed of it in case a server echoes it back).

Transport: a plain http:// server that no proxy variable (HTTP_PROXY / ALL_PROXY, minus NO_PROXY)
routes elsewhere -- the local vLLM / llama-server / Ollama case, where the client's CPU per request
bounds throughput -- is talked to over tunesafe.models.http1 (h11 on asyncio); https:// and proxied
URLs go through httpx, which brings TLS, certificates and proxies.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import math
import os
import random
import re
import ssl
import time
import urllib.request
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from tunesafe.errors import EndpointUnavailable, UserError
from tunesafe.models.base import apply_stop, error_generation
from tunesafe.models.chat_template import fold_system
from tunesafe.models.credentials import KeySource, TokenError, TokenSource, command_provider
from tunesafe.models.http1 import Http1Connection, Response
from tunesafe.models.openai_params import RequestShape, UnsupportedTemperature, hidden_reasoning_error
from tunesafe.models.provider_replies import (
    SERVER_FAILED_FINISH,
    filter_hits,
    filtered_finish,
    openai_finish,
    prompt_filter,
)
from tunesafe.models.reasoning import content_parts, reasoning_field, settle_reasoning
from tunesafe.models.refs import ModelRef, parse_options, redact_ref, split_credentials
from tunesafe.models.sse import BrokenStream, is_event_stream, stream_completion
from tunesafe.models.tool_calls import from_openai_message, to_openai_messages
from tunesafe.types import Capabilities, ChatRequest, Generation, Message, canonical_json, sha256_hex

BACKOFF_BASE_S = 0.5
CLIENTS = ("auto", "httpx")
KEY_HEADERS = ("authorization", "api-key")
# Azure's api-version values: a date, a dated preview, or the v1 API's rolling names
_API_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}(-preview)?|preview|latest")
BACKOFF_CAP_S = 30.0
POLL_S = 0.05  # how often a waiting request looks again while the probe is out
VOLATILE_MODEL_FIELDS = frozenset({"created"})
# 4xx answers a retry may get past: 408 the server timed out waiting for us; 409 a conflict (Anthropic's
# conflict_error; the OpenAI and Anthropic SDKs retry it); 424 TGI's generation failed on the server;
# 498 Groq's flex tier at capacity (console.groq.com/docs/flex-processing: retry with backoff)
RETRYABLE_4XX = frozenset({408, 409, 424, 498})
# 529: Anthropic's overloaded_error, the whole service over capacity: for everyone what a 429 is for one
# client, so it paces requests as a 429 does rather than spending their retries
BUSY_STATUS = frozenset({429, 529})
TRANSIENT_STATUS = frozenset({408, 502, 503, 504} | BUSY_STATUS)  # a model listing may answer on a later try
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")  # OpenAI's x-ratelimit-reset-*: Go durations
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
PROBE = ChatRequest(messages=(Message("user", "ping"),), max_new_tokens=1)


class _Retryable(Exception):
    """An attempt failed in a way worth retrying; `retry_after` is the server's hint, if any."""

    def __init__(self, message: str, retry_after: float | None = None, counts_for_breaker: bool = True,
                 rate_limited: bool = False):
        super().__init__(message)
        self.retry_after = retry_after
        self.counts_for_breaker = counts_for_breaker
        self.rate_limited = rate_limited  # a 429 or 529: the endpoint is up and asks us to slow down


class _Fatal(Exception):
    """An attempt failed in a way retrying cannot fix (bad request, bad credentials)."""


class ReplicaDown(Exception):
    """A replica of a replicated model (models/replicas.py) whose breaker is open: the request goes to
    another replica instead of waiting for this one."""


class CircuitBreaker:
    """Opens after `threshold` consecutive failed requests. While open, requests wait in `wait()` (they are
    not failed) and one waiter at a time is told to send the trial (the probe): at once when it opens
    (an outage, or only prompts this server always fails?), then every `cooldown_s` while probes fail.
    A successful probe closes it. `down_since` is when it opened (cleared when it closes): how long the
    endpoint has been failing. `successes` counts every success, so a request can tell whether the
    endpoint answered anyone since it first failed."""

    def __init__(self, threshold: int, cooldown_s: float, name: str | None = None) -> None:
        self.name = name  # the endpoint, for the error that stops its callers
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.failures = 0
        self.successes = 0
        self.opened_at: float | None = None
        self.down_since: float | None = None
        self.last_failure = ""
        self._trial_running = False

    def retry_in(self) -> float | None:
        """Seconds until the next trial while open (0 while one is out); None when closed."""
        if self.opened_at is None:
            return None
        return max(0.0, self.opened_at + self.cooldown_s - time.monotonic())

    def accepting(self) -> bool:
        """Closed, or open with the trial due and nobody sending it: a new request may come here."""
        retry_in = self.retry_in()
        return retry_in is None or (retry_in == 0 and not self._trial_running)

    def down_for(self) -> float:
        return 0.0 if self.down_since is None else time.monotonic() - self.down_since

    async def wait(self, max_pause: float) -> bool:
        """Return False when a request may go out (at once while closed), True when the caller is to send
        the trial. Raises EndpointUnavailable once the breaker has been open longer than `max_pause`."""
        while True:
            retry_in = self.retry_in()
            if retry_in is None:
                return False
            if retry_in == 0 and not self._trial_running:
                self._trial_running = True
                return True
            if self.down_for() > max_pause:
                raise EndpointUnavailable(
                    f"the endpoint failed every request for {self.down_for():.0f} s "
                    f"(last: {self.last_failure})", where=self.name, fix="check the server, then try again")
            await asyncio.sleep(min(max(retry_in, POLL_S), 1.0))

    def success(self) -> None:
        self.successes += 1
        self.failures = 0
        self.opened_at = self.down_since = None
        self._trial_running = False

    def failure(self, reason: str) -> None:
        """A request failed (not the probe)."""
        self.last_failure = reason
        if self.opened_at is not None:
            return
        self.failures += 1
        if self.failures >= self.threshold:
            self.down_since = time.monotonic()
            self.opened_at = self.down_since - self.cooldown_s  # probe at once

    def probe_failed(self, reason: str | None) -> None:
        """The probe failed (None: it was abandoned, e.g. cancelled): the next one after a cooldown."""
        if reason is not None:
            self.last_failure = reason
            self.opened_at = time.monotonic()
        self._trial_running = False


def _wait_hint(headers: Mapping[str, str]) -> float | None:
    """The server's wait hint, for a 429 and a retried 5xx/4xx alike: `retry-after-ms` (OpenAI, Azure,
    also on 503s) before `retry-after`."""
    try:
        return max(0.0, float(headers.get("retry-after-ms") or "")) / 1000
    except ValueError:
        return _retry_after(headers.get("retry-after"))


def _rate_limit_hint(headers: Mapping[str, str]) -> float | None:
    """A 429's wait: the server's hint, else, from OpenAI's `x-ratelimit-*` headers (sent where its 429s
    carry no retry-after), the time until the last of the spent limits (remaining 0) resets. A hint of no
    wait ("0", a date past by the server's clock) is no hint."""
    if hint := _wait_hint(headers):
        return hint
    resets = [_duration(headers.get(f"x-ratelimit-reset-{kind}", "")) for kind in ("requests", "tokens")
              if headers.get(f"x-ratelimit-remaining-{kind}", "").strip() == "0"]
    return max((r for r in resets if r is not None), default=None)


def _duration(value: str) -> float | None:
    """The seconds of a duration as OpenAI writes them ("1s", "6m0s", "20ms"); None for anything else."""
    value = value.strip()
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(n + unit for n, unit in parts) != value:
        return None
    return sum(float(n) * _UNIT_S[unit] for n, unit in parts)


def _server_says_retry(headers: Mapping[str, str]) -> bool | None:
    """The server's own word on retrying, None when it says nothing. `x-should-retry` is not a standard
    header, but OpenAI's and Anthropic's APIs send it, and their SDKs obey it before looking at the status
    (openai-python src/openai/_base_client.py, BaseClient._should_retry: "true" retries, "false" does
    not, and only then 408, 409, 429 and 5xx retry)."""
    value = headers.get("x-should-retry", "").strip().lower()
    return True if value == "true" else False if value == "false" else None


def _given_up(message: str, headers: Mapping[str, str], says_retry: bool | None) -> Exception:
    """The failure of an answer this client would not retry, unless the server says a retry may succeed
    (x-should-retry: true; the SDKs retry then). The server answered: no mark against its health."""
    if says_retry:
        return _Retryable(message, _wait_hint(headers), counts_for_breaker=False)
    return _Fatal(message)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class _Connection(Protocol):
    """One request at a time to the server; raises TimeoutError or ConnectionError for the attempt."""

    async def request(self, method: str, target: str, body: bytes, timeout: float,
                      headers: Sequence[tuple[str, str]] = ()) -> Response: ...

    async def aclose(self) -> None: ...


class _HttpxConnection:
    """The same over httpx, for what http1 leaves out (TLS, proxies). One client with one connection:
    httpx's pool scans all its connections for every request, which made one shared 64-connection
    client CPU-bound (56 vs ~290 req/s at concurrency 64 in benchmarks/backends.py)."""

    def __init__(self, origin: str, headers: Mapping[str, str], ssl_context: ssl.SSLContext) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        self._client = httpx.AsyncClient(base_url=origin, headers=dict(headers), limits=limits,
                                         verify=ssl_context)
        self._kept = False  # the last response left the connection open for the next request

    async def request(self, method: str, target: str, body: bytes, timeout: float,
                      headers: Sequence[tuple[str, str]] = ()) -> Response:
        deadline = time.monotonic() + timeout
        while True:
            kept, self._kept = self._kept, False
            try:
                # httpx's timeout bounds each read, not the response: a server that trickles a byte now
                # and then never times out. The attempt's deadline is the whole exchange, as on http1.
                sent = self._client.request(method, target, content=body, timeout=timeout,
                                            headers=dict(headers) or None)
                resp = await asyncio.wait_for(sent, max(0.0, deadline - time.monotonic()))
                break
            except (httpx.TimeoutException, asyncio.TimeoutError):
                raise TimeoutError(f"no complete response within {timeout:g}s") from None
            except httpx.RemoteProtocolError as exc:
                # the keep-alive race, as on http1: no byte of answer on a kept connection, once more
                if kept and "without sending a response" in str(exc):
                    continue
                raise ConnectionError(f"{type(exc).__name__}: {exc}") from None
            except httpx.TransportError as exc:
                raise ConnectionError(f"{type(exc).__name__}: {exc}") from None
        self._kept = resp.headers.get("connection", "").lower() != "close"
        received = {k.lower(): v for k, v in resp.headers.items()}
        if _httpx_decodes(received.get("content-encoding", "")):  # resp.content is decoded: say so as http1
            received.pop("content-encoding", None)
        return Response(resp.status_code, received, resp.content)

    async def aclose(self) -> None:
        await self._client.aclose()


def _httpx_decodes(coding: str) -> bool:
    """Whether httpx decoded a body in this content-encoding (gzip and deflate; br and zstd only where
    their packages are installed)."""
    supported = getattr(httpx._decoders, "SUPPORTED_DECODERS", ("identity", "gzip", "deflate"))
    return all(c.strip().lower() in supported for c in coding.split(","))


def _proxy_for(url: str) -> str | None:
    """The proxy the environment names for the URL (HTTP(S)_PROXY / ALL_PROXY minus NO_PROXY), if any."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or (parts.hostname and urllib.request.proxy_bypass(parts.hostname)):
        return None
    return proxy


def _goes_direct(url: str) -> bool:
    """Whether http1 can serve the URL: plain http and no proxy variable applies to its host."""
    parts = urlsplit(url)
    return parts.scheme == "http" and bool(parts.hostname) and _proxy_for(url) is None


def _check_proxy(url: str, model: str) -> None:
    """UserError for a SOCKS proxy httpx cannot use (its socks extra missing): an ImportError at the
    first request otherwise."""
    proxy = _proxy_for(url)
    if proxy and proxy.lower().startswith("socks") and importlib.util.find_spec("socksio") is None:
        raise UserError(f"the environment routes {urlsplit(url).hostname} through the SOCKS proxy "
                        f"{redact_ref(proxy)}, which needs httpx's socks extra", where=f"openai:{model}",
                        fix="pip install 'httpx[socks]', or add the host to NO_PROXY to reach it directly")


class OpenAIChatModel:
    backend = "openai"

    def __init__(self, model: str, base_url: str, *, key_env: str | None = None, concurrency: int = 16,
                 timeout: float = 60.0, max_retries: int = 4, breaker: int = 8, cooldown: float = 30.0,
                 prefill: bool = False, client: str = "auto", max_pause: float = 600.0,
                 key_header: str = "authorization", api_version: str | None = None,
                 key_cmd: str | None = None, token_provider: KeySource | None = None) -> None:
        _check_choice("client", client, CLIENTS, model)
        _check_choice("key_header", key_header, KEY_HEADERS, model)
        if api_version is not None and not _API_VERSION.fullmatch(api_version):
            raise UserError(f"api_version={api_version!r} is not an API version", where=f"openai:{model}",
                            fix="use the date Azure names, e.g. api_version=2024-10-21 or 2025-04-01-preview")
        if concurrency < 1:  # no connection slot: every request would wait for one forever
            raise UserError(f"concurrency={concurrency} leaves no request in flight", where=f"openai:{model}",
                            fix="use concurrency=1 or more")
        if not 0 < timeout < math.inf:  # NaN never expires (a hang); 0 or less fails every attempt
            raise UserError(f"timeout={timeout:g} is not a number of seconds above 0",
                            where=f"openai:{model}", fix="use e.g. timeout=60")
        # below these a request is never tried, the breaker opens before any failure, or waits go negative
        for name, value, least in (("max_retries", max_retries, 0), ("breaker", breaker, 1),
                                   ("cooldown", cooldown, 0), ("max_pause", max_pause, 0)):
            if not value >= least:  # NaN too
                raise UserError(f"{name}={value:g} is below {least}", where=f"openai:{model}",
                                fix=f"use {name}={least} or more")
        self.model = model
        # URL userinfo becomes a header: base_url, ref, hashes and errors never carry it (models/refs.py)
        self.base_url, self._url_auth = split_credentials(base_url.rstrip("/"))
        self.ref = f"openai:{model}@{self.base_url}"
        self.capabilities = Capabilities(prefill=prefill, tools=True)
        self.key_env = key_env or "OPENAI_API_KEY"
        self.key_header = key_header
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_pause = max_pause
        self._tokens = _token_source(model, key_env, key_cmd, token_provider)
        self._key = None if self._tokens else os.environ.get(self.key_env) or None
        self._breaker = CircuitBreaker(breaker, cooldown, self.ref)
        self._concurrency = concurrency
        parts = urlsplit(self.base_url)
        # A query in the base URL (Azure's ?api-version=) goes with every request, chat and /models; the
        # base URL keeps it, so the ref and the model hash name it as given.
        given = {"api-version": api_version} if api_version else {}
        self._query = {**dict(parse_qsl(parts.query)), **given}
        self._root = urlunsplit(parts._replace(query="", fragment="")).rstrip("/")
        self._path = parts.path.rstrip("/") + "/chat/completions" + _query_string(self._query)
        self._direct = client == "auto" and _goes_direct(self.base_url)
        if not self._direct:
            _check_proxy(self.base_url, model)
        self._ssl_context: ssl.SSLContext | None = None
        # One connection per concurrency slot. The slots belong to one event loop; a CLI may call
        # asyncio.run twice.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: asyncio.Queue[_Connection] | None = None
        self._connections: list[_Connection] = []
        self._hash: str | None = None
        self._info: Any = None  # the /v1/models entry content_hash read
        self._reported: Counter[str] = Counter()
        self.folds_system = False  # the server's template refused a system message (models/chat_template.py)
        self.request_shape = RequestShape()  # parameters the server refused, renamed or left out since
        self.fail_fast = False  # set by a replica set: raise ReplicaDown instead of waiting out an outage

    @classmethod
    def from_ref(cls, ref: ModelRef, token_provider: KeySource | None = None) -> OpenAIChatModel:
        """`token_provider`: a callable (or a source shared by replicas) giving the key, as key_cmd does."""
        conv: dict[str, Any] = {"key_env": str, "concurrency": int, "timeout": float, "max_retries": int,
                                "breaker": int, "cooldown": float, "client": str, "max_pause": float,
                                "prefill": lambda v: v.lower() in ("1", "true", "yes"), "key_header": str,
                                "api_version": str, "key_cmd": str}
        if "api-version" in ref.options:  # a URL pasted from Azure's portal: its query reads as options
            options = dict(ref.options)
            options.setdefault("api_version", options.pop("api-version"))
            ref = replace(ref, options=options)
        kwargs = parse_options(ref, conv, "openai")
        assert ref.base_url is not None
        return cls(ref.target, ref.base_url, **kwargs, token_provider=token_provider)

    def _headers(self) -> dict[str, str]:
        if self._url_auth:
            return self._url_auth
        key = self._tokens.current() if self._tokens else self._key
        if not key:
            return {}
        if self.key_header == "api-key":
            return {"api-key": key}
        return {"Authorization": f"Bearer {key}"}

    def _key_advice(self) -> str:
        """The key's variable, and Azure's header where the key went as Bearer (a classic Azure URL's 401)."""
        where = f"the token of {self._tokens.name}" if self._tokens else f"env var {self.key_env}"
        if self.key_header == "api-key" or self._url_auth:
            return where
        return f"{where}; Azure OpenAI takes it with ?key_header=api-key"

    def _scrub(self, text: str) -> str:
        for auth in self._url_auth.values():  # a server may echo the Basic token back, like a key
            token = auth.split()[-1]
            password = base64.b64decode(token).decode(errors="replace").partition(":")[2]
            for secret in (token, password) if len(password) >= 4 else (token,):  # or one it decoded
                text = text.replace(secret, "***")
        for key in self._tokens.issued if self._tokens else [self._key] if self._key else []:
            text = text.replace(key, "***")
        return text

    def content_hash(self) -> str:
        """sha256 of the ref plus what the server reports for the model at /v1/models (NOT a weight hash:
        an HTTP server can swap weights under the same name). Unreachable server: UserError."""
        if self._hash is None:
            self._info = self.model_info()
            self._hash = endpoint_hash(self.model, [self.base_url], self._info)
        return self._hash

    def hash_at(self, urls: Sequence[str]) -> str:
        """The content hash this model would have if the server listing at `urls` reported what this one
        reports now (models/replicas.py: a replica run resumed at other URLs)."""
        self.content_hash()
        return endpoint_hash(self.model, urls, self._info)

    def model_info(self) -> Any:
        """The server's /v1/models entry for this model (None when it lists none), without the fields a
        server stamps per request (vLLM's `created` is the time of the request): a resumed run must see
        the same model in a later process."""
        try:
            resp = _get_within(f"{self._root}/models", self._query, self._headers(), self.timeout)
        except TimeoutError:
            raise UserError(f"the server's model listing took longer than the timeout ({self.timeout:g}s)",
                            where=self.ref, fix="try again once the server answers GET /models, or raise "
                                                "?timeout=") from None
        except httpx.HTTPError as exc:
            raise UserError(f"cannot reach {self.base_url}: {type(exc).__name__}", where=self.ref,
                            fix="start the server or fix the URL") from None
        if resp.status_code in (401, 403):
            raise UserError(f"server refused the credentials (HTTP {resp.status_code})", where=self.ref,
                            fix=f"give a valid key: check {self._key_advice()}")
        if resp.status_code == 407:  # a proxy between us and the server, not the server
            raise UserError("the proxy refused the request (HTTP 407: it wants credentials)", where=self.ref,
                            fix="give them in the proxy variable, e.g. HTTP_PROXY=http://USER:PASSWORD@PROXY:"
                                "PORT, or add the host to NO_PROXY if it is reached directly")
        if resp.is_redirect:  # not "no entry": every request would then fail the same way
            location = self._scrub(resp.headers["location"])
            raise UserError(f"HTTP {resp.status_code}: the server redirects to {location}", where=self.ref,
                            fix=f"give {_redirect_base(location)} as the base URL (no redirect is followed)")
        if resp.status_code in TRANSIENT_STATUS:  # not "no entry": the hash would name the blip
            raise UserError(f"the server's model listing failed for now (HTTP {resp.status_code})",
                            where=self.ref, fix="try again once the server answers GET /models")
        if resp.status_code != 200:
            return None
        try:
            data = resp.json().get("data") or []
            info = next((m for m in data if isinstance(m, dict) and m.get("id") == self.model), None)
        except (ValueError, AttributeError):
            return None
        return None if info is None else {k: v for k, v in info.items() if k not in VOLATILE_MODEL_FIELDS}

    def _connect(self) -> _Connection:
        # a token that expires goes with each request instead (_send)
        headers = {"content-type": "application/json", "accept": "application/json",
                   "user-agent": "tunesafe", **({} if self._tokens else self._headers())}
        parts = urlsplit(self.base_url)
        if self._direct:
            assert parts.hostname is not None
            return Http1Connection(parts.hostname, parts.port or 80, list(headers.items()))
        if self._ssl_context is None:  # one for all slots: loading the CA bundle takes ~25 ms each time
            self._ssl_context = httpx.create_ssl_context()
        return _HttpxConnection(f"{parts.scheme}://{parts.netloc}", headers, self._ssl_context)

    def _bind_loop(self) -> asyncio.Queue[_Connection]:
        loop = asyncio.get_running_loop()
        if self._slots is None or self._loop is not loop:
            self._connections = [self._connect() for _ in range(self._concurrency)]
            self._slots = asyncio.Queue()
            for connection in self._connections:
                self._slots.put_nowait(connection)
            self._loop = loop
        return self._slots

    async def aclose(self) -> None:
        if self._loop is asyncio.get_running_loop():  # connections of an earlier loop died with it
            for connection in self._connections:
                await connection.aclose()
        self._connections, self._slots, self._loop = [], None, None

    def paused(self) -> float | None:
        """Seconds until the next trial while the endpoint is failing (the breaker is open), else None."""
        return self._breaker.retry_in()

    def accepting(self) -> bool:
        return self._breaker.accepting()

    def down_for(self) -> float:
        return self._breaker.down_for()

    async def generate(self, requests: Sequence[ChatRequest]) -> list[Generation]:
        """Raises EndpointUnavailable (no Generation) when the endpoint stays down past max_pause."""
        return list(await asyncio.gather(*(self._one(r) for r in requests)))

    async def generate_one(self, request: ChatRequest, extra_body: Mapping[str, Any]) -> Generation:
        """One request with server-specific fields added to its body (llama.cpp's `id_slot`)."""
        return await self._one(request, extra_body)

    def payload(self, request: ChatRequest) -> dict[str, Any]:
        """The chat-completions body this client sends for `request`."""
        return self._payload(request)

    async def _one(self, request: ChatRequest, extra_body: Mapping[str, Any] | None = None) -> Generation:
        if request.prefill and not self.capabilities.prefill:
            return error_generation(f"{self.ref} does not support prefill (add ?prefill=1 if the server "
                                    "continues a final assistant message)")
        slots = self._bind_loop()
        connection = await slots.get()  # bounds concurrency: one request per slot
        started = time.perf_counter()  # latency counts from here, not the wait for a slot
        try:
            attempt = limited = 0
            limited_s = 0.0  # waited on 429s: bounded by max_pause, not by max_retries
            first_failed: int | None = None  # the breaker's success count when this request first failed
            while True:
                if self.fail_fast and not self._breaker.accepting():
                    raise ReplicaDown(self.ref)
                if await self._breaker.wait(self.max_pause):
                    await self._probe(connection)
                    continue
                try:
                    generation = await self._attempt(connection, request, extra_body)
                except _Retryable as exc:
                    message = self._scrub(str(exc))
                    if exc.rate_limited:
                        # the server's wait must fit in max_pause; the jitter on top is cut to what is left
                        asked = exc.retry_after or 0.0
                        if limited_s >= self.max_pause or limited_s + asked > self.max_pause:
                            why = f"still limited after {limited_s:.0f} s of waiting (max_pause)"
                            return error_generation(f"{message}: {why}", time.perf_counter() - started)
                        delay = min(_rate_limit_delay(limited, exc.retry_after),
                                    max(asked, self.max_pause - limited_s))
                        limited, limited_s = limited + 1, limited_s + delay
                        await asyncio.sleep(delay)
                        continue
                    if exc.counts_for_breaker:
                        first_failed = self._breaker.successes if first_failed is None else first_failed
                        if self._breaker.successes == first_failed:  # no one answered since: the endpoint?
                            self._breaker.failure(message)
                    if attempt >= self.max_retries:
                        return error_generation(f"{message} (after {attempt + 1} attempts)",
                                                time.perf_counter() - started)
                    await asyncio.sleep(self._delay(attempt, exc.retry_after))
                    attempt += 1
                    continue
                except _Fatal as exc:
                    return error_generation(self._scrub(str(exc)), time.perf_counter() - started)
                if generation.blocked is None:  # a filter in front of the model says nothing of its health
                    self._breaker.success()
                return _with_latency(generation, time.perf_counter() - started)
        finally:
            slots.put_nowait(connection)

    async def _probe(self, connection: _Connection) -> None:
        """The half-open trial: a one-token request no prompt of the run shapes. Any answer closes the
        breaker (a 4xx or a 429 is a server that is up); a 5xx, timeout or dropped connection re-opens it."""
        failed = None
        try:
            await self._attempt(connection, PROBE)
        except _Retryable as exc:
            failed = self._scrub(str(exc)) if exc.counts_for_breaker else None
        except _Fatal:
            pass
        except BaseException:  # cancelled mid-probe: let another waiter probe
            self._breaker.probe_failed(None)
            raise
        if failed is None:
            self._breaker.success()
        else:
            self._breaker.probe_failed(failed)

    @staticmethod
    def _delay(attempt: int, retry_after: float | None) -> float:
        # Full jitter spreads retries of many concurrent requests; a server's Retry-After is a floor.
        backoff = random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))
        return min(BACKOFF_CAP_S, max(backoff, retry_after or 0.0))

    def _payload(self, request: ChatRequest) -> dict[str, Any]:
        # Tool results need OpenAI's call ids, also in a conversation that offers no tools any more.
        tooled = request.tools or any(m.role == "tool" for m in request.messages)
        messages = (to_openai_messages(request.messages) if tooled
                    else [{"role": m.role, "content": m.content} for m in request.messages])
        if self.folds_system and not tooled:
            messages = fold_system(messages)
        payload: dict[str, Any] = {"model": self.model, "messages": messages,
                                   "max_tokens": request.max_new_tokens, "temperature": request.temperature,
                                   "seed": request.seed}
        if request.stop:
            payload["stop"] = list(request.stop)
        if request.tools:
            payload.update(tools=[dict(t) for t in request.tools], tool_choice="auto")
        if request.prefill:
            messages.append({"role": "assistant", "content": request.prefill})
            payload.update(continue_final_message=True, add_generation_prompt=False)
        return self.request_shape.apply(payload)

    async def _attempt(self, connection: _Connection, request: ChatRequest,
                       extra_body: Mapping[str, Any] | None = None) -> Generation:
        folded = self.folds_system  # what this body was built with; a concurrent request may flip it
        payload = self._payload(request) if extra_body is None else {**self._payload(request), **extra_body}
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        seen = self._tokens.generation if self._tokens else 0
        resp = await self._send(connection, body)
        refresh_failed = None
        if resp.status_code == 401 and self._tokens:  # expired: a new token, then this request once more
            try:
                await self._tokens.refresh(seen)
            except TokenError as exc:
                refresh_failed = str(exc)
            if self._tokens.last_error is None:
                resp = await self._send(connection, body)
            refresh_failed = refresh_failed or self._tokens.last_error
        says_retry = _server_says_retry(resp.headers) if resp.status_code != 200 else None
        if says_retry is False and (resp.status_code in (429, *RETRYABLE_4XX) or resp.status_code >= 500):
            # an error, never a refusal: the server failed this request and says a retry cannot help
            raise _Fatal(f"HTTP {resp.status_code} with x-should-retry: false (the server says a retry will "
                         f"not help): {self._scrub(resp.text)[:200]}")
        if resp.status_code == 429 and _spent_quota(resp):  # no wait lifts it: the endpoint fails everyone
            raise _Retryable(f"HTTP 429 insufficient_quota: {self._scrub(resp.text)[:200]}")
        if resp.status_code in BUSY_STATUS:
            what = "rate limited" if resp.status_code == 429 else "overloaded"
            raise _Retryable(f"HTTP {resp.status_code} {what}", _rate_limit_hint(resp.headers),
                             counts_for_breaker=False, rate_limited=True)
        # scrubbed before it is cut: a key echoed across the cut would keep its head
        if resp.status_code >= 500 or resp.status_code in RETRYABLE_4XX:
            raise _Retryable(f"HTTP {resp.status_code}: {self._scrub(resp.text)[:200]}",
                             _wait_hint(resp.headers))
        if resp.status_code in (400, 403) and (blocked := _filtered_prompt(resp)) is not None:
            return blocked
        if resp.status_code in (401, 403):
            renewed = (f"; renewing the token failed: {refresh_failed}" if refresh_failed
                       else ", also with a renewed token" if resp.status_code == 401 and self._tokens else "")
            raise _given_up(f"HTTP {resp.status_code}: credentials refused (check {self._key_advice()})"
                            f"{renewed}: {self._scrub(resp.text)[:200]}", resp.headers, says_retry)
        if resp.status_code in (400, 422) and not folded and _refused_system(resp, request):
            self.folds_system = True  # as on transformers: the system prompt opens the first user turn
            return await self._attempt(connection, request, extra_body)
        try:
            if self.request_shape.adapt(resp.status_code, resp.text, payload):
                return await self._attempt(connection, request, extra_body)
        except UnsupportedTemperature as exc:
            raise _Fatal(str(exc)) from None
        if 300 <= resp.status_code < 400 and "location" in resp.headers:
            raise _Fatal(self._scrub(_redirected(resp.status_code, resp.headers["location"])))
        if resp.status_code != 200:
            raise _given_up(f"HTTP {resp.status_code}: {self._scrub(resp.text)[:300]}", resp.headers,
                            says_retry)
        generation, reported = _parse_completion(resp, request)
        if isinstance(reported, str) and reported:
            self._reported[reported] += 1
        return generation

    def reported_models(self) -> dict[str, int]:
        """How many replies named each model id (the reply's `model`: what the server says answered)."""
        return dict(self._reported)

    def request_adaptations(self) -> dict[str, str]:
        """Request parameters the server refused, and what this client sends instead (openai_params)."""
        return self.request_shape.summary()


    async def _send(self, connection: _Connection, body: bytes) -> Response:
        auth = tuple(self._headers().items()) if self._tokens else ()
        try:
            return await connection.request("POST", self._path, body, self.timeout, auth)
        except TimeoutError:
            raise _Retryable(f"timeout after {self.timeout:g}s") from None
        except ConnectionError as exc:
            raise _Retryable(f"connection error: {exc}") from None


def endpoint_hash(model: str, urls: Sequence[str], model_info: Any) -> str:
    """The content hash of `model` served at `urls` (each without credentials) reporting `model_info`.
    One URL: sha256 of the ref and the entry, as since the first stored run."""
    return sha256_hex(canonical_json({"ref": f"openai:{model}@{','.join(urls)}", "model_info": model_info}))


def ref_token_source(ref: ModelRef, provider: KeySource | None = None) -> TokenSource | None:
    """The one token source of a ref's key_cmd (or `provider`), for replicas to share."""
    return _token_source(ref.target, ref.options.get("key_env"), ref.options.get("key_cmd"), provider)


def _token_source(model: str, key_env: str | None, key_cmd: str | None,
                  provider: KeySource | None) -> TokenSource | None:
    """The source of a key that expires (key_cmd, or a callable in Python), or None for a fixed key."""
    given = [name for name, value in (("key_env", key_env), ("key_cmd", key_cmd),
                                      ("token_provider", provider)) if value is not None]
    if len(given) > 1:
        raise UserError(f"{' and '.join(given)} both name where the key comes from", where=f"openai:{model}",
                        fix="give one: key_env for a fixed key, key_cmd (or token_provider) for one that "
                            "expires")
    if isinstance(provider, TokenSource):
        return provider
    if provider is not None:
        return TokenSource(provider)
    return TokenSource(command_provider(key_cmd), "key_cmd") if key_cmd is not None else None


def _check_choice(option: str, value: str, choices: Sequence[str], model: str) -> None:
    if value not in choices:
        raise UserError(f"unknown {option} {value!r}", where=f"openai:{model}",
                        fix=f"use {option}={f' or {option}='.join(choices)}")


def _query_string(params: Mapping[str, str]) -> str:
    return "?" + urlencode(params) if params else ""


def _parse_completion(resp: Response, request: ChatRequest) -> tuple[Generation, Any]:
    """The generation, and the model id the reply names (not checked: anything a server sent)."""
    coding = resp.headers.get("content-encoding", "identity")
    if coding.strip().lower() != "identity":  # compressed bytes read as JSON: "malformed", and retried
        raise _Fatal(f"the server sent its reply in content-encoding {coding}, which this client cannot "
                     "decode (it reads gzip and deflate): have the server or gateway send it uncompressed")
    try:
        raw = _body_text(resp.content)
        streamed = is_event_stream(resp.headers.get("content-type", ""), resp.content)
        body = stream_completion(raw) if streamed else json.loads(raw)
        if "\\ud" in raw or "\\uD" in raw:  # only a \u escape makes a surrogate: the common reply skips this
            body = _storable(body)
        if isinstance(body, Mapping) and body.get("error") and not body.get("choices"):  # a gateway's
            raise _carried_error(body["error"], "error")
        choice = body["choices"][0]
        message = choice["message"]
        content, thinking = content_parts(message.get("content"))  # a list of parts: Mistral's reasoning
        refusal = message.get("refusal")
        # a call beside a refusal (in the field, not the content) was still made: the turn keeps both
        text = from_openai_message({**message, "content": content or refusal}) if request.tools \
            else content or ""
        called = bool(request.tools) and bool(message.get("tool_calls") or message.get("function_call"))
        reasoning = reasoning_field(message) or thinking
        finish = str(choice.get("finish_reason") or "stop")
        native_filter = finish != "content_filter" and filtered_finish(finish)  # Gemini's own reasons
        finish = "content_filter" if native_filter else openai_finish(finish)
        usage: Mapping[str, Any] = body.get("usage") or {}
        tokens = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        # OpenRouter answers 200 once generation began, even when a provider then fails: the error
        # rides in the body, and the text before it is no answer (fail closed). Like a 5xx, retryable;
        # so are DeepSeek's finish_reason "insufficient_system_resource" and vLLM's "abort".
        failure = body.get("error") or choice.get("error")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        why = f"{exc}: " if isinstance(exc, BrokenStream) else ""
        raise _Retryable(f"malformed response from server: {why}{resp.text[:120]!r}") from None
    if failure or finish in SERVER_FAILED_FINISH:
        raise _carried_error(failure, finish)
    hidden = None if request.tools or reasoning is not None or refusal or finish == "content_filter" \
        else hidden_reasoning_error(usage, content or "", finish)
    if hidden:
        raise _Fatal(hidden)  # the same budget would crowd the answer out again: no retry
    blocked = None
    if finish == "content_filter":  # Azure filtered the completion: what came before the cut is kept
        blocked = _filter_reason("completion", filter_hits(choice.get("content_filter_results")))
        if native_filter:
            blocked = f"content_filter: completion ({choice['finish_reason']})"
    elif refusal and not called:  # OpenAI's refusal field replaces the content when the model declines
        text, finish, blocked = str(refusal), "refusal", "refusal"
    elif content is None and not called and reasoning is None:
        # no answer, refusal, tool call or reasoning: read as "" it would be judged an empty answer (an
        # agent's, too: its episode ended there, an attack counted as resisted)
        raise _Fatal(f"the server's reply has no answer (message.content null, finish_reason {finish})")
    else:
        text, stopped = apply_stop(text, request.stop)
        finish = "stop" if stopped else finish
    return settle_reasoning(Generation(text=text, finish_reason=finish, blocked=blocked,
                                       prompt_tokens=tokens[0], completion_tokens=tokens[1],
                                       reasoning=reasoning)), body.get("model")


# What vLLM and TGI answer when the model's chat template raises on a system message (Gemma-2: "System
# role not supported"; Mistral-7B-Instruct v0.1-v0.2: "Conversation roles must alternate ...").
_NO_SYSTEM_ROLE = re.compile(r"system role|roles must alternate", re.IGNORECASE)


def _refused_system(resp: Response, request: ChatRequest) -> bool:
    return (any(m.role == "system" for m in request.messages) and not request.tools
            and _NO_SYSTEM_ROLE.search(resp.text) is not None)


def _carried_error(failure: Any, finish: str) -> _Retryable:
    """A 200 whose body says the request failed: retried like a 5xx."""
    detail = failure.get("message") if isinstance(failure, Mapping) else failure
    return _Retryable(f"HTTP 200 carrying an error: {str(detail or finish)[:200]}")


def _redirected(status: int, location: str) -> str:
    """A redirect is not followed (the key would go wherever it points, a POST may turn into a GET): the
    error names the base URL to give instead."""
    base = _redirect_base(location)
    return f"HTTP {status}: the server redirects to {location}; give {base} as the base URL"


def _redirect_base(location: str) -> str:
    """The base URL a redirect of a request under it points to."""
    return location.split("?")[0].rstrip("/").removesuffix("/chat/completions").removesuffix("/models")


def _body_text(content: bytes) -> str:
    """A JSON body as servers send it: a byte-order mark some put first is no error, and a byte that is
    no UTF-8 (a multi-byte character cut at max_tokens) reads as U+FFFD, as any text view shows it,
    instead of failing an answer that is there."""
    return content.decode("utf-8", "replace").removeprefix("\ufeff")


_SURROGATE = re.compile("[\ud800-\udfff]")


def _storable(value: Any) -> Any:
    """`value` with every lone surrogate (`"\\ud83d"` escaped in JSON without its other half: a gateway
    that cut a string inside an emoji) read as U+FFFD: no UTF-8 writer, SQLite included, takes one."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_storable(v) for v in value]
    if isinstance(value, dict):
        return {k: _storable(v) for k, v in value.items()}
    return value


def _spent_quota(resp: Response) -> bool:
    """OpenAI's 429 for an account whose credits or monthly budget are spent (`insufficient_quota`): it
    lifts when someone pays, not after a wait."""
    try:
        error = json.loads(_body_text(resp.content))["error"]
        return "insufficient_quota" in (error.get("code"), error.get("type"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return False


def _filtered_prompt(resp: Response) -> Generation | None:
    """A provider filter's answer to a prompt (models/provider_replies.prompt_filter), else None."""
    try:
        error = json.loads(_body_text(resp.content))["error"]
    except (ValueError, KeyError, TypeError):
        return None
    reasons = prompt_filter(error, resp.status_code)
    if reasons is None:
        return None
    return Generation(text="", finish_reason="content_filter", blocked=_filter_reason("prompt", reasons))


def _filter_reason(where: str, hits: list[str]) -> str:
    """"content_filter: prompt (jailbreak, violence)": what the provider's filter named."""
    return f"content_filter: {where}" + (f" ({', '.join(hits)})" if hits else "")


def _rate_limit_delay(limited: int, hint: float | None) -> float:
    """The wait before retrying the `limited`+1-th 429 of a request. The server's hint, else exponential
    backoff; never near zero (a burst of immediate retries is what the limit refuses), and jittered so
    the requests of one burst come back spread out."""
    base = hint if hint else min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**limited)  # a 0 hint: a burst again
    return base + random.uniform(0, base / 2 + 0.05)


def _with_latency(generation: Generation, latency_s: float) -> Generation:
    return replace(generation, latency_s=latency_s)


def _get_within(url: str, params: Any, headers: dict[str, str], timeout: float) -> httpx.Response:
    """GET whose whole answer must arrive within `timeout`: httpx's own timeout bounds each read, so a
    server that trickles bytes would hold the start of a run for as long as it likes."""
    deadline = time.monotonic() + timeout
    with httpx.stream("GET", url, params=params, headers=headers, timeout=timeout) as resp:
        body = bytearray()
        for chunk in resp.iter_raw():
            body += chunk
            if time.monotonic() > deadline:
                raise TimeoutError
        return httpx.Response(resp.status_code, headers=resp.headers, content=bytes(body),
                              request=resp.request)
