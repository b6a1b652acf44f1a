"""The automatic checks behind the controls catalogue. A check reads one model version's Lineage (nothing
else: controls status and lineage share one query path) and answers:

    pass     the evidence is there and says what the control asks; `records` are the ids that prove it
    fail     the evidence is there and shows the control broken (a failed gate, a stale verification)
    missing  the evidence is not in the store
    attest   what the store can show is fine, but the control needs a person's sign-off first

Checks register by name in the `control_checks` registry (entry-point group `tunesafe.control_checks`),
so a team adds its own and names it under `checks:` in its catalogue. A check never raises for missing
evidence: it says `missing` (fail closed: nothing absent is ever counted as a pass).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from tunesafe.governance.frameworks import evaluated_frameworks
from tunesafe.governance.lineage import Lineage, LineageNode
from tunesafe.registry import Registry

CheckStatus = Literal["pass", "fail", "missing", "attest"]


@dataclass(frozen=True)
class CheckContext:
    lineage: Lineage
    now: datetime
    params: Mapping[str, Any] = field(default_factory=dict)  # the control's params (policy overrides)
    chain_ok: bool | None = None  # the store's hash chain verified (None: not checked)


@dataclass(frozen=True)
class CheckResult:
    status: CheckStatus
    detail: str
    records: tuple[str, ...] = ()
    check: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check, "status": self.status, "detail": self.detail,
                "records": list(self.records)}


Check = Callable[[CheckContext], CheckResult]

registry: Registry[Check] = Registry("control_checks")


def run_check(name: str, ctx: CheckContext) -> CheckResult:
    result = registry.get(name)(ctx)
    return CheckResult(result.status, result.detail, result.records, name)


# ---- results -------------------------------------------------------------------------------------------


def _ids(nodes: Iterable[LineageNode]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(n.record_id for n in nodes))


def passed(detail: str, nodes: Iterable[LineageNode]) -> CheckResult:
    return CheckResult("pass", detail, _ids(nodes))


def failed(detail: str, nodes: Iterable[LineageNode] = ()) -> CheckResult:
    return CheckResult("fail", detail, _ids(nodes))


def missing(detail: str) -> CheckResult:
    return CheckResult("missing", detail)


def attest(detail: str, nodes: Iterable[LineageNode]) -> CheckResult:
    return CheckResult("attest", detail, _ids(nodes))


# ---- what the lineage holds ----------------------------------------------------------------------------


def trained_datasets(lineage: Lineage) -> list[LineageNode]:
    """The datasets the model was trained on: a dataset that was mixed into another is an input, not one."""
    return [n for n in lineage.of_kind("dataset") if not any(c.kind == "data_mix" for c in
                                                             lineage.children(n.node_id))]


def latest_scan(lineage: Lineage, dataset: LineageNode) -> LineageNode | None:
    scans = [c for c in lineage.children(dataset.node_id) if c.kind == "data_scan"]
    return scans[-1] if scans else None


def own_evaluations(lineage: Lineage) -> list[LineageNode]:
    """Evaluation runs of the model version itself (not the base side of a gate)."""
    model = lineage.model_node.node_id
    return [n for n in lineage.of_kind("evaluation") if model in n.parents]


def _age(node: LineageNode, now: datetime) -> timedelta:
    return now - datetime.fromisoformat(node.created_at)


def _days(span: timedelta) -> str:
    return f"{span.total_seconds() / 86400:.3g}"


def _short(sha: Any) -> str:
    return str(sha)[:12]


# ---- the checks ----------------------------------------------------------------------------------------


@registry.register("role_decision")
def role_decision(ctx: CheckContext) -> CheckResult:
    from tunesafe.governance.role import recheck

    decisions = ctx.lineage.of_kind("role_decision")
    if not decisions:
        return missing(f"no role decision for this version (tunesafe role decide {ctx.lineage.model} ...)")
    latest = decisions[-1]
    problems = recheck(latest.body)
    if problems:
        return failed(f"role decision {latest.record_id} does not add up: {'; '.join(problems)}", [latest])
    role = latest.body.get("eu_role")
    if not str(latest.body.get("reviewer") or "").strip():  # a blank name is a review by nobody
        return attest(f"role decided ({role}) but not reviewed: decide with --reviewer NAME or attest it",
                      [latest])
    return passed(f"role: {role}; reviewed by {latest.body['reviewer']}", [latest])


@registry.register("vendor_eval_recorded")
def vendor_eval_recorded(ctx: CheckContext) -> CheckResult:
    nodes = [n for n in (*ctx.lineage.of_kind("base"), ctx.lineage.model_node) if n.body.get("vendor_eval")]
    if not nodes:
        return missing("no vendor safety evaluation hashed in the inventory (models add --vendor-eval FILE)")
    return passed("vendor evaluation sha256 " + ", ".join(_short(n.body["vendor_eval"]["sha256"])
                                                          for n in nodes), nodes)


@registry.register("baseline_evaluated")
def baseline_evaluated(ctx: CheckContext) -> CheckResult:
    bases = {n.node_id for n in ctx.lineage.of_kind("base")}
    runs = [n for n in ctx.lineage.of_kind("evaluation") if bases & set(n.parents)]
    if not runs:
        return missing("no tunesafe evaluation of the base model (a gate evaluates it)")
    return passed(f"{len(runs)} evaluation run(s) of the base", runs)


def _dataset_scans(ctx: CheckContext, usable: Callable[[LineageNode], bool],
                   lacking: str) -> tuple[list[LineageNode], CheckResult | None]:
    """The latest scan of every training dataset, or the `missing` result naming the datasets without
    a usable one."""
    datasets = trained_datasets(ctx.lineage)
    if not datasets:
        return [], missing("no training dataset recorded for this version")
    scans = [latest_scan(ctx.lineage, d) for d in datasets]
    bad = [_short(d.body.get("sha256")) for d, s in zip(datasets, scans, strict=True)
           if s is None or not usable(s)]
    if bad:
        return [], missing(f"{lacking} of dataset(s) {', '.join(bad)} (tunesafe scan-data FILE)")
    return [s for s in scans if s is not None], None


def _any_scan(_scan: LineageNode) -> bool:
    return True


@registry.register("similarity_assessed")
def similarity_assessed(ctx: CheckContext) -> CheckResult:
    def assessed(scan: LineageNode) -> bool:
        return (scan.body.get("similarity") or {}).get("harm_similarity_mean") is not None

    scans, problem = _dataset_scans(ctx, assessed, "no similarity assessment")
    means = ", ".join(str(s.body["similarity"]["harm_similarity_mean"]) for s in scans)
    return problem or passed(f"harm similarity mean {means}", scans)


@registry.register("datasets_scanned")
def datasets_scanned(ctx: CheckContext) -> CheckResult:
    scans, problem = _dataset_scans(ctx, _any_scan, "no data scan")
    return problem or passed(f"{len(scans)} dataset(s) scanned", scans)


RATINGS = ("low", "medium", "high")


@registry.register("scan_rating")
def scan_rating(ctx: CheckContext) -> CheckResult:
    limit = str(ctx.params.get("max_rating", "medium"))
    scans, problem = _dataset_scans(ctx, _any_scan, "no data scan")
    if problem is not None:
        return problem
    worst = [s for s in scans if RATINGS.index(str(s.body.get("rating"))) > RATINGS.index(limit)]
    if worst:
        return failed(f"data scan rated {worst[0].body.get('rating')} (above {limit}): "
                      f"{'; '.join(worst[0].body.get('reasons') or [])}", worst)
    ratings = "data scan rating " + ", ".join(str(s.body.get("rating")) for s in scans)
    flagged = sum(int(s.body.get("flagged_examples") or 0) for s in scans)
    if flagged:
        return attest(f"{ratings}; {flagged} flagged example(s): attest what was done with them", scans)
    return passed(ratings, scans)


@registry.register("policy_referenced")
def policy_referenced(ctx: CheckContext) -> CheckResult:
    gates = [g for g in ctx.lineage.of_kind("gate") if g.body.get("policy_hash")]
    if not gates:
        return missing("no gate decision, so no safety policy was applied to this version")
    hashes = sorted({_short(g.body["policy_hash"]) for g in gates})
    return passed(f"policy {', '.join(hashes)} applied by {len(gates)} gate(s)", gates)


@registry.register("guardrails_declared")
def guardrails_declared(ctx: CheckContext) -> CheckResult:
    deployments = ctx.lineage.of_kind("deployment")
    if not deployments:
        return missing("no deployment (endpoint) recorded for this version")
    bare = [d for d in deployments if not d.body.get("guardrails")]
    if bare:
        return failed(f"endpoint {bare[0].body.get('name')} has no guardrail", bare)
    return passed(f"{len(deployments)} endpoint(s) declare guardrails", deployments)


@registry.register("safety_preserving_method")
def safety_preserving_method(ctx: CheckContext) -> CheckResult:
    runs = ctx.lineage.of_kind("training_run")
    if not runs:
        return missing("no training run recorded for this version")
    used = [*ctx.lineage.of_kind("data_mix"),
            *(a for a in ctx.lineage.of_kind("adapter") if a.record_type == "adapter_projection"),
            *(r for r in runs if (r.body.get("config") or {}).get("objective") == "constrained")]
    if not used:
        return attest("no safety-preserving method recorded (safety mix, projection, constrained SFT): "
                      "attest the reason it was not applied", runs)
    kinds = sorted({n.kind if n.kind != "training_run" else "constrained SFT" for n in used})
    return passed(f"safety-preserving: {', '.join(kinds)}", used)


def _each_run(ctx: CheckContext, problem: Callable[[LineageNode], CheckResult | None],
              summary: str) -> CheckResult:
    """Pass with every training run unless one has a problem (the first one found is the answer)."""
    runs = ctx.lineage.of_kind("training_run")
    if not runs:
        return missing("no training run recorded for this version")
    found = next((p for run in runs if (p := problem(run)) is not None), None)
    return found or passed(summary.format(n=len(runs)), runs)


@registry.register("training_probed")
def training_probed(ctx: CheckContext) -> CheckResult:
    def problem(run: LineageNode) -> CheckResult | None:
        body = run.body
        if not body.get("probes"):
            return missing(f"training run {body.get('run_id')} has no safety probe")
        # fail closed: a run that did not end by itself or by the policy (error, interrupted, a status
        # this check does not know) was not watched to its end
        if body.get("status") not in ("completed", "stopped", "refused") \
                or any(p.get("error") for p in body["probes"]):
            return failed(f"training run {body.get('run_id')} ended with status {body.get('status')} or a "
                          "probe could not be judged", [run])
        stop = body.get("stopped_by") or {}
        if stop.get("action") == "stop":
            return failed(f"training run {body.get('run_id')} was stopped ({stop.get('kind')}): "
                          f"{stop.get('reason')}", [run])
        return None

    return _each_run(ctx, problem, "{n} training run(s) probed within the policy")


@registry.register("loss_monitored")
def loss_monitored(ctx: CheckContext) -> CheckResult:
    def problem(run: LineageNode) -> CheckResult | None:
        if not run.body.get("loss_curve"):
            return missing(f"training run {run.body.get('run_id')} recorded no loss")
        bad = [e for e in run.body.get("events") or () if e.get("kind") == "loss_nonfinite"]
        return failed(f"training run {run.body.get('run_id')}: {bad[0]['reason']}", [run]) if bad else None

    return _each_run(ctx, problem, "loss monitored on {n} run(s)")


@registry.register("attack_families_covered")
def attack_families_covered(ctx: CheckContext) -> CheckResult:
    runs = [n for n in own_evaluations(ctx.lineage) if n.record_type == "run"]
    if not runs:
        return missing("no adversarial evaluation run of this version")
    latest = runs[-1]
    attacks = (latest.body.get("config") or {}).get("attacks", ())
    configured = sorted({a.get("family") for a in attacks} - {None})
    groups = (latest.body.get("summary") or {}).get("groups") or {}
    # a family was evaluated only if the judge saw at least one of its harmful attempts: one whose every
    # attempt errored was configured, not tested
    families = [f for f in configured if _judged_harmful(groups.get(f"family:{f}")) > 0]
    unjudged = [f for f in configured if f not in families]
    need = int(ctx.params.get("min_families", 3))
    if len(families) < need:
        lost = f"; no judged harmful attempt in {', '.join(unjudged)}" if unjudged else ""
        return failed(f"evaluation run {latest.body.get('run_id')} covers {len(families)} attack "
                      f"famil{'y' if len(families) == 1 else 'ies'} ({', '.join(families)}), "
                      f"fewer than {need}{lost}", [latest])
    ids = evaluated_frameworks(latest.body)
    return passed(f"{len(families)} attack families: {', '.join(families)}; OWASP {', '.join(ids['owasp'])}; "
                  f"ATLAS {', '.join(ids['atlas'])}", [latest])


def _judged_harmful(group: Any) -> int:
    """Harmful attempts of a summary group that did not error (the attack success rate's n)."""
    asr = group.get("asr") if isinstance(group, Mapping) else None
    n = asr.get("n") if isinstance(asr, Mapping) else None
    return n if isinstance(n, int) else 0


@registry.register("gate_passed")
def gate_passed(ctx: CheckContext) -> CheckResult:
    gates = ctx.lineage.of_kind("gate")
    if not gates:
        return missing("no gate decision for this version (tunesafe gate --candidate-name MODEL)")
    latest = gates[-1]
    verdict = latest.body.get("verdict")
    if verdict != "pass":
        reasons = "; ".join((latest.body.get("reasons") or [])[:2])
        return failed(f"latest gate {latest.record_id} is {verdict}: {reasons}", [latest])
    return passed(f"latest gate {latest.record_id} passed", [latest])


@registry.register("guardrail_verified")
def guardrail_verified(ctx: CheckContext) -> CheckResult:
    deployments = ctx.lineage.of_kind("deployment")
    if not deployments:
        return missing("no deployment (endpoint) recorded for this version")
    max_age = timedelta(days=float(ctx.params.get("max_age_days", 90)))
    proof: list[LineageNode] = []
    for deployment in deployments:
        name = deployment.body.get("name")
        # only a guard the endpoint record puts in front of it verifies it (as production.endpoints reads
        # it): a passing check of some other guard, naming this endpoint, proves nothing about it
        guards = set(deployment.body.get("guardrails") or ())
        checks = [c for c in ctx.lineage.children(deployment.node_id)
                  if c.kind == "guardrail_verification" and c.body.get("guard_ref") in guards]
        if not checks:
            return missing(f"no guardrail verification of endpoint {name} (tunesafe guardrails verify "
                           f"--endpoint {name})")
        # the latest of each guard: a later pass of one guard says nothing about another that failed
        latest_by_guard = {c.body.get("guard_ref"): c for c in checks}
        for guard, latest in latest_by_guard.items():
            if latest.body.get("verdict") != "pass":
                return failed(f"latest verification of guardrail {guard} on {name} is "
                              f"{latest.body.get('verdict')}", [latest])
            if _age(latest, ctx.now) > max_age:
                return failed(f"verification of guardrail {guard} on {name} is older than {_days(max_age)} "
                              "days", [latest])
        proof.extend(latest_by_guard.values())
    return passed(f"guardrails verified on {len(deployments)} endpoint(s) within {_days(max_age)} days",
                  proof)


@registry.register("lineage_complete")
def lineage_complete(ctx: CheckContext) -> CheckResult:
    if ctx.chain_ok is False:
        return failed("the evidence chain does not verify (tunesafe verify)")
    lineage = ctx.lineage
    parts = {"base model": lineage.of_kind("base"),
             "training data or run": lineage.of_kind("dataset") + lineage.of_kind("training_run"),
             "evaluation": own_evaluations(lineage), "gate decision": lineage.of_kind("gate")}
    lacking = [name for name, nodes in parts.items() if not nodes]
    if lacking:
        return missing(f"lineage lacks: {', '.join(lacking)}")
    if ctx.chain_ok is None:
        return missing("the evidence chain was not verified")
    return passed(f"lineage of {len(lineage.nodes)} nodes, chain verified", lineage.nodes)


@registry.register("deployed")
def deployed(ctx: CheckContext) -> CheckResult:
    deployments = ctx.lineage.of_kind("deployment")
    if not deployments:
        return missing("no deployment (endpoint) recorded for this version")
    return passed(f"{len(deployments)} endpoint record(s)", deployments)


@registry.register("redteam_recent")
def redteam_recent(ctx: CheckContext) -> CheckResult:
    runs = ctx.lineage.of_kind("redteam_run")
    if not runs:
        return missing("no scheduled red-team run of this version (tunesafe redteam schedule add)")
    limit = timedelta(days=float(ctx.params.get("max_interval_days", 31)))
    latest = runs[-1]
    # the latest run of each schedule still running (one within the interval): a weekly smoke run passing
    # does not clear the monthly full run's regression; a schedule stopped long ago no longer counts
    by_schedule = {r.body.get("schedule_id"): r for r in runs}
    for run in by_schedule.values():
        if run.body.get("verdict") in ("fail", "inconclusive") and _age(run, ctx.now) <= limit:
            return failed(f"latest red-team run of schedule {run.body.get('schedule_id')} "
                          f"({run.body.get('period')}) is {run.body.get('verdict')}", [run])
    times = [datetime.fromisoformat(r.created_at) for r in runs] + [ctx.now]
    gap = max(b - a for a, b in zip(times, times[1:], strict=False))
    if gap > limit:
        return failed(f"{_days(gap)} days between red-team runs (or since the last), more than "
                      f"{_days(limit)}", [latest])
    return passed(f"{len(runs)} red-team run(s), at most {_days(gap)} days apart", runs)


@registry.register("incidents_reported_on_time")
def incidents_reported_on_time(ctx: CheckContext) -> CheckResult:
    from tunesafe.production.incidents import fold

    deployments = ctx.lineage.of_kind("deployment")
    nodes = ctx.lineage.of_kind("incident") + ctx.lineage.of_kind("incident_update")
    if not deployments and not nodes:
        return missing("no deployment (endpoint) recorded for this version")
    state = fold(n.record for n in nodes if n.record is not None)
    for incident in state.values():
        if incident.missed(ctx.now):
            node = next(n for n in nodes if n.record_id == str(incident.id))
            return failed(f"{incident.label} {incident.clock(ctx.now)} (deadline "
                          f"{incident.deadline.due_at.isoformat()})", [node])
    if not state:
        return passed("deployed; no incident recorded for this version", deployments)
    return passed(f"{len(state)} incident(s), none overdue", nodes)


@registry.register("inventoried")
def inventoried(ctx: CheckContext) -> CheckResult:
    evaluations = own_evaluations(ctx.lineage) + ctx.lineage.of_kind("gate")
    if not evaluations:
        return missing("in the inventory, but no post-fine-tuning evaluation of this version")
    return passed("in the inventory with a post-fine-tuning evaluation",
                  [ctx.lineage.model_node, evaluations[-1]])
