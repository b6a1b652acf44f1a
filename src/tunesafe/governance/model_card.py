"""A Hugging Face model card (README.md) for one model version, generated from its evidence. CONTRACT:

    card = model_card(facts) -> str        # YAML front matter + Markdown body
    meta = card_metadata(facts) -> dict    # the front matter alone

The metadata follows the Hub's model card spec: `base_model`, `base_model_relation` (adapter when the
model's files include an adapter, else finetune), `datasets`, `tags` and a `model-index` whose results are
our safety figures (task text-generation, dataset = the evaluation suite, metric types
`attack_success_rate/<family>` as governance.md 6.2 proposes). The body's safety section states the gate
result, the attack families, the judge and its validated agreement, and the known limitations, each with
the evidence record it comes from. A model with no evaluation still gets a card: it says so.
"""

from __future__ import annotations

from typing import Any

import yaml

from tunesafe.governance.facts import Facts
from tunesafe.governance.render import render_template
from tunesafe.reports import view

__all__ = ["card_metadata", "model_card"]


def card_metadata(facts: Facts) -> dict[str, Any]:
    model = facts.model.body
    base = facts.base
    meta: dict[str, Any] = {}
    if base is not None:
        meta["base_model"] = str(base.body.get("name"))
        adapters = [f for f in model.get("files") or () if f.get("role") == "adapter"]
        meta["base_model_relation"] = "adapter" if adapters else "finetune"
    datasets = [str(d.body.get("path") or d.body.get("sha256")) for d in facts.kind("dataset")]
    if datasets:
        meta["datasets"] = [path.rsplit("/", 1)[-1] for path in datasets]
    tags = ["tunesafe", "safety-evaluated" if facts.evaluation is not None else "safety-not-evaluated"]
    if facts.gate is not None:
        tags.append(f"tunesafe-gate-{facts.gate.body.get('verdict')}")
    meta["tags"] = tags
    results = _model_index_results(facts)
    if results:
        meta["model-index"] = [{"name": facts.lineage.model, "results": results}]
    return meta


def model_card(facts: Facts) -> str:
    meta = card_metadata(facts)
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, default_flow_style=False)
    body = render_template("model_card.md.j2", facts=facts, meta=meta, families=_family_rows(facts),
                           gate=_gate_summary(facts))
    return f"---\n{front}---\n\n{body}"


def _model_index_results(facts: Facts) -> list[dict[str, Any]]:
    if facts.evaluation is None:
        return []
    suite = facts.suite
    metrics = []
    for m in facts.metrics:
        headline = m.measure == "attack_success_rate" and m.group.startswith("family:")
        if m.value is None or not (headline or m.group == "overall"):
            continue
        metrics.append({"type": f"{m.measure}/{m.slice}", "value": round(float(m.value), 6),
                        "name": f"{m.measure.replace('_', ' ')} ({m.slice}, n={m.n})"})
    if not metrics:
        return []
    dataset: dict[str, Any] = {"type": f"tunesafe/{suite.get('name')}",
                               "name": f"tunesafe suite {suite.get('name')} v{suite.get('version')}"}
    if suite.get("content_hash"):
        dataset["revision"] = str(suite["content_hash"])
    return [{"task": {"type": "text-generation", "name": "Adversarial safety evaluation"},
             "dataset": dataset, "metrics": metrics}]


def _family_rows(facts: Facts) -> list[dict[str, Any]]:
    """Per attack family: candidate ASR with its interval, and the gate's paired change when there is one:
    its Holm-adjusted p (the gate decides a family on it) printed on its side of the gate's alpha."""
    deltas, alpha = {}, _alpha(facts)
    if facts.gate is not None:
        for d in (facts.gate.body.get("comparison") or {}).get("deltas") or ():
            if d.get("metric") == "asr":
                deltas[d.get("group")] = d
    rows = []
    for m in facts.families():
        delta = deltas.get(m.group) or {}
        p = delta.get("p_adjusted")
        rows.append({"family": m.slice, "n": m.n, "asr": m.value, "low": m.low, "high": m.high,
                     "before": delta.get("before"), "p": "-" if p is None else view.pvalue(p, alpha),
                     "source": m.source})
    return rows


def _gate_summary(facts: Facts) -> dict[str, Any] | None:
    if facts.gate is None:
        return None
    body = facts.gate.body
    return {"verdict": body.get("verdict"), "policy": str(body.get("policy_hash"))[:12],
            "base_run": (body.get("base") or {}).get("run_id"),
            "candidate_run": (body.get("candidate") or {}).get("run_id"),
            "record_id": facts.gate.record_id, "record_hash": facts.gate.record_hash, "alpha": _alpha(facts)}


def _alpha(facts: Facts) -> float | None:
    alpha = ((facts.gate.body.get("policy") or {}).get("alpha")) if facts.gate is not None else None
    return None if alpha is None else float(alpha)
