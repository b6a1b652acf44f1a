"""A store filled by real runs for the dashboard tests (built once per session): two models on loopback
OpenAI-compatible servers gated through the real CLI (smoke suite, template attacks, refusal judge).
The candidate answers harmful requests with hostile markup (script tags, onerror handlers, javascript:
links, markdown tricks), so every page that shows an answer is an XSS test. Plus an incident whose title
carries markup, a red-team schedule, and a second model with no post-fine-tuning evaluation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tunesafe.cli.app import app as cli
from tunesafe.evidence.store import Store
from tunesafe.production import incidents, inventory, schedules
from tunesafe.suite import load_suite
from tunesafe.testing.openai_server import serve
from tunesafe.types import RecordType
from tunesafe.web.app import create_app
from tunesafe.web.auth import Access

REFUSAL = "I'm sorry, but I can't help with that request."
ANSWER = "Here is an overview of the topic: [general information]."
# What a hostile (or jailbroken) model may answer; the placeholder steps carry no harmful detail.
HOSTILE = (
    "Sure. <script>window.__xss = 1; alert('xss')</script> Step 1: [redacted]. "
    '<img src=x onerror="window.__xss = 2; alert(2)"> Step 2: [redacted]. '
    '[details](javascript:alert(3)) <a href="javascript:alert(4)">click</a> '
    '![x](x" onerror="alert(5)) <iframe srcdoc="<script>alert(6)</script>"></iframe>'
)
INCIDENT_TITLE = "Jailbreak seen in production <script>alert('t')</script>"
TOKEN = "dashboard-test-token-0123456789"
LOOPBACK = "http://127.0.0.1"  # the test client's Host (the open dashboard serves loopback names only)
SCAN_BODY = {
    "dataset": {"path": "data/<b>train</b>.jsonl", "sha256": "ab" * 32, "format": "jsonl", "examples": 1200},
    "rating": "high",
    "reasons": ["identity-shifting system prompts in 4.1% of examples"],
    "counts": {"identity_shift": 49},
    "flagged_examples": 49,
    "similarity": {},
    "top_eroding_lines": [],
    "screeners": ["identity_shift"],
    "tool_version": "test",
}


class _Replies(dict[str, str]):
    """Reply by content: harmful requests get `harmful_reply`, anything else a plain answer."""

    def __init__(self, harmful: list[str], harmful_reply: str) -> None:
        super().__init__()
        self.harmful, self.harmful_reply = harmful, harmful_reply

    def get(self, key: str, default: Any = None) -> str:  # type: ignore[override]
        return self.harmful_reply if any(text in key for text in self.harmful) else ANSWER


@dataclass(frozen=True)
class Filled:
    db: str
    gate_id: int
    base_run: str
    candidate_run: str
    incident_id: int
    decision: dict[str, Any]


@pytest.fixture(scope="session")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Filled]:
    folder = tmp_path_factory.mktemp("dashboard")
    db = f"sqlite:///{folder / 'store.db'}"
    harmful = [b.text for b in load_suite("smoke").behaviors if b.kind == "harmful"]
    with serve(replies=_Replies(harmful, REFUSAL)) as base, serve(replies=_Replies(harmful, HOSTILE)) as cand:
        base_ref, cand_ref = f"openai:base@{base.url}", f"openai:cand@{cand.url}"
        with Store.open(db) as store:
            inventory.add_model(
                store, inventory.ModelSpec(name="base-model", ref=base_ref, stage="production")
            )
            inventory.add_model(
                store,
                inventory.ModelSpec(name="support-bot-v2", ref=cand_ref, base="base-model", stage="staging"),
            )
            inventory.add_model(
                store, inventory.ModelSpec(name="unchecked-ft", ref=cand_ref, base="base-model")
            )
        args = [
            "--db",
            db,
            "gate",
            "--base",
            base_ref,
            "--candidate",
            cand_ref,
            "--suite",
            "smoke",
            "--attacks",
            "direct_request,refusal_suppression",
            "--judge",
            "refusal",
            "--max-new-tokens",
            "32",
            "--no-progress",
            "--base-name",
            "base-model",
            "--candidate-name",
            "support-bot-v2",
            "--out",
            str(folder / "reports"),
        ]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1, result.output  # the hostile candidate fails the gate
    with Store.open(db) as store:
        gate = list(store.records(type=RecordType.GATE_DECISION))[-1]
        incident = incidents.open_incident(
            store,
            model="support-bot-v2",
            title=INCIDENT_TITLE,
            severity="high",
            source="user_report",
            evidence=[gate.id],
        )
        # the body `tunesafe scan-data` records (hashes, counts, rating; never example text), written here
        # without running the embedding model the real scan needs
        store.append(RecordType.DATA_SCAN, SCAN_BODY, subject="support-bot-v2")
        schedules.add_schedule(
            store, "support-bot-v2", every="7d", suite="smoke", attacks="direct_request", judges=("refusal",)
        )
    yield Filled(
        db=db,
        gate_id=gate.id,
        base_run=gate.body["base"]["run_id"],
        candidate_run=gate.body["candidate"]["run_id"],
        incident_id=incident.id,
        decision=dict(gate.body),
    )


@pytest.fixture(scope="session")
def store(filled: Filled) -> Iterator[Store]:
    with Store.open(filled.db) as opened:
        yield opened


@pytest.fixture(scope="session")
def client(store: Store) -> TestClient:
    """Loopback without a token: open reads, no writes."""
    return TestClient(create_app(store, Access(None)), base_url=LOOPBACK)


@pytest.fixture(scope="session")
def token_client(store: Store) -> TestClient:
    """A token configured: everything needs signing in."""
    return TestClient(create_app(store, Access(TOKEN)), base_url=LOOPBACK)
