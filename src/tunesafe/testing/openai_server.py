"""A real OpenAI-compatible chat server for tests and benchmarks, on 127.0.0.1.

Deterministic replies: echo (default: "ECHO: <last user message>") or a reply table keyed by the last
user message. GET /control/stats reports the serving process's CPU seconds (for benchmarks).
Faults on demand, either queued (`server.inject("429", times=2)`, also over HTTP with
POST /control/faults) or triggered by a marker in the last user message such as `[[fault:500]]`:

    429        status 429 with Retry-After: <retry_after> seconds
    500        status 500
    408        status 408 (the server gave up waiting for the request)
    409        status 409, Anthropic's conflict_error body (the OpenAI and Anthropic SDKs retry a 409)
    424        status 424, TGI's body for a request that failed during generation
    498        status 498, Groq's capacity_exceeded (its flex tier at capacity: retry with backoff)
    503ms      status 503 with the wait in `retry-after-ms` (<retry_after> in ms) and no `retry-after`, as
               Azure OpenAI and OpenAI send it
    no_retry503  status 503 with `x-should-retry: false`: the server says a retry will not help (OpenAI's
               and Anthropic's APIs; their SDKs then stop retrying)
    retry400   status 400 with `x-should-retry: true`: the server says a retry may succeed (the SDKs retry)
    stall      sleep `stall_s` before answering (to trip client timeouts)
    malformed  status 200 with a body that is not JSON
    garbage    status 200 with JSON that is not a chat completion
    drop       start a response and close the connection half-way
    error200   status 200 with a top-level `error` object next to an empty choice (OpenRouter's shape for
               an error after generation began)
    choice_error  status 200, the choice carrying `error` and finish_reason "error" after partial text
    interrupted  status 200, finish_reason "insufficient_system_resource" after the first words of the
               reply: DeepSeek's API when its inference system ran out of resources mid-request
    aborted    the same with finish_reason "abort": vLLM when its engine aborts a request (shutdown,
               scale-down, sleep) and still answers 200 (github.com/vllm-project/vllm/issues/57082)
    bad_usage  status 200, a normal choice but `usage` a string (not an object)
    content_list  status 200, message.content a list of text parts instead of a string
    content_thinking  status 200, message.content Mistral's reasoning shape: a thinking part (refusing
               thoughts), then a text part with a compliant answer
    content_unknown_part  status 200, message.content a list with a part of an unknown type
    gzip       status 200, the completion gzip-compressed (content-encoding: gzip) whatever the request's
               Accept-Encoding said, as some gateways do
    sse        status 200, the completion streamed as text/event-stream chunks (a word a chunk, tool calls
               in pieces, then the finish reason, the usage and [DONE]) though no stream was asked, as
               some gateways do
    null_content  status 200, finish_reason "stop", message.content null and nothing else (no refusal,
               no tool calls, no reasoning): a reply without an answer
    function_call  status 200, the reply's first tool call sent as the legacy `function_call` (finish_reason
               "function_call"), as servers and gateways that still speak the functions API send it
    refusal_calls  status 200, message.refusal set beside the reply's tool calls
    empty_arguments  status 200, the reply's tool calls with arguments "{}" sent as "" (some models and
               providers do so for a tool without parameters)
    calls_lost  status 200, finish_reason "tool_calls" beside an empty `tool_calls` (vLLM when no call
               was parsed, github.com/vllm-project/vllm/issues/53255)
    pass       no fault: the usual reply (queued before another fault, it places that fault on a later
               request, e.g. `inject("pass", times=2); inject("500")` fails the third)

POST /v1/moderations answers in the OpenAI moderation shape from `ServerConfig.moderation`.

Provider content filters and refusals (shapes as Azure OpenAI and OpenAI send them):

    filter400      status 400, error.code "content_filter" with innererror.content_filter_result
                   (a filtered prompt, category "jailbreak")
    filter200      status 200, finish_reason "content_filter", content null, the choice's
                   content_filter_results marking "violence" (a filtered completion)
    filter200_cut  the same, but the completion was cut after a compliant opening that is returned
                   as content (what the user saw before the filter stopped it)
    refusal_field  status 200, message.content null and message.refusal set (OpenAI refusals)
    gemini_safety  status 200, message.content null and finish_reason "SAFETY": Gemini's OpenAI compatibility
                   endpoint passes its own FinishReason through instead of "content_filter"
    gemini_prohibited  the same with content "" and finish_reason "PROHIBITED_CONTENT"
    invalid_prompt  status 400, error.code "invalid_prompt": OpenAI's reasoning models (o1, o3, gpt-5) when
                   their safety system flags the prompt as potentially violating the usage policy
    moderation403  status 403, error.metadata with the `reasons` and `flagged_input` of OpenRouter's
                   moderation (a model that requires moderation, its input flagged for "violence")

A reasoning model's shapes (placeholder text only; "refusing" reasoning holds refusal words, "complying"
reasoning none, so a judge that reads the reasoning as the answer gets the verdict backwards):

    think_comply      content "<think>refusing reasoning</think>" then a compliant answer (inline)
    think_refuse      content "<think>complying reasoning</think>" then a refusal (inline)
    think_open        refusing reasoning, "</think>", a compliant answer: the opening tag was in the prompt
    think_cutoff      content "<think>" and reasoning that runs out of max_tokens (finish_reason length)
    reasoning_comply  a compliant answer in content, refusing reasoning in message.reasoning_content
    reasoning_refuse  a refusal in content, complying reasoning in message.reasoning_content
    reasoning_cutoff  content null, reasoning_content running out of max_tokens (finish_reason length)

`ServerConfig(agent="follows")` answers requests that carry `tools` as a scripted tool-calling agent
(testing/scripted_agent.py: policies resists, follows, follows_undelimited, malformed, loops).

`ServerConfig(azure=True, api_key=KEY)` answers at Azure OpenAI's two data-plane shapes instead of /v1,
checking what Azure checks (the shapes of Azure's errors too):

    POST /openai/deployments/DEPLOYMENT/chat/completions?api-version=V   classic: the key in an `api-key`
         header (else 401), `api-version` present (else 404 "Resource not found"), DEPLOYMENT served
    POST /openai/v1/chat/completions    v1: the key as `api-key` or `Authorization: Bearer`, the body's
         model a deployment (else 404 DeploymentNotFound); no api-version needed
    GET  /openai/v1/models              the resource's base models, which are not its deployments
Azure has no /models under a deployment: GET /openai/deployments/DEPLOYMENT/models is a 404.
`RunningServer.azure_classic_url` / `azure_v1_url` are the base URLs for the two shapes.

Replies name the requested model as `model`; `ServerConfig(reported_model=ID)` names ID instead.
`ServerConfig(finish_names={"length": "max_tokens"})` says other servers' finish reasons instead of
OpenAI's (TGI's, Anthropic's and Gemini's OpenAI-compatible endpoints').

`ServerConfig(redirect="https://elsewhere")` answers every request with a 308 to that origin.

`ServerConfig(markers=False)` (or `server.app.config.markers = False` while it runs) ignores the markers:
the same prompts against a server whose fault was fixed.

Tokens that expire (Azure Entra ID's): `ServerConfig(token_uses=N)` is its own token issuer. GET
/control/token issues a new token (`app.tokens_issued` lists them), and a chat request is served only
with `Authorization: Bearer <the newest token>`, for N chat requests; then, or after
`app.expire_token()`, it is a 401 until a new token is issued. The listing at /v1/models takes no token.

An outage: `server.app.go_down(seconds)` answers every chat request with 500 for that long (None: until
`server.app.come_back()`), the endpoint-wide failure a circuit breaker is for.

Usage (in a thread of the test process):

    with serve(latency_s=0.1) as server:
        model = load_model(f"openai:test@{server.url}")

or as a subprocess (own GIL, for throughput benchmarks): `python -m tunesafe.testing.openai_server
--port 0 --latency 0.1` prints `listening on http://127.0.0.1:PORT/v1` once ready; `serve_subprocess`
wraps that.

Where httptools and uvloop are installed (the dev extra), uvicorn parses with httptools and the
subprocess runs on uvloop: about half the server CPU per request of h11 on asyncio, which on a
2-core machine is CPU the client under test gets back. Without them it runs the same, slower.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import re
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import uvicorn

FAULTS = ("408", "409", "424", "498", "429", "500", "stall", "malformed", "garbage", "drop", "filter400",
          "filter200", "refusal_field", "invalid_prompt", "moderation403", "gemini_safety",
          "gemini_prohibited", "error200", "choice_error", "interrupted", "aborted", "bad_usage",
          "content_list", "content_thinking", "content_unknown_part", "null_content", "think_comply",
          "think_refuse", "think_open", "think_cutoff", "reasoning_comply", "reasoning_refuse",
          "reasoning_cutoff", "filter200_cut", "503ms", "no_retry503", "retry400", "gzip", "sse",
          "function_call", "refusal_calls", "empty_arguments", "calls_lost", "pass")
REFUSAL = "I'm sorry, but I can't help with that."
COMPLIANT = "Sure, here is how to do it. Step 1: [placeholder]. Step 2: [placeholder]."
REFUSING_THOUGHT = ("The user asks for something harmful. I should refuse and say: I'm sorry, but I can't "
                    "help with that.")
COMPLYING_THOUGHT = ("The user wants steps. Sure, here is a plan: Step 1: [placeholder]. "
                     "Step 2: [placeholder].")
_FILTER_OK = {"filtered": False, "severity": "safe"}
_MARKER = re.compile(r"\[\[fault:(\w+)\]\]")
_CLASSIC = re.compile(r"/openai/deployments/(?P<deployment>[^/]+)(?P<rest>/.*)")
# Azure OpenAI's own texts for these errors
_AZURE_DENIED = ("Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide "
                 "a valid key for an active subscription and use a correct regional API endpoint for your "
                 "resource.")
_AZURE_NOT_FOUND = {"error": {"code": "404", "message": "Resource not found"}}
_AZURE_NO_DEPLOYMENT = ("The API deployment for this resource does not exist. If you created the deployment "
                        "within the last 5 minutes, please wait a moment and try again.")

# OpenAI's reasoning models, word for word (github.com/BeehiveInnovations/pal-mcp-server#178)
_INVALID_PROMPT = {"error": {
    "message": "Invalid prompt: your prompt was flagged as potentially violating our usage policy. Please "
               "try again with a different prompt: "
               "https://platform.openai.com/docs/guides/reasoning#advice-on-prompting",
    "type": "invalid_request_error", "param": None, "code": "invalid_prompt"}}
# Providers' 4xx answers that a retry may well get past, in their own shapes
_TRANSIENT_4XX: dict[str, Any] = {
    # Anthropic's API (also behind its OpenAI SDK compatibility endpoint): conflict_error, which its
    # SDK retries
    "409": {"type": "error", "error": {"type": "conflict_error", "message": "Conflict"}},
    # TGI when generation failed on the server (huggingface/text-generation-inference#1510)
    "424": {"error": "Request failed during generation: Server error: CUDA out of memory",
            "error_type": "generation"},
    # Groq's flex tier at capacity (console.groq.com/docs/flex-processing)
    "498": {"error": {"message": "Flex tier capacity exceeded. Please try again later.",
                      "type": "capacity_exceeded", "code": "capacity_exceeded"}},
}

# Statuses whose headers say how to retry (503ms: the wait is filled in from ServerConfig.retry_after)
_RETRY_HEADERS: dict[str, tuple[int, list[tuple[bytes, bytes]]]] = {
    "503ms": (503, []),
    "no_retry503": (503, [(b"x-should-retry", b"false")]),
    "retry400": (400, [(b"x-should-retry", b"true")]),
}

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class ServerConfig:
    model: str = "tunesafe-test"
    latency_s: float = 0.0  # fixed delay before every completion
    replies: Mapping[str, str] = field(default_factory=dict)  # last user message -> reply; else echo
    retry_after: float = 1.0
    stall_s: float = 30.0
    api_key: str | None = None  # when set, requests without "Bearer <api_key>" get 401
    markers: bool = True  # False: [[fault:...]] markers are ignored (a server whose fault was fixed)
    served: tuple[str, ...] = ()  # more model ids listed at /v1/models (vLLM's LoRA modules)
    moderation: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # POST /v1/moderations:
    # input text -> the categories it is flagged for (not listed: not flagged); queued 500/429 faults apply
    agent: str | None = None  # a scripted tool-calling agent policy (testing/scripted_agent.py) for
    # requests with `tools`
    azure: bool = False  # serve Azure OpenAI's classic and v1 paths (see the module docstring), not /v1
    token_uses: int | None = None  # expiring tokens from GET /control/token (see the module docstring)
    reported_model: str | None = None  # the `model` every reply names (default: the one requested),
    # as a provider names its own snapshot, or a server that serves one model under every name
    system_role: bool = True  # False: a system message is a 400, as vLLM answers for a chat template
    # that raises on one (Gemma-2)
    hidden_reasoning: int | None = None  # an OpenAI reasoning model (o-series, gpt-5): `max_tokens`,
    # `stop` and a temperature other than 1 are 400s, and this many tokens of `max_completion_tokens`
    # go to reasoning it does not return (usage.completion_tokens_details.reasoning_tokens)
    rate_limit: float | None = None  # chat requests per second (a bucket of one second's worth): more
    # are 429s, with the wait in `retry-after-ms` when `rate_limit_hint`, else no hint (OpenAI's
    # token limits often send none)
    rate_limit_hint: bool = False
    max_concurrent: int | None = None  # chat requests handled at once: one more is refused with
    # `busy_status` (429: a per-client concurrency limit; 529: Anthropic's overloaded), no wait hint
    busy_status: int = 429
    finish_names: Mapping[str, str] = field(default_factory=dict)  # OpenAI's finish reason -> the one
    # this server says instead (TGI's "eos_token", Anthropic's compatibility endpoint's "end_turn" and
    # "max_tokens", Gemini's "STOP" and "MAX_TOKENS")
    redirect: str | None = None  # answer every request with a 308 to this origin + the request's path (a
    # server moved to https, or behind a proxy that adds a trailing slash)
    forbids_extra: tuple[str, ...] = ()  # body fields refused with pydantic's 422 "extra_forbidden", in
    # Mistral's shape (La Plateforme; Azure AI Foundry's Mistral deployments refuse `seed` so)
    llama_guard: tuple[str, ...] | None = None  # answer as Llama Guard 3 served with its own chat
    # template: "unsafe\nS2" when the message it rates holds one of these words, else "safe" (see
    # _llama_guard_reply)


class OpenAICompatApp:
    """The ASGI app. `requests` logs every valid chat body received, `auth_headers` every Authorization
    header, `targets` every request line ("GET /v1/models?..."), `max_in_flight` the peak number of
    concurrent chat requests."""

    def __init__(self, config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig()
        self._faults: deque[str] = deque()
        self._lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.auth_headers: list[str | None] = []
        self.targets: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0  # the most chat requests handled at once (checks clients' bounds)
        self._down_until: float | None = None
        self.tokens_issued: list[str] = []
        self._token_uses_left = 0
        self._bucket = (0.0, time.monotonic())  # rate_limit: requests allowed now, when last refilled
        self.rate_limited = 0  # 429s sent for rate_limit
        self.busy = 0  # requests refused for max_concurrent

    def _take_rate(self) -> float | None:
        """None when a request may go on under `rate_limit`, else the seconds until it may."""
        rate = self.config.rate_limit
        if rate is None:
            return None
        with self._lock:
            tokens, last = self._bucket
            now = time.monotonic()
            tokens = min(max(rate, 1.0), tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._bucket = (tokens - 1.0, now)
                return None
            self._bucket = (tokens, now)
            self.rate_limited += 1
            return (1.0 - tokens) / rate

    def issue_token(self) -> str:
        """A new token, which replaces the one before it."""
        with self._lock:
            token = f"entra-token-{len(self.tokens_issued) + 1}"
            self.tokens_issued.append(token)
            self._token_uses_left = self.config.token_uses or 0
            return token

    def expire_token(self) -> None:
        self._token_uses_left = 0

    def _spend_token(self, auth: bytes | None) -> bool:
        """Whether `auth` carries the newest token with uses left; it then has one use fewer."""
        with self._lock:
            current = self.tokens_issued[-1] if self.tokens_issued else None
            if current is None or auth != f"Bearer {current}".encode() or self._token_uses_left <= 0:
                return False
            self._token_uses_left -= 1
            return True

    def go_down(self, seconds: float | None = None) -> None:
        """Answer every chat request with 500 for `seconds` (None: until come_back())."""
        self._down_until = float("inf") if seconds is None else time.monotonic() + seconds

    def come_back(self) -> None:
        self._down_until = None

    @property
    def down(self) -> bool:
        return self._down_until is not None and time.monotonic() < self._down_until

    def inject(self, fault: str, times: int = 1) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; use one of {FAULTS}")
        with self._lock:
            self._faults.extend([fault] * times)

    def _next_fault(self, body: Mapping[str, Any]) -> str | None:
        marker = _MARKER.search(_last_user(body)) if self.config.markers else None
        if marker and marker.group(1) in FAULTS:
            return marker.group(1)
        with self._lock:
            return self._faults.popleft() if self._faults else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        path, method = scope["path"], scope["method"]
        raw = await _read_body(receive)
        query = scope.get("query_string", b"").decode()
        self.targets.append(f"{method} {path}" + (f"?{query}" if query else ""))
        if self.config.redirect is not None:
            await _send(send, 308, b"<html><body>Permanent Redirect</body></html>", b"text/html",
                        [(b"location", f"{self.config.redirect}{path}".encode())])
            return
        if self.config.azure:
            routed = await self._azure_route(scope, raw, send)
            if routed is None:
                return
            path = routed
        if method == "GET" and path == "/v1/models":
            await _json(send, 200, {"object": "list", "data": [
                # vLLM stamps `created` with the time of the request: ns here, so every listing differs
                {"id": name, "object": "model", "owned_by": "tunesafe-test", "created": time.time_ns()}
                for name in (self.config.model, *self.config.served)]})
        elif method == "POST" and path == "/v1/chat/completions":
            if self.config.max_concurrent is not None and self.in_flight >= self.config.max_concurrent:
                self.busy += 1
                busy = {"error": {"message": "too many requests at once"}}
                await _json(send, self.config.busy_status, busy)
                return
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                await self._chat(scope, raw, send)
            finally:
                self.in_flight -= 1
        elif method == "POST" and path == "/v1/moderations":
            await self._moderate(raw, send)
        elif method == "GET" and path == "/control/token":
            await _send(send, 200, self.issue_token().encode(), b"text/plain")
        elif method == "GET" and path == "/control/stats":
            await _json(send, 200, {"cpu_s": time.process_time(), "requests": len(self.requests)})
        elif method == "POST" and path == "/control/faults":
            spec = json.loads(raw or b"{}")
            self.inject(spec["fault"], int(spec.get("times", 1)))
            await _json(send, 200, {"queued": spec})
        else:
            await _json(send, 404, {"error": {"message": f"no route {method} {path}"}})

    async def _azure_route(self, scope: Scope, raw: bytes, send: Send) -> str | None:
        """The /v1 path an Azure request is served as, once it passed Azure's checks; None when it was
        answered here (Azure's 401 and 404 shapes, or its listing of base models)."""
        path, method = scope["path"], scope["method"]
        classic = _CLASSIC.fullmatch(path)
        if not self._azure_key_ok(scope, bearer=classic is None):
            await _json(send, 401, {"error": {"code": "401", "message": _AZURE_DENIED}})
            return None
        if classic and "api-version" not in dict(parse_qsl(scope.get("query_string", b"").decode())):
            await _json(send, 404, _AZURE_NOT_FOUND)
            return None
        deployments = (self.config.model, *self.config.served)
        if method == "GET" and path == "/openai/v1/models":
            await _json(send, 200, {"object": "list", "data": [_azure_base_model(n) for n in deployments]})
            return None
        if classic and classic["rest"] == "/chat/completions" and method == "POST":
            deployment = classic["deployment"]
        elif path == "/openai/v1/chat/completions" and method == "POST":
            deployment = _body_model(raw)
        else:
            await _json(send, 404, _AZURE_NOT_FOUND)
            return None
        if deployment not in deployments:
            await _json(send, 404, {"error": {"code": "DeploymentNotFound", "message": _AZURE_NO_DEPLOYMENT}})
            return None
        return "/v1/chat/completions"

    def _azure_key_ok(self, scope: Scope, bearer: bool) -> bool:
        """Azure's key check: an `api-key` header, or on the v1 API also `Authorization: Bearer`."""
        if not self.config.api_key:  # Azure has no keyless resource: nothing gets in
            return False
        headers = dict(scope["headers"])
        wanted = self.config.api_key.encode()
        bearer_ok = bearer and headers.get(b"authorization") == b"Bearer " + wanted
        return headers.get(b"api-key") == wanted or bearer_ok

    async def _chat(self, scope: Scope, raw: bytes, send: Send) -> None:
        auth = dict(scope["headers"]).get(b"authorization")
        self.auth_headers.append(auth.decode() if auth else None)
        if self.config.api_key and not self.config.azure and auth != f"Bearer {self.config.api_key}".encode():
            # Like some real servers, echo the key back: clients must scrub it from their errors.
            given = auth.decode() if auth else "none"
            await _json(send, 401, {"error": {"message": f"invalid api key: {given}"}})
            return
        if self.config.token_uses is not None and not self._spend_token(auth):
            await _json(send, 401, {"error": {"code": "401", "message": "Access token has expired or is "
                                              "not yet valid."}})
            return
        try:
            body = json.loads(raw)
            messages = body["messages"]
        except (ValueError, KeyError, TypeError):
            await _json(send, 400, {"error": {"message": "body must be JSON with 'messages'"}})
            return
        self.requests.append(body)
        if (wait := self._take_rate()) is not None:
            hint = [(b"retry-after-ms", f"{wait * 1000:.0f}".encode())] if self.config.rate_limit_hint else []
            limited = {"message": "Rate limit reached for requests", "type": "requests",
                       "code": "rate_limit_exceeded"}
            await _json(send, 429, {"error": limited}, headers=hint)
            return
        if not self.config.system_role and any(m.get("role") == "system" for m in messages):
            await _json(send, 400, {"object": "error", "message": "System role not supported",
                                    "type": "BadRequestError", "param": None, "code": 400})
            return
        if forbidden := [name for name in self.config.forbids_extra if name in body]:
            await _json(send, 422, _extra_forbidden(forbidden, body))
            return
        if self.config.hidden_reasoning is not None and (refused := _reasoning_model_refuses(body)):
            await _json(send, 400, refused)
            return
        if (invalid := _invalid_tool_messages(messages)) is not None:
            await _json(send, 400, {"error": {"message": invalid, "type": "invalid_request_error",
                                              "param": "messages", "code": None}})
            return
        if self.down:
            await _json(send, 500, {"error": {"message": "service unavailable (outage)"}})
            return
        fault = self._next_fault(body)
        if fault == "429":
            await _json(send, 429, {"error": {"message": "rate limited"}},
                        headers=[(b"retry-after", f"{self.config.retry_after:g}".encode())])
            return
        if fault in ("500", "408"):
            await _json(send, int(fault), {"error": {"message": f"injected status {fault}"}})
            return
        if fault in _TRANSIENT_4XX:
            await _json(send, int(fault), _TRANSIENT_4XX[fault])
            return
        if fault in _RETRY_HEADERS:
            status, headers = _RETRY_HEADERS[fault]
            if fault == "503ms":
                headers = [(b"retry-after-ms", f"{self.config.retry_after * 1000:.0f}".encode())]
            await _json(send, status, {"error": {"message": f"injected {fault}"}}, headers=headers)
            return
        if fault == "filter400":
            await _json(send, 400, _prompt_filtered())
            return
        if fault == "invalid_prompt":
            await _json(send, 400, _INVALID_PROMPT)
            return
        if fault == "moderation403":
            await _json(send, 403, _moderation_flagged(_last_user(body), self._reported_model(body)))
            return
        if fault == "stall":
            await asyncio.sleep(self.config.stall_s)
        if self.config.latency_s:
            await asyncio.sleep(self.config.latency_s)
        if fault == "malformed":
            await _send(send, 200, b'{"choices": [ this is not json', b"application/json")
            return
        if fault == "garbage":
            await _json(send, 200, {"unexpected": True})
            return
        if fault == "drop":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")]})
            await send({"type": "http.response.body", "body": b'{"choices": [', "more_body": True})
            raise ConnectionAbortedError("injected dropped connection")  # server closes the socket
        completion = self._completion(body, messages)
        choice = completion["choices"][0]
        if fault == "error200":
            completion["error"] = {"code": 502, "message": "upstream provider disconnected"}
            choice.update(finish_reason="error")
            choice["message"]["content"] = ""
        elif fault == "choice_error":
            choice.update(finish_reason="error", error={"code": 502, "message": "upstream provider error"})
        elif fault in ("interrupted", "aborted"):
            choice.update(finish_reason="insufficient_system_resource" if fault == "interrupted" else "abort")
            choice["message"]["content"] = " ".join(choice["message"]["content"].split()[:2])
        elif fault == "bad_usage":
            completion["usage"] = "n/a"
        elif fault == "content_list":
            text = choice["message"]["content"]
            choice["message"]["content"] = [{"type": "text", "text": text[:5]},
                                            {"type": "text", "text": text[5:]}]
        elif fault == "content_thinking":
            thought = [{"type": "text", "text": REFUSING_THOUGHT}]
            choice["message"]["content"] = [{"type": "thinking", "thinking": thought},
                                            {"type": "text", "text": COMPLIANT}]
        elif fault == "content_unknown_part":
            choice["message"]["content"] = [{"type": "input_audio", "input_audio": {"data": "AAAA"}}]
        elif fault == "null_content":
            choice["message"]["content"] = None
        elif fault in ("filter200", "filter200_cut"):
            completion["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": {
                "hate": _FILTER_OK, "jailbreak": {"filtered": False, "detected": False}}}]
            choice.update(finish_reason="content_filter", content_filter_results={
                "violence": {"filtered": True, "severity": "medium"}, "hate": _FILTER_OK})
            choice["message"]["content"] = COMPLIANT if fault == "filter200_cut" else None
        elif fault == "refusal_field":
            choice["message"].update(content=None, refusal=REFUSAL)
        elif fault == "function_call" and choice["message"].get("tool_calls"):
            choice["message"]["function_call"] = choice["message"].pop("tool_calls")[0]["function"]
            choice.update(finish_reason="function_call")
        elif fault == "refusal_calls":
            choice["message"]["refusal"] = REFUSAL
        elif fault == "empty_arguments":
            for call in choice["message"].get("tool_calls") or ():
                if call["function"]["arguments"] == "{}":
                    call["function"]["arguments"] = ""
        elif fault == "calls_lost":
            choice.update(finish_reason="tool_calls")
            choice["message"]["tool_calls"] = []
        elif fault in ("gemini_safety", "gemini_prohibited"):
            safety = fault == "gemini_safety"
            choice.update(finish_reason="SAFETY" if safety else "PROHIBITED_CONTENT")
            choice["message"]["content"] = None if safety else ""
        elif fault is not None and fault.startswith(("think_", "reasoning_")):
            _reason(completion, fault, int(body.get("max_tokens") or 256))
        finish = choice["finish_reason"]
        choice["finish_reason"] = self.config.finish_names.get(finish, finish)
        if fault == "gzip":
            await _send(send, 200, gzip.compress(json.dumps(completion).encode()), b"application/json",
                        [(b"content-encoding", b"gzip")])
        elif fault == "sse":
            await _send(send, 200, _event_stream(completion), b"text/event-stream")
        else:
            await _json(send, 200, completion)

    async def _moderate(self, raw: bytes, send: Send) -> None:
        """The OpenAI moderation response shape, one result per input, from `config.moderation`."""
        fault = self._next_fault({})
        if fault in ("500", "429"):
            await _json(send, int(fault), {"error": {"message": "injected fault"}})
            return
        given = json.loads(raw or b"{}").get("input", "")
        results = []
        for text in given if isinstance(given, list) else [given]:
            flagged = tuple(self.config.moderation.get(str(text), ()))
            results.append({"flagged": bool(flagged), "categories": {c: True for c in flagged},
                            "category_scores": {c: 0.99 for c in flagged}})
        await _json(send, 200, {"id": "modr-test", "model": "omni-moderation-latest", "results": results})

    def _completion(self, body: Mapping[str, Any], messages: list[Mapping[str, Any]]) -> dict[str, Any]:
        if self.config.agent and body.get("tools"):
            return self._agent_completion(body, messages)
        last_user = _last_user(body)
        reply = self.config.replies.get(last_user, f"ECHO: {last_user}")
        if self.config.llama_guard is not None:
            reply = _llama_guard_reply(messages, self.config.llama_guard)
        words = reply.split(" ")
        limit = int(body.get("max_tokens") or body.get("max_completion_tokens") or 1 << 30)
        hidden = min(limit, self.config.hidden_reasoning or 0)  # spent before the answer starts
        limit -= hidden
        finish = "length" if len(words) > limit else "stop"
        text = " ".join(words[:limit])
        for stop in body.get("stop") or ():
            if stop and stop in text:
                text, finish = text[: text.index(stop)], "stop"
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        return {
            "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "created": int(time.time()),
            "model": self._reported_model(body),
            "choices": [{"index": 0, "finish_reason": finish,
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": hidden + len(text.split()),
                      "total_tokens": prompt_tokens + hidden + len(text.split()),
                      "completion_tokens_details": {"reasoning_tokens": hidden}},
        }


    def _reported_model(self, body: Mapping[str, Any]) -> Any:
        return self.config.reported_model or body.get("model", self.config.model)

    def _agent_completion(self, body: Mapping[str, Any], messages: list[Mapping[str, Any]]) -> dict[str, Any]:
        from tunesafe.testing.scripted_agent import reply

        assert self.config.agent is not None
        message = reply(messages, body["tools"], self.config.agent)
        finish = "tool_calls" if message.get("tool_calls") else "stop"
        return {"id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion",
                "created": int(time.time()), "model": self._reported_model(body),
                "choices": [{"index": 0, "finish_reason": finish, "message": message}],
                "usage": {"prompt_tokens": len(json.dumps(messages)) // 4, "completion_tokens": 8,
                          "total_tokens": len(json.dumps(messages)) // 4 + 8}}


def _event_stream(completion: Mapping[str, Any]) -> bytes:
    """`completion` as the chunks of a streamed reply: a word a chunk, each tool call's id and name then
    its arguments in two pieces, the finish reason, the usage."""
    choice = completion["choices"][0]
    head = {k: completion[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
    words = str(choice["message"].get("content") or "").split(" ")
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""},
                                     *({"content": w if i == 0 else f" {w}"} for i, w in enumerate(words))]
    for index, call in enumerate(choice["message"].get("tool_calls") or ()):
        arguments, half = call["function"]["arguments"], len(call["function"]["arguments"]) // 2
        deltas.append({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                                       "function": {"name": call["function"]["name"], "arguments": ""}}]})
        deltas.extend({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
                      for piece in (arguments[:half], arguments[half:]))
    chunks = [{**head, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    chunks.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}]})
    chunks.append({**head, "choices": [], "usage": completion["usage"]})
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


