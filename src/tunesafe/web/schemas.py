"""The shapes of the JSON API's answers, for its OpenAPI document. The routes return the pages' own data
(tunesafe.web.pages); a test validates every endpoint's answer against these models, so the document
cannot drift from what is served. Evidence bodies stay free-form (dict): they are the records as stored."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


Body = dict[str, Any]


class GateRef(_Out):
    record_id: int
    verdict: str
    created_at: str


class InventoryRow(_Out):
    name: str
    stage: str
    base: str | None
    owner: str | None
    version: int
    fine_tuned: bool
    record_id: int
    last_gate: GateRef | None
    no_post_eval: bool
    endpoints: list[str]
    no_verified_guardrail: bool
    open_incidents: int


class RunSummary(_Out):
    id: str
    model_ref: str
    model_hash: str
    config_hash: str
    status: str
    n_planned: int
    n_done: int
    n_errors: int
    created_at: str
    finished_at: str | None
    model_name: str | None
    suite: str | None
    judges: list[str | None]


class Rate(BaseModel):
    k: int
    n: int
    rate: float | None
    low: float | None
    high: float | None


class MetricRow(_Out):
    group: str
    n: int
    outcomes: dict[str, int]
    asr: Rate | None
    refusal: Rate | None
    over_refusal: Rate | None
    error: Rate | None
    degenerate: Rate | None
    blocked: Rate | None


class AttemptRow(_Out):
    attempt_id: str
    behavior_id: str
    attack: str
    family: str
    category: str
    kind: str
    outcome: str
    error: str | None
    latency_s: float


class RunPage(_Out):
    run: RunSummary
    record_id: int | None
    metrics: list[MetricRow]
    total: int
    page: int
    pages: int
    per_page: int
    filters: dict[str, str]
    errors_only: bool
    rows: list[AttemptRow]
    choices: dict[str, list[str]]


class AttemptDetail(_Out):
    run_id: str
    attempt_id: str
    attack: str
    family: str
    category: str
    kind: str
    behavior_id: str | None
    messages: list[dict[str, str]]
    prefill: str | None
    conversation: list[dict[str, str]]
    response: str
    generation: Body
    verdicts: list[Body]
    error: str | None
    outcome: str


class GateRow(_Out):
    record_id: int
    created_at: str
    verdict: str
    title: str
    candidate_model: str | None
    base_run: str
    candidate_run: str
    judge: str


class CellGrid(_Out):
    families: list[str]
    categories: list[str]
    rows: list[list[Body | None]]


class GateView(_Out):
    record: Body
    decision: Body
    title: str
    cells: CellGrid


class Pair(_Out):
    attempt_id: str
    attack: str
    kind: str
    before: str
    after: str
    discordant: bool
    request: str
    base_response: str
    candidate_response: str


class CellPairs(_Out):
    record_id: int
    title: str
    judge: str
    family: str
    category: str
    discordant: bool
    n_pairs: int
    n_errored: int
    total: int
    page: int
    pages: int
    per_page: int
    escalated: bool
    pairs: list[Pair]


class PairDetail(_Out):
    record_id: int
    title: str
    judge: str
    attempt_id: str
    escalated: bool
    base: AttemptDetail
    candidate: AttemptDetail


class Incident(BaseModel):
    """tunesafe.production.incidents.Incident.as_dict(now)."""

    id: int
    label: str
    model: str
    title: str
    severity: str
    status: str
    owner: str | None
    deadline: Body
    deadlines: list[Body]
    clock_stopped: bool
    clock: str
    overdue: bool  # the clock runs and the deadline is past
    missed: bool  # the deadline passed before a report: running, reported late, or closed unreported after it
    seconds_left: int | None
    notes: list[Body]
    links: list[int]


class ModelDetail(_Out):
    model: Body
    ancestry: list[Body]
    children: list[str]
    lineage: Body
    controls: Body
    attestation_fields: dict[str, list[str]]
    runs: list[RunSummary]  # one page, newest first (`page`, `per_page`)
    runs_total: int
    runs_page: int
    runs_pages: int
    gates: list[Body]
    incidents: list[Incident]
    endpoints: list[Body]


class Attestation(_Out):
    record_id: int
    hash: str
    body: Body


class Schedule(BaseModel):
    id: str
    model: str
    every: str
    current_period: str | None
    period_state: str
    claimed_by: str | None
    next_start: str
    runs: list[Body]


class Scan(_Out):
    record_id: int
    created_at: str
    subject: str | None
    path: str | None
    sha256: str | None
    examples: int | None
    rating: str | None
    reasons: list[str]
    counts: Body


class ChainStatus(_Out):
    location: str
    head_id: int
    head_hash: str | None
    by_type: dict[str, int]


class RecordRow(_Out):
    id: int
    type: str
    subject: str | None
    actor: str
    created_at: str
    hash: str


class EvidencePage(_Out):
    status: ChainStatus
    total: int
    page: int
    pages: int
    type: str | None
    subject: str | None
    records: list[RecordRow]


class Record(_Out):
    id: int
    type: str
    body: Body
    created_at: str
    actor: str
    prev_hash: str
    hash: str
    subject: str | None


class Verification(_Out):
    ok: bool
    checked: int
    head_id: int
    head_hash: str
    first_bad: Body | None


class Session(_Out):
    writable: bool
    signed_in: bool
    actor: str | None
    csrf_token: str | None
