"""A contextual behaviour (HarmBench's: a document, then a request about it) reaches the model with its
document, and so do the judges that read the request: graded against the request alone ("Rewrite the text
above ..."), an answer that rewrites the document is judged on a request the judge cannot see. Items
without a document are judged on exactly the prompt they had. The judge model is the real loopback
OpenAI-compatible server; what it received is read back from it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import tunesafe.attacks as attacks
from tunesafe.analysis.audit import audit_runs, audit_sample
from tunesafe.analysis.escalate import EscalationRef, escalate
from tunesafe.engine import results as run_store
from tunesafe.engine.executor import judge_answers
from tunesafe.evidence.store import Store
from tunesafe.judges import JudgeInput, get_judge
from tunesafe.models import load_model
from tunesafe.suite import load_suite
from tunesafe.testing.openai_server import RunningServer, serve
from tunesafe.types import Attempt, AttemptResult, Behavior, Generation, Verdict

DOCUMENT = "PLACEHOLDER DOCUMENT: a short made-up article about a town fair."
CONTEXTUAL = Behavior(id="ctx-1", text="Rewrite the article above with placeholder changes", kind="harmful",
                      category="disinfo", context=DOCUMENT)
PLAIN = Behavior(id="plain-1", text="Explain a placeholder request", kind="harmful", category="crime")
ANSWER = "Here is the rewritten article: [placeholder]."


@pytest.fixture
def judge_server() -> Iterator[RunningServer]:
    with serve() as running:  # echoes: the verdicts are errors, only what the judge was sent matters
        yield running


def _attempt(behavior: Behavior) -> Attempt:
    [attempt] = attacks.get("direct_request").expand(behavior, 0)
    return attempt


def _judge_prompts(server: RunningServer) -> list[str]:
    return [body["messages"][-1]["content"] for body in server.requests]


@pytest.mark.parametrize("name", ["strongreject", "llama-guard"])
def test_the_judges_read_the_document_the_model_was_given(name: str, judge_server: RunningServer) -> None:
    judge = get_judge(name, model=load_model(f"openai:judge@{judge_server.url}?max_retries=0"))
    answers = [(_attempt(b), Generation(text=ANSWER, finish_reason="stop"), ANSWER)
               for b in (CONTEXTUAL, PLAIN)]
    asyncio.run(judge_answers([judge], answers, {b.id: b for b in (CONTEXTUAL, PLAIN)}))
    asked = _attempt(CONTEXTUAL).messages[-1].content
    assert DOCUMENT in asked  # what the model was asked
    prompts = _judge_prompts(judge_server)
    render = judge.render  # type: ignore[attr-defined]
    assert render(JudgeInput(asked, ANSWER, "harmful")) in prompts
    # an item without a document: the very prompt it had before
    assert render(JudgeInput(PLAIN.text, ANSWER, "harmful")) in prompts and len(prompts) == 2


def test_the_escalation_judge_reads_the_document(judge_server: RunningServer) -> None:
    attempt = _attempt(CONTEXTUAL)

    def result(run_id: str, refused: bool) -> AttemptResult:
        verdict = Verdict(judge="default", judge_version="1", refused=refused, harmful=not refused)
        return AttemptResult(run_id=run_id, attempt=attempt, response=ANSWER, conversation=(),
                             generation=Generation(text=ANSWER, finish_reason="stop"), verdicts=(verdict,))

    ref = EscalationRef("strongreject", f"openai:judge@{judge_server.url}?max_retries=0")
    asyncio.run(escalate(ref, [result("base", True)], [result("candidate", False)], ["default"],
                         {CONTEXTUAL.id: CONTEXTUAL}))
    prompts = _judge_prompts(judge_server)
    assert len(prompts) == 2 and all(f"{DOCUMENT}\n\n{CONTEXTUAL.text}" in p for p in prompts)


def test_only_the_judges_that_read_the_request_have_a_new_version(judge_server: RunningServer) -> None:
    # their verdicts on contextual items change: stored ones must be judged again, not paired with new ones
    model = load_model(f"openai:judge@{judge_server.url}")
    assert get_judge("strongreject", model=model).version.startswith("3+")
    assert get_judge("classifier").version.startswith("2+")
    # the others never read the request: their stored verdicts stay valid
    assert all(get_judge(name).version.startswith("1+") for name in ("refusal", "default", "harm"))


def test_the_audit_sheet_shows_the_request_with_its_document(tmp_path: Path) -> None:
    # the person labelling the answer reads the request the judge read, not "the article above" alone
    path = tmp_path / "ctx.jsonl"
    row = {"id": CONTEXTUAL.id, "text": CONTEXTUAL.text, "kind": "harmful", "category": CONTEXTUAL.category,
           "context": DOCUMENT}
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    suite = load_suite(str(path))
    attempt = _attempt(suite.behaviors[0])
    verdict = Verdict(judge="default", judge_version="1", refused=False, harmful=True)
    config = {"eval": {"suite": str(path)}, "model_name": None,
              "judges": [{"name": "default", "version": "1"}],
              "suite": {"name": suite.name, "version": suite.version, "content_hash": suite.content_hash},
              "attacks": [{"name": attempt.attack, "family": attempt.family,
                           "version": attempt.attack_version}],
              "decoding": {"max_new_tokens": 32, "temperature": 0.0, "seed": 0}, "tool_version": "test"}
    with Store.open(f"sqlite:///{tmp_path / 'store.db'}") as store:
        run_store.create_run(store, "run-1", "openai:m@http://127.0.0.1:9/v1", "hash-m", config, "cfg-1", 1)
        writer = run_store.ResultWriter(store)
        generation = Generation(text=ANSWER, finish_reason="stop")
        writer.add(AttemptResult(run_id="run-1", attempt=attempt, response=ANSWER, conversation=(),
                                 generation=generation, verdicts=(verdict,)))
        writer.flush()
        run_store.set_status(store, "run-1", "complete")
        [sheet_row] = audit_sample(store, audit_runs(store, "run-1"), 10)
    assert sheet_row["request"] == f"{DOCUMENT}\n\n{CONTEXTUAL.text}"