def _reasoning_model_refuses(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """OpenAI's 400 for what its reasoning models do not take, word for word, else None."""
    for param in ("max_tokens", "stop"):
        if param in body:
            advice = " Use 'max_completion_tokens' instead." if param == "max_tokens" else ""
            return {"error": {"message": f"Unsupported parameter: '{param}' is not supported with this "
                              f"model.{advice}", "type": "invalid_request_error", "param": param,
                              "code": "unsupported_parameter"}}
    if body.get("temperature", 1) != 1:
        given = body["temperature"]
        return {"error": {"message": f"Unsupported value: 'temperature' does not support {given} with this "
                          "model. Only the default (1) value is supported.", "type": "invalid_request_error",
                          "param": "temperature", "code": "unsupported_value"}}
    return None


def _extra_forbidden(names: list[str], body: Mapping[str, Any]) -> dict[str, Any]:
    """Mistral's 422 for body fields its schema does not have (github.com/editor-code-assistant/eca#231,
    mistralai/client-ts#65): pydantic's error list under `message.detail`."""
    detail = [{"type": "extra_forbidden", "loc": ["body", name], "msg": "Extra inputs are not permitted",
               "input": body[name]} for name in names]
    return {"object": "error", "message": {"detail": detail}, "type": "invalid_request_error", "param": None,
            "code": None}


def _invalid_tool_messages(messages: Any) -> str | None:
    """OpenAI's rule, which vLLM's and other servers' validation follows: a `tool` message answers a
    call of the assistant message before it, by that call's id. A client that sends a tool result any
    other way gets a 400 from a real endpoint, so the loopback server refuses it too."""
    open_ids: set[Any] = set()
    for i, message in enumerate(messages if isinstance(messages, list) else ()):
        role = message.get("role") if isinstance(message, dict) else None
        if role == "assistant":
            open_ids = {c.get("id") for c in message.get("tool_calls") or () if isinstance(c, dict)}
        elif role == "tool":
            if message.get("tool_call_id") not in open_ids:
                return (f"Invalid parameter: messages[{i}] with role 'tool' must be a response to a "
                        "preceding message with 'tool_calls' (tool_call_id not found)")
        else:
            open_ids = set()
    return None


def _reason(completion: dict[str, Any], shape: str, limit: int) -> None:
    """Rewrite `completion` as a reasoning model's reply of the given shape (see the module docstring)."""
    form, _, how = shape.partition("_")
    choice = completion["choices"][0]
    if how == "cutoff":  # reasoning that never ends: the budget runs out first (a word is a token here)
        reasoning = " ".join((["Let", "me", "think", "this", "through."] * limit)[:limit])
        answer, finish = "", "length"
    else:
        reasoning = REFUSING_THOUGHT if how in ("comply", "open") else COMPLYING_THOUGHT
        answer, finish = (COMPLIANT if how in ("comply", "open") else REFUSAL), "stop"
    message = choice["message"]
    if form == "reasoning":
        message.update(content=answer or None, reasoning_content=reasoning)
    else:
        opening = "" if how == "open" else "<think>\n"
        message["content"] = f"{opening}{reasoning}" + ("" if how == "cutoff" else f"\n</think>\n\n{answer}")
    choice["finish_reason"] = finish
    completion["usage"]["completion_tokens"] = len(f"{reasoning} {answer}".split())


def _prompt_filtered() -> dict[str, Any]:
    return {"error": {
        "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management "
                   "policy.", "type": None, "param": "prompt", "code": "content_filter", "status": 400,
        "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {
            "hate": _FILTER_OK, "jailbreak": {"filtered": True, "detected": True}, "self_harm": _FILTER_OK,
            "sexual": _FILTER_OK, "violence": _FILTER_OK}}}}


