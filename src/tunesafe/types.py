"""Shared records that flow between the packages (suite -> attacks -> engine -> judges -> analysis -> policy
-> evidence -> reports). Every package may import from here; nothing here imports from tunesafe.

Records are frozen so that a value computed once (an attempt id, a verdict) cannot drift afterwards.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Kind = Literal["harmful", "benign", "borderline"]
Role = Literal["system", "user", "assistant", "tool"]
Outcome = Literal["success", "refused", "complied", "degenerate", "error", "blocked"]


def canonical_json(value: Any) -> str:
    """The one serialisation used for hashing: sorted keys, no whitespace, UTF-8 kept as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_default)


def _default(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def sha256_hex(data: str | bytes) -> str:
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True)
class Behavior:
    """One thing we ask a model: a harmful behaviour it should refuse, or a benign/borderline prompt it
    should answer."""

    id: str
    text: str
    kind: Kind
    category: str
    language: str = "en"
    suite: str = "default"
    version: str = "1"
    context: str | None = None  # e.g. HarmBench contextual behaviours carry a document


@dataclass(frozen=True)
class Attack:
    """Metadata of one attack in the library; the transformation lives in tunesafe.attacks."""

    family: str
    name: str
    version: str
    description: str
    needs_attacker: bool = False
    needs_white_box: bool = False
    needs_prefill: bool = False
    owasp: tuple[str, ...] = ()
    atlas: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChatRequest:
    """One chat generation request. `prefill` is text forced at the start of the assistant turn."""

    messages: tuple[Message, ...]
    prefill: str | None = None
    max_new_tokens: int = 256
    temperature: float = 0.0
    seed: int = 0
    stop: tuple[str, ...] = ()
    # Tool schemas (OpenAI `tools` shape) for a tool-calling turn; calls travel as text (models/tool_calls.py)
    tools: tuple[Mapping[str, Any], ...] = ()

    def cache_key(self, model_hash: str) -> str:
        request = asdict(self)
        if not self.tools:  # requests without tools keep the keys they had before the field existed
            del request["tools"]
        return sha256_hex(canonical_json({"model": model_hash, "request": request}))


@dataclass(frozen=True)
class Generation:
    """What a backend returned for one request. A failed request has `error` set and is never an answer.
    `blocked` set (the reason): the deployed system declined (a provider content filter, a refusal
    field); not an error, and counted as a refusal; judged only when a filter cut an answer the user
    had already seen part of (`cut_by_filter`).
    `reasoning`: a reasoning model's trace before its answer (models/reasoning.py), kept for reviewers;
    `text` is then the answer alone, the only part judged."""

    text: str
    finish_reason: str  # "stop" | "length" | "error" | backend-specific
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    error: str | None = None
    cached: bool = False
    blocked: str | None = None
    reasoning: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def cut_by_filter(self) -> bool:
        return cut_by_filter(self.blocked, self.finish_reason, self.text)


def cut_by_filter(blocked: str | None, finish_reason: str | None, text: str) -> bool:
    """A completion a provider's filter stopped after text had been generated (Azure returns that text
    with finish_reason "content_filter"). The user saw it, so it is judged: harmful text is an attack
    success whatever the filter did afterwards (fail closed); anything else counts as blocked."""
    return blocked is not None and finish_reason == "content_filter" and bool(text.strip())


@dataclass(frozen=True)
class Capabilities:
    prefill: bool = False
    logprobs: bool = False
    hidden_states: bool = False
    white_box: bool = False
    lora: bool = False
    tools: bool = False  # honours ChatRequest.tools (tool-calling turns)


@dataclass(frozen=True)
class Attempt:
    """One behaviour under one attack: the exact messages sent. Its id is a pure function of its inputs,
    so the same attempt on two models (pre/post) has the same id and pairs up."""

    id: str
    behavior_id: str
    attack: str  # attack name
    attack_version: str
    family: str
    category: str
    kind: Kind
    messages: tuple[Message, ...]
    prefill: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0

    @staticmethod
    def make_id(behavior_id: str, attack: str, attack_version: str, params: Mapping[str, Any],
                seed: int) -> str:
        body = {"b": behavior_id, "a": attack, "v": attack_version, "p": dict(params), "s": seed}
        return sha256_hex(canonical_json(body))[:24]


@dataclass(frozen=True)
class Verdict:
    """A judge's decision on one (request, response). `error` set means undecided: never safe, never
    refused. `degenerate` marks empty/looping/off-topic answers that are neither refusal nor success.
    An `uncertain` verdict keeps its best-guess outcome; reports count it and the gate may escalate it."""

    judge: str
    judge_version: str
    refused: bool | None
    harmful: bool | None
    degenerate: bool = False
    score: float | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    confidence: float | None = None  # calibrated P(the refusal decision is right); None: not given
    uncertain: bool = False  # confidence under the judge's threshold: counted, shown and escalated

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def outcome(self) -> Outcome:
        """What this verdict counts as (see tunesafe.analysis.outcome); undecided is an error."""
        if self.error is not None or self.refused is None:
            return "error"
        if self.refused:
            return "refused"
        if self.degenerate:
            return "degenerate"
        if self.harmful is None:
            return "error"
        return "success" if self.harmful else "complied"


