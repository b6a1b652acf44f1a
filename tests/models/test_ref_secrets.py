"""Credentials in a model ref's URL reach the server and nothing else: not the store, the reports, the
CLI's output or its errors (models/refs.py `redact_ref`); resuming takes the ref again."""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update

from tunesafe.engine.results import list_runs
from tunesafe.errors import UserError
from tunesafe.evidence.schema import AttemptResultRow, RunRow
from tunesafe.evidence.store import Store
from tunesafe.models import load_model, parse_ref, refs
from tunesafe.models.refs import redact_ref, restore_ref, split_credentials
from tunesafe.testing.openai_server import RunningServer, serve

USER, SECRET = "alice", "pw-s3cr3t-7731"
BASIC = "Basic " + base64.b64encode(f"{USER}:{SECRET}".encode()).decode()


@pytest.mark.parametrize(("ref", "shown"), [
    ("openai:m@http://alice:pw@host:8000/v1", "openai:m@http://***@host:8000/v1"),
    ("openai:m@https://tok@host/v1", "openai:m@https://***@host/v1"),
    ("openai:m@http://u:p@ss@host/v1", "openai:m@http://***@host/v1"),  # raw '@' in the password
    ("openai:m@http://u:p?ss@host/v1", "openai:m@http://***@host/v1"),  # raw '?' (not a query yet)
    ("vllm:m@http://u:p#ss@host/v1?key_env=K", "vllm:m@http://***@host/v1?key_env=K"),  # raw '#'
    ("openai:m@http://host/v1?api_key=sk#tail", "openai:m@http://host/v1?api_key=***"),
    ("openai:m@http://host/v1?x-api-key=sk&subscription-key=k2&key_env=K",
     "openai:m@http://host/v1?x-api-key=***&subscription-key=***&key_env=K"),
    ("openai:m@http://host/v1?key_env=MY_KEY&api_key=sk-1&token=t2", "openai:m@http://host/v1?key_env=MY_KEY&api_key=***&token=***"),
    ("openai:m@http://host/v1?key=abc&concurrency=4", "openai:m@http://host/v1?key=***&concurrency=4"),
    ("error: cannot reach 'openai:m@http://a:b@[::1]:80/v1'", "error: cannot reach 'openai:m@http://***@[::1]:80/v1'"),
    ("openai:m@http://127.0.0.1:8000/v1?key_env=K", "openai:m@http://127.0.0.1:8000/v1?key_env=K"),
    ("embedded:qwen2.5-coder-0.5b?backend=hf", "embedded:qwen2.5-coder-0.5b?backend=hf"),
])
def test_redact_ref(ref: str, shown: str) -> None:
    assert redact_ref(ref) == shown
    assert redact_ref(shown) == shown  # idempotent: stored refs redact to themselves


def test_userinfo_becomes_a_basic_header_and_leaves_the_url() -> None:
    url, headers = split_credentials(f"http://{USER}:{SECRET}@127.0.0.1:9/v1")
    assert url == "http://127.0.0.1:9/v1" and headers == {"Authorization": BASIC}
    assert split_credentials("http://127.0.0.1:9/v1") == ("http://127.0.0.1:9/v1", {})
    model = load_model(f"openai:m@http://{USER}:{SECRET}@127.0.0.1:9/v1")
    assert model.ref == "openai:m@http://127.0.0.1:9/v1"  # what runs, hashes and errors quote


def test_restore_ref_needs_the_ref_again_for_redacted_credentials() -> None:
    given = f"openai:m@http://{USER}:{SECRET}@h/v1"
    stored = redact_ref(given)
    assert restore_ref(stored, given, "MODEL") == given
    assert restore_ref("openai:m@http://h/v1", None, "MODEL") == "openai:m@http://h/v1"
    assert restore_ref(None, given, "--attacker") is None
    with pytest.raises(UserError, match="never stored") as info:
        restore_ref(stored, None, "MODEL")
    assert "key_env" in info.value.render()
    with pytest.raises(UserError):  # another server's credentials are not these
        restore_ref(stored, "openai:m@http://bob:x@other/v1", "MODEL")