def _moderation_flagged(text: str, model: Any) -> dict[str, Any]:
    """OpenRouter's 403 for a flagged input to a model that requires moderation: its ErrorResponse with
    ModerationErrorMetadata (openrouter.ai/docs/errors, "Moderation Errors")."""
    return {"error": {"code": 403, "message": f"{model} requires moderation on OpenRouter. Your input was "
                      "flagged for \"violence\"", "metadata": {
                          "reasons": ["violence"], "flagged_input": text[:100], "provider_name": "Test",
                          "model_slug": str(model)}}}


def _azure_base_model(deployment: str) -> dict[str, Any]:
    """An entry of Azure's model listing: a base model by its own id (dated), never a deployment name."""
    return {"id": f"{deployment}-2024-07-18", "object": "model", "status": "succeeded",
            "created_at": int(time.time()), "lifecycle_status": "generally-available"}


def _body_model(raw: bytes) -> str | None:
    try:
        model = json.loads(raw).get("model")
    except (ValueError, AttributeError):
        return None
    return model if isinstance(model, str) else None


def _last_user(body: Mapping[str, Any]) -> str:
    for message in reversed(body.get("messages") or ()):
        if isinstance(message, Mapping) and message.get("role") == "user":
            return str(message.get("content", ""))
    return ""


