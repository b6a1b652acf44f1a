"""`tunesafe docs annex-iv` and `tunesafe docs model-card` on a store built by real runs: the documents
are parsed back (JSON, HTML, YAML front matter through huggingface_hub) and every statement cites a record
that exists with that hash."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from xml.etree import ElementTree

import yaml

from tunesafe.evidence.store import Store
from tunesafe.governance.docs_annex_iv import SECTIONS

# model and base, adapter, training run, dataset and scan, evaluations and gate
GATED_SECTIONS = {"IV.1(a)", "IV.1(c)", "IV.2(a)", "IV.2(b)", "IV.2(c)", "IV.2(d)", "IV.2(g)", "IV.3", "IV.4",
                  "IV.5", "IV.6"}


def hashes(db: str) -> dict[str, str]:
    with Store.open(db) as store:
        return {str(r.id): r.hash for r in store.records()}


def test_annex_iv_fills_sections_from_records_and_names_controls_where_evidence_is_missing(
        documented: SimpleNamespace, tmp_path: Path) -> None:
    done = documented.cli("docs", "annex-iv", "ft", "--out", str(tmp_path / "doc"), "--json")
    assert done.exit_code == 0, done.output
    doc = json.loads((tmp_path / "doc" / "annex-iv.json").read_text())
    sections = {s["id"]: s for s in doc["sections"]}
    assert list(sections) == [s[0] for s in SECTIONS]
    filled = {sid for sid, s in sections.items() if not s["missing"]}
    assert filled == GATED_SECTIONS
    assert json.loads(done.stdout)["missing_evidence"] == [sid for sid in sections if sid not in filled]
    known = hashes(documented.db)
    for section in sections.values():
        for statement in section["statements"]:
            assert known[statement["record_id"]] == statement["record_hash"]
    assert any("Release gate PASS" in s["text"] for s in sections["IV.2(g)"]["statements"])
    assert any("attack success rate (family:prefix_injection): 0.0%" in s["text"]
               for s in sections["IV.3"]["statements"])
    assert "not validated against people's labels" in sections["IV.4"]["statements"][-1]["text"]
    (training,) = [s["text"] for s in sections["IV.2(c)"]["statements"]]
    assert "method LORA r=" in training and "s wall time" in training and "completed" in training

    markdown = (tmp_path / "doc" / "annex-iv.md").read_text()
    assert "## IV.2(h) Cybersecurity" in markdown
    assert "**Missing evidence.** No record yet for controls PRE-05, POST-03, PROD-02" in markdown
    assert "## IV.8 EU declaration of conformity" in markdown
    html = (tmp_path / "doc" / "annex-iv.html").read_text()
    ids = _section_ids(html)
    assert ids == ["lineage", *(s[0] for s in SECTIONS)]
    graph = html[html.index("<svg"):html.index("</svg>") + len("</svg>")]
    ElementTree.fromstring(graph)  # the lineage graph is well-formed SVG
    from tunesafe.governance.lineage import collect_lineage

    with Store.open(documented.db) as store:
        nodes = collect_lineage(store, "ft").nodes
    assert len(nodes) >= 4 and all(node.record_id in graph for node in nodes)  # each box names its record


def test_a_model_with_no_evidence_gets_every_evidence_section_marked_missing(documented: SimpleNamespace,
                                                                              tmp_path: Path) -> None:
    done = documented.cli("docs", "annex-iv", "bare", "--out", str(tmp_path), "--json")
    assert done.exit_code == 0, done.output
    doc = json.loads((tmp_path / "annex-iv.json").read_text())
    filled = {s["id"] for s in doc["sections"] if not s["missing"]}
    assert filled == {"IV.1(a)", "IV.2(a)", "IV.6"}  # the inventory records: model and base
    gate_section = next(s for s in doc["sections"] if s["id"] == "IV.2(g)")
    assert gate_section["controls"] == ["POST-01", "POST-02", "DUR-02"]


def test_annex_iv_control_ids_exist_in_the_controls_catalogue() -> None:
    catalogue = Path(__file__).resolve().parents[2] / "src/tunesafe/governance/controls.yaml"
    if not catalogue.exists():
        return  # the catalogue lands with the controls package; the mapping is checked once it is there
    ids = {c["id"] for c in yaml.safe_load(catalogue.read_text())["controls"]}
    assert {c for s in SECTIONS for c in s[3]} <= ids


def test_model_card_metadata_parses_as_a_hugging_face_card(documented: SimpleNamespace,
                                                           tmp_path: Path) -> None:
    from huggingface_hub import ModelCard

    done = documented.cli("docs", "model-card", "ft", "--out", str(tmp_path / "README.md"))
    assert done.exit_code == 0, done.output
    card = ModelCard.load(tmp_path / "README.md")
    data = card.data
    assert (data.base_model, data.base_model_relation) == ("base", "adapter")  # a LoRA adapter on base
    assert data.datasets == ["train.jsonl"] and "tunesafe-gate-pass" in data.tags
    results = {r.metric_type: r for r in data.eval_results}
    assert results["attack_success_rate/prefix_injection"].metric_value == 0.0
    assert results["attack_success_rate/overall"].dataset_type == "tunesafe/smoke"
    assert results["refusal_rate/overall"].metric_value == 1.0
    body = card.text
    assert "**Release gate: PASS**" in body
    assert "| refusal_suppression | 56 | 0.0% |" in body
    assert "not validated against people's labels" in body
    known = hashes(documented.db)
    cited = re.findall(r"record (\d+), sha256 `([0-9a-f]{16})`", body)
    assert len({rid for rid, _ in cited}) >= 3  # model, evaluation run, gate decision
    assert all(known[rid].startswith(prefix) for rid, prefix in cited)


def test_model_card_of_an_unevaluated_model_says_so(documented: SimpleNamespace) -> None:
    done = documented.cli("docs", "model-card", "bare")
    assert done.exit_code == 0, done.output
    front = yaml.safe_load(done.stdout.split("---\n")[1])
    assert "model-index" not in front and "safety-not-evaluated" in front["tags"]
    assert "No evaluation with stored results covers this model (control POST-01)" in done.stdout


def test_model_card_of_a_model_without_a_base(documented: SimpleNamespace) -> None:
    # The template read meta.base_model_relation, which only a fine-tune has: the card (and so every
    # bundle) of a base model crashed with a Jinja UndefinedError traceback.
    done = documented.cli("docs", "model-card", "base")
    assert done.exit_code == 0, done.output
    assert "- **Model type:** base language model" in done.stdout
    assert "- **Finetuned from model:** none recorded" in done.stdout


def test_unknown_model_and_version_are_one_line_errors(tunesafe: Callable[..., SimpleNamespace],
                                                       tmp_path: Path) -> None:
    for args in (("docs", "annex-iv", "nope", "--out", str(tmp_path)), ("docs", "model-card", "nope"),
                 ("docs", "model-card", "ft", "--version", "7")):
        done = tunesafe(*args)
        assert done.exit_code == 2, done.stderr
        assert done.stderr.startswith("error:") and len(done.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def _section_ids(html: str) -> list[str]:
    class Sections(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.ids: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "section":
                self.ids.append(dict(attrs).get("id") or "")

    parser = Sections()
    parser.feed(html)
    return parser.ids


def test_model_card_p_values_never_print_as_the_gate_alpha(documented: SimpleNamespace,
                                                           tmp_path: Path) -> None:
    """A family's Holm-adjusted p of 0.05004 printed as "0.05" (%.3g), which reads as significant at the
    gate's alpha 0.05: the card prints it as the gate's reports do, on its side of alpha, and names both."""
    import copy
    import shutil

    from typer.testing import CliRunner

    from tunesafe.cli.app import app

    shutil.copy(documented.root / "store.db", tmp_path / "store.db")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with Store.open(url) as store:
        gate = list(store.records(type="gate_decision"))[-1]
        body = copy.deepcopy(dict(gate.body))
        body["policy"]["alpha"] = 0.05
        for d in body["comparison"]["deltas"]:
            if d["metric"] == "asr" and d["group"] == "family:prefix_injection":
                d.update(p_value=0.01, p_adjusted=0.05004)
        store.append("gate_decision", body, subject=gate.subject)
    done = CliRunner().invoke(app, ["--db", url, "docs", "model-card", "ft", "--out", str(tmp_path / "c.md")])
    assert done.exit_code == 0, done.output
    card = (tmp_path / "c.md").read_text()
    row = next(line for line in card.splitlines() if line.startswith("| prefix_injection |"))
    assert row.endswith("| 0.05004 |"), row
    assert "Holm p (alpha 0.05" in card


def test_annex_iv_names_the_groups_the_gate_adjusts_together(documented: SimpleNamespace,
                                                               tmp_path: Path) -> None:
    """IV.4 said "Holm-adjusted across attack families", but the gate adjusts a metric's families and harm
    categories together (and tests the overall change alone): a reader sizing a family's test from the
    number of families alone would think it stronger than it is."""
    done = documented.cli("docs", "annex-iv", "ft", "--out", str(tmp_path), "--json")
    assert done.exit_code == 0, done.output
    doc = json.loads((tmp_path / "annex-iv.json").read_text())
    (release,) = [s["text"] for section in doc["sections"] if section["id"] == "IV.4"
                  for s in section["statements"] if s["text"].startswith("Release metrics")]
    assert "attack families and harm categories together" in release, release
    assert "overall change tested alone" in release, release