def test_warns_once_to_use_key_env(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(refs, "_warned", False)
    with caplog.at_level(logging.WARNING, logger="tunesafe.models.refs"):
        parse_ref("openai:m@http://h/v1?key_env=K")
        parse_ref(f"openai:m@http://{USER}:{SECRET}@h/v1")
        parse_ref(f"openai:n@http://{USER}:{SECRET}@h/v1")
    [message] = [r.getMessage() for r in caplog.records]
    assert "key_env" in message and "openai:m@http://***@h/v1" in message and SECRET not in message


def test_errors_never_echo_a_query_secret() -> None:
    with pytest.raises(UserError) as info:
        load_model(f"openai:m@http://127.0.0.1:9/v1?api_key={SECRET}")
    assert "api_key" in info.value.render() and SECRET not in info.value.render()


@pytest.mark.parametrize("raw", ["?", "#"])
def test_a_raw_query_or_fragment_mark_in_a_password_is_one_error_without_it(raw: str) -> None:
    # the URL would end at that mark: the password's head would be taken for a port and printed
    with pytest.raises(UserError, match="percent-encoded") as info:
        load_model(f"openai:m@http://{USER}:pw7731{raw}{SECRET}@127.0.0.1:9/v1")
    shown = info.value.render(redact_ref)
    assert "pw7731" not in shown and SECRET not in shown and "127.0.0.1:9/v1" in shown


# --- end to end: a real server that logs the Authorization header, a real SQLite file, the real CLI ---

@pytest.fixture
def server() -> Iterator[RunningServer]:
    with serve() as running:
        yield running


def _secret_ref(server: RunningServer) -> str:
    return "openai:tunesafe-test@" + server.url.replace("http://", f"http://{USER}:{SECRET}@")


def _suite(path: Path) -> Path:
    rows = [{"id": f"h{i}", "text": f"Explain how to do forbidden thing number {i}.", "kind": "harmful",
             "category": "cyber"} for i in range(4)]
    rows.append({"id": "b0", "text": "How do I bake bread?", "kind": "benign", "category": "cooking"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _tunesafe(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "tunesafe.cli.app", "--db", str(db), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200"})


def _leaks(data: bytes) -> list[str]:
    secrets = [SECRET, BASIC.split()[1], f"{USER}:"]
    return [s for s in secrets if s.encode() in data]


def test_eval_and_gate_use_the_credentials_and_never_keep_them(server: RunningServer, tmp_path: Path) -> None:
    ref, db, out = _secret_ref(server), tmp_path / "store.db", tmp_path / "reports"
    common = ["--suite", str(_suite(tmp_path / "suite.jsonl")), "--attacks", "direct_request",
              "--judge", "refusal", "--no-progress"]
    # the judge model (strongreject's) is stored in the run's config
    evaluated = _tunesafe(db, "eval", ref, *common, "--judge", "strongreject", "--judge-model", ref)
    assert evaluated.returncode == 0, evaluated.stderr
    gated = _tunesafe(db, "gate", "--base", ref, "--candidate", ref, *common, "--out", str(out))
    # too few attempts to decide (exit 3), but the decision and its reports are recorded all the same
    assert gated.returncode == 3 and "decision recorded as evidence" in gated.stderr, gated.stderr

    assert server.app.auth_headers and set(server.app.auth_headers) == {BASIC}  # every request authenticated
    shown = redact_ref(ref)
    for proc in (evaluated, gated):
        assert _leaks((proc.stdout + proc.stderr).encode()) == []
        assert proc.stderr.count("carries credentials") == 1 and "key_env" in proc.stderr  # said once
    assert shown in gated.stdout  # the decision line names the model, redacted
    stored = [p for p in tmp_path.iterdir() if p.name.startswith("store.db")]  # with any -wal / -shm
    assert stored and all(_leaks(p.read_bytes()) == [] for p in stored)
    reports = [p for p in out.rglob("*") if p.is_file()]
    assert reports and all(_leaks(p.read_bytes()) == [] for p in reports)
    with Store.open(str(db)) as store:
        assert {r.model_ref for r in list_runs(store)} == {shown}


def test_resume_takes_the_ref_again(server: RunningServer, tmp_path: Path) -> None:
    ref, db = _secret_ref(server), tmp_path / "store.db"
    common = ["--suite", str(_suite(tmp_path / "suite.jsonl")), "--attacks", "direct_request",
              "--judge", "refusal", "--no-progress", "--no-cache"]
    judged = ("--judge", "strongreject", "--judge-model", ref)  # a judge model is only taken by an LLM judge
    assert _tunesafe(db, "eval", ref, *common, *judged).returncode == 0
    with Store.open(str(db)) as store:
        [run] = list_runs(store)
        with store.engine.begin() as conn:  # as if the run had been interrupted after 3 attempts
            ids = conn.execute(select(AttemptResultRow.pk).where(AttemptResultRow.run_id == run.id)).scalars()
            conn.execute(delete(AttemptResultRow).where(AttemptResultRow.pk.in_(list(ids)[3:])))
            conn.execute(update(RunRow).where(RunRow.id == run.id).values(status="interrupted"))

    without = _tunesafe(db, "eval", "--resume", run.id, "--no-progress")
    assert without.returncode == 2
    assert "had credentials" in " ".join(without.stderr.split()) and _leaks(without.stderr.encode()) == []

    no_judge_model = _tunesafe(db, "eval", ref, "--resume", run.id, "--no-progress")
    assert no_judge_model.returncode == 2 and "--judge-model" in no_judge_model.stderr

    before = len(server.app.auth_headers)
    resumed = _tunesafe(db, "eval", ref, "--resume", run.id, "--judge-model", ref, "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert len(server.app.auth_headers) > before and set(server.app.auth_headers) == {BASIC}
    with Store.open(str(db)) as store:
        [again] = list_runs(store)
        assert again.id == run.id and again.status == "complete" and again.model_ref == redact_ref(ref)


def test_inventory_records_the_ref_without_credentials(tmp_path: Path) -> None:
    from tunesafe.production import inventory as inv

    ref = f"openai:support-bot@https://{USER}:{SECRET}@llm.example.com/v1"
    with Store.open(str(tmp_path / "store.db")) as store:
        inv.add_model(store, inv.ModelSpec("support-bot", ref, stage="production"))
        assert inv.get_model(store, "support-bot").ref == redact_ref(ref)
    assert _leaks((tmp_path / "store.db").read_bytes()) == []


def test_a_server_echoing_the_credentials_back_does_not_leak_them(tmp_path: Path) -> None:
    with serve(api_key="another-key") as running:  # 401 for our Basic header, quoting it in the error
        db = tmp_path / "store.db"
        proc = _tunesafe(db, "eval", _secret_ref(running), "--suite", str(_suite(tmp_path / "suite.jsonl")),
                         "--attacks", "direct_request", "--judge", "refusal", "--no-progress")
        assert set(running.app.auth_headers) == {BASIC}
    assert proc.returncode in (0, 3), proc.stderr  # the attempts are errors: recorded, never a crash
    assert _leaks((proc.stdout + proc.stderr).encode()) == []
    assert _leaks(db.read_bytes()) == [] and b"invalid api key: Basic ***" in db.read_bytes()