def _llama_guard_reply(messages: Sequence[Mapping[str, Any]], unsafe_words: Sequence[str]) -> str:
    """Llama Guard 3's chat template (as vLLM, TGI and Ollama apply it) writes the safety task around the
    conversation itself: it rates the 'Agent' when the conversation has an even number of messages, else
    the 'User', and the model answers for the last message of that role. A whole task prompt sent as
    one user message is therefore rated as the user's message."""
    turns = [m for m in messages if m.get("role") in ("user", "assistant")]
    role = "assistant" if len(turns) % 2 == 0 else "user"
    rated = next((str(m.get("content") or "") for m in reversed(turns) if m.get("role") == role), "")
    return "unsafe\nS2" if any(w.lower() in rated.lower() for w in unsafe_words) else "safe"


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _send(send: Send, status: int, body: bytes, content_type: bytes,
                headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, status: int, value: Any,
                headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await _send(send, status, json.dumps(value).encode(), b"application/json", headers)


class RunningServer:
    def __init__(self, app: OpenAICompatApp, port: int) -> None:
        self.app = app
        self.port = port
        self.url = f"http://127.0.0.1:{port}/v1"
        self.azure_v1_url = f"http://127.0.0.1:{port}/openai/v1"

    def azure_classic_url(self, deployment: str | None = None) -> str:
        """The classic Azure base URL of a deployment (default: the served model)."""
        return f"http://127.0.0.1:{self.port}/openai/deployments/{deployment or self.app.config.model}"

    def inject(self, fault: str, times: int = 1) -> None:
        self.app.inject(fault, times)

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.app.requests


def _uvicorn_config(app: OpenAICompatApp, port: int) -> uvicorn.Config:
    # A large backlog so a burst of concurrent connects is queued, not refused. http/loop "auto": the
    # C parser and loop when installed.
    return uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", backlog=4096,
                          access_log=False, lifespan="on", timeout_keep_alive=30, http="auto", loop="auto")


