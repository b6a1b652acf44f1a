"""One model version's evidence, read once, and every document generated from it, by path: what `tunesafe
bundle` packs and `tunesafe export mlflow` logs as artifacts, so both carry the same files. Gate reports
are re-rendered from their decision records by the reports package (one renderer per format)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from tunesafe.evidence.store import Store
from tunesafe.governance import docs_annex_iv
from tunesafe.governance.cyclonedx_bom import cyclonedx_bom
from tunesafe.governance.facts import Facts, facts_of
from tunesafe.governance.lineage import lineage_from_records
from tunesafe.governance.model_card import model_card
from tunesafe.reports import FILES as REPORT_FILES
from tunesafe.reports import decision_json
from tunesafe.reports.html import render_html
from tunesafe.reports.markdown import render_markdown
from tunesafe.types import EvidenceRecord

__all__ = ["ModelEvidence", "load_evidence", "model_documents"]


@dataclass(frozen=True)
class ModelEvidence:
    chain: tuple[EvidenceRecord, ...]  # the whole store, in chain order (read in one pass)
    facts: Facts

    def lineage_records(self) -> list[EvidenceRecord]:
        """The records the lineage's nodes come from, once each, in chain order."""
        wanted = {int(node.record_id) for node in self.facts.lineage.nodes}
        return [r for r in self.chain if r.id in wanted]


def load_evidence(store: Store, model: str, version: str | None = None) -> ModelEvidence:
    """UserError (exit 2) for a model or version the inventory does not know."""
    chain = tuple(store.records())
    return ModelEvidence(chain, facts_of(lineage_from_records(chain, model, version)))


def model_documents(evidence: ModelEvidence, *, generated_at: str | None = None) -> dict[str, bytes]:
    facts = evidence.facts
    annex = docs_annex_iv.render(docs_annex_iv.annex_iv(facts, generated_at=generated_at))
    files = {f"documents/{name}": annex[fmt].encode("utf-8") for fmt, name in docs_annex_iv.FILES.items()}
    files["documents/README.md"] = model_card(facts).encode("utf-8")  # the Hub's name for a model card
    files["documents/cyclonedx.json"] = _json(cyclonedx_bom(facts))
    files["documents/lineage.json"] = _json(facts.lineage.to_json())
    records = {str(r.id): r for r in evidence.lineage_records()}
    for gate in facts.kind("gate"):
        record = records[gate.record_id]
        folder = f"reports/gate-{gate.record_id}"
        files[f"{folder}/{REPORT_FILES['html']}"] = render_html(record.body, record).encode("utf-8")
        files[f"{folder}/{REPORT_FILES['markdown']}"] = render_markdown(record.body).encode("utf-8")
        files[f"{folder}/{REPORT_FILES['json']}"] = _json(decision_json(record.body, record))
    return files


def _json(value: object) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