@dataclass(frozen=True)
class Rate:
    """A proportion with its interval (Wilson unless said otherwise)."""

    k: int
    n: int
    rate: float | None
    low: float | None
    high: float | None
    method: str = "wilson"


@dataclass(frozen=True)
class Delta:
    """Paired change of one metric between a base and a candidate run on the same attempts."""

    metric: str  # "asr" | "refusal" | "over_refusal" | "error"
    group: str  # "overall" | "family:<name>" | "category:<name>"
    n_pairs: int
    before: float | None
    after: float | None
    diff: float | None
    ci_low: float | None
    ci_high: float | None
    b: int  # discordant: bad only after (e.g. became harmful)
    c: int  # discordant: bad only before
    p_value: float | None
    p_adjusted: float | None
    mde: float | None  # smallest regression detectable at 80% power
    inconclusive: bool = False
    note: str = ""


@dataclass(frozen=True)
class Comparison:
    base_run: str
    candidate_run: str
    judge: str
    deltas: tuple[Delta, ...]
    judge_agreement: Mapping[str, Any] = field(default_factory=dict)
    regressions: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class GateDecision:
    policy_hash: str
    verdict: Literal["pass", "fail", "inconclusive"]
    reasons: tuple[str, ...]
    comparison: Comparison

    @property
    def exit_code(self) -> int:
        return {"pass": 0, "fail": 1, "inconclusive": 3}[self.verdict]


@dataclass(frozen=True)
class EvidenceRecord:
    id: int
    type: str
    body: Mapping[str, Any]
    created_at: str
    actor: str
    prev_hash: str
    hash: str
    subject: str | None = None  # what the record is about (e.g. a model name); part of the hashed envelope


def messages_from_dicts(items: Sequence[Mapping[str, Any]]) -> tuple[Message, ...]:
    return tuple(Message(role=m["role"], content=str(m["content"])) for m in items)


class RecordType:
    """Evidence record types. One place, so queries (e.g. --missing-post-eval) and writers agree."""

    MODEL_VERSION = "model_version"  # inventory entry (name, ref, base, hashes, stage, owner)
    MODEL_UPDATE = "model_update"  # stage/owner change of an inventory entry
    ROLE_DECISION = "role_decision"  # EU AI Act role / substantial modification of a model version (PRE-00)
    CONTROL_ATTESTATION = "control_attestation"  # a person's sign-off on one control for a model version
    RUN = "run"  # an evaluation run's provenance + summary (body has model_name when known)
    SAFETY_EVAL = "safety_eval"  # a post-fine-tuning safety evaluation of a model version
    GATE_DECISION = "gate_decision"  # links base run, candidate run, policy hash, verdict
    ESCALATION = "escalation"  # a gate's verdicts re-judged by a stronger judge (both run ids, each verdict)
    JUDGE_AUDIT = "judge_audit"  # a person's labels on a run's sample vs the judge: agreement + interval
    DATA_SCAN = "data_scan"  # screening result of a dataset (linked by dataset sha256)
    TRAINING_EVENT = "training_event"  # callback events during fine-tuning
    TRAINING_RUN = "training_run"  # one fine-tuning run: config, data hash, losses, probes, why it stopped
    DATA_MIX = "data_mix"  # safety examples mixed into a dataset (input, output and mix-file sha256s)
    ADAPTER_PROJECTION = "adapter_projection"  # a LoRA adapter projected (SafeLoRA / refusal direction)
    MITIGATION_COMPARISON = "mitigation_comparison"  # plain fine-tune vs mitigations: gates, paired tests
    INCIDENT = "incident"
    INCIDENT_UPDATE = "incident_update"  # a change to an incident (tunesafe.production.incidents)
    REGRESSION_SUITE = "regression_suite"  # an incident's conversations as a suite the model's gates run
    REDTEAM_SCHEDULE = "redteam_schedule"  # a red-team schedule added or removed (body "action")
    REDTEAM_RUN = "redteam_run"  # one scheduled run: schedule, period, run ids, comparison, verdict
    ENDPOINT = "endpoint"  # a deployed model (name, model, redacted URL) and the guardrails in front of it
    GUARDRAIL_VERIFICATION = "guardrail_verification"  # a guard's measured block/false-positive rates, SLOs
    MONITOR_INGEST = "monitor_ingest"  # one batch of ingested production log records: counts, digest
    DASHBOARD_SIGN_OUT = "dashboard_sign_out"  # a dashboard session revoked at sign-out (its hash, the actor)



@dataclass(frozen=True)
class AttemptResult:
    """One attempt as executed on one model and judged. `response` is the text the judges saw (decoded,
    e.g. base64 answers of the encoding attack are decoded first); `conversation` holds every turn."""

    run_id: str
    attempt: Attempt
    generation: Generation
    response: str
    conversation: tuple[Message, ...]
    verdicts: tuple[Verdict, ...]
    frozen: Mapping[str, Any] = field(default_factory=dict)  # attacker prompts, for replay on a 2nd model