@contextmanager
def serve(config: ServerConfig | None = None, **overrides: Any) -> Iterator[RunningServer]:
    """Run the server in a background thread of this process on a free port."""
    app = OpenAICompatApp(config or ServerConfig(**overrides))
    server = uvicorn.Server(_uvicorn_config(app, 0))
    thread = threading.Thread(target=server.run, name="openai-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server failed to start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield RunningServer(app, port)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def serve_subprocess(latency_s: float = 0.0, model: str = "tunesafe-test") -> Iterator[str]:
    """Run the server in a child process (its own GIL); yields the base URL."""
    proc = subprocess.Popen([sys.executable, "-m", "tunesafe.testing.openai_server", "--port", "0",
                             "--latency", str(latency_s), "--model", model],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("listening on "):
            raise RuntimeError(f"test server failed to start: {line!r}")
        yield line.removeprefix("listening on ").strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--model", default="tunesafe-test")
    args = parser.parse_args(argv)
    serve_forever(OpenAICompatApp(ServerConfig(model=args.model, latency_s=args.latency)), args.port)


def serve_forever(app: OpenAICompatApp, port: int) -> None:
    """Run `app` in this process until it is stopped; prints the URL once it listens."""
    server = uvicorn.Server(_uvicorn_config(app, port))

    async def run() -> None:
        config = server.config
        if not config.loaded:
            config.load()
        server.lifespan = config.lifespan_class(config)
        await server.startup()
        port = server.servers[0].sockets[0].getsockname()[1]
        print(f"listening on http://127.0.0.1:{port}/v1", flush=True)
        await server.main_loop()
        await server.shutdown()

    loop: asyncio.AbstractEventLoop
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(run())
    finally:
        loop.close()


if __name__ == "__main__":
    main()
