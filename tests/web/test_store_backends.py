"""The dashboard's own queries (run paging and filters, the run's record lookup, evidence paging and
verification) on both stores: a SQLite file and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace

from fastapi.testclient import TestClient
from sqlalchemy import update

from tunesafe.engine import results as run_store
from tunesafe.engine.runner import finish_run
from tunesafe.evidence.schema import RecordRow
from tunesafe.evidence.store import Store
from tunesafe.types import Attempt, AttemptResult, Generation, Message, Verdict
from tunesafe.web.app import create_app
from tunesafe.web.auth import Access

LOOPBACK = "http://127.0.0.1"  # the test client's Host (the open dashboard serves loopback names only)


def _result(i: int) -> AttemptResult:
    family = ("direct", "roleplay", "encoding")[i % 3]
    attempt = Attempt(
        id=f"a{i:04d}",
        behavior_id=f"b{i}",
        attack=f"{family}-attack",
        attack_version="1",
        family=family,
        category=("cyber", "fraud")[i % 2],
        kind="harmful",
        messages=(Message("user", f"[request {i}]"),),
    )
    if i % 10 == 0:
        return AttemptResult("r", attempt, Generation("", "error", error="timeout"), "", (), ())
    refused = i % 4 != 0
    text = "I can't help with that." if refused else "Step 1: [redacted]."
    verdict = Verdict(judge="refusal", judge_version="1", refused=refused, harmful=not refused)
    return AttemptResult("r", attempt, Generation(text, "stop"), text, (), (verdict,))


def test_run_and_evidence_pages_on_both_stores(store_url: str) -> None:
    with Store.open(store_url) as store:
        config = {"model_name": "m", "judges": [{"name": "refusal", "version": "1"}], "suite": {"name": "t"}}
        run_store.create_run(store, "run-1", "openai:m@http://127.0.0.1:1/v1", "0" * 64, config, "cfg", 60)
        writer = run_store.ResultWriter(store)
        for i in range(60):
            writer.add(replace(_result(i), run_id="run-1"))
        writer.flush()
        client = TestClient(create_app(store, Access(None)), base_url=LOOPBACK)
        running = client.get("/api/v1/runs/run-1", params={"family": "direct"}).json()
        assert running["record_id"] is None and running["total"] == 20 and running["run"]["n_errors"] == 6
        finish_run(store, "run-1", [f"a{i:04d}" for i in range(60)], config, "0" * 64, {})

        done = client.get("/api/v1/runs/run-1", params={"page": 2, "per_page": 25}).json()
        assert done["record_id"] is not None and done["total"] == 60 and done["pages"] == 3
        assert [r["attempt_id"] for r in done["rows"]] == [f"a{i:04d}" for i in range(25, 50)]
        errors = client.get("/api/v1/runs/run-1", params={"errors": True, "family": "direct"}).json()
        assert [r["attempt_id"] for r in errors["rows"]] == ["a0000", "a0030"]
        assert all(r["outcome"] == "error" for r in errors["rows"])
        overall = next(m for m in done["metrics"] if m["group"] == "overall")
        assert overall["outcomes"]["error"] == 6 and done["run"]["n_errors"] == 6

        evidence = client.get("/api/v1/evidence", params={"type": "run"}).json()
        assert evidence["total"] == 1 and evidence["records"][0]["id"] == done["record_id"]
        assert client.get("/api/v1/evidence/verify").json()["ok"] is True

        # an edited record: the verify button's page names it
        with store.engine.begin() as conn:
            conn.execute(
                update(RecordRow).where(RecordRow.id == done["record_id"]).values(body='{"edited":true}')
            )
        broken = client.get("/api/v1/evidence/verify").json()
        assert broken["ok"] is False and broken["first_bad"]["id"] == done["record_id"]
        assert broken["first_bad"]["reason"] == "hash"
        page = client.get("/evidence/verify").text
        assert "BROKEN" in page and f"record #{done['record_id']} (hash)" in page


def test_a_password_in_the_store_urls_query_is_never_shown(pg_url: str) -> None:
    """libpq takes the password as a query parameter too (`...?password=...`); the evidence page and its API
    showed the store URL with it to every reader of the dashboard."""
    from sqlalchemy.engine import make_url

    secret = "not-for-readers-0123"
    url = make_url(pg_url).update_query_dict({"password": secret}).render_as_string(hide_password=False)
    with Store.open(url) as store:
        client = TestClient(create_app(store, Access(None)), base_url=LOOPBACK)
        page, api = client.get("/evidence").text, client.get("/api/v1/evidence").json()
    assert "password=***" in page and "password=***" in api["status"]["location"]
    assert secret not in page and secret not in str(api)
