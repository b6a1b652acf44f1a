"""Two `tunesafe redteam run-due` processes started together against one store (SQLite file, and
PostgreSQL when TUNESAFE_TEST_PG_URL is set) and one slow loopback model: every due schedule runs
exactly once between them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from tunesafe.engine.results import list_runs
from tunesafe.evidence.schema import RedteamClaimRow
from tunesafe.evidence.store import Store
from tunesafe.production.inventory import ModelSpec, add_model
from tunesafe.production.schedules import add_schedule, parse_instant
from tunesafe.testing.openai_server import serve
from tunesafe.types import RecordType

# The CLI's own entry point, held at a start line so both processes claim at the same moment (importing
# tunesafe takes longer than a run-due, so plain Popen would mostly run them one after the other).
RUNNER = """
import sys, time
from datetime import timedelta
from pathlib import Path
from tunesafe.cli.app import main
folder, name = Path(sys.argv[1]), sys.argv[2]
(folder / f"ready-{name}").touch()
while not (folder / "go").exists():
    time.sleep(0.005)
started = time.time()
sys.argv = ["tunesafe", *sys.argv[3:]]
try:
    main()
finally:
    (folder / f"span-{name}").write_text(f"{started} {time.time()}")
"""
NOW = "2026-01-05T00:00:00Z"
SCHEDULES = 3


def test_two_runners_never_run_a_schedule_twice(store_url: str, tmp_path: Path) -> None:
    with serve(latency_s=0.02) as server:  # slow enough that the two runners overlap
        with Store.open(store_url) as store:
            add_model(store, ModelSpec(name="support-bot", ref=f"openai:tunesafe-test@{server.url}"))
            ids = {add_schedule(store, "support-bot", every="30d", suite="smoke", attacks="direct_request",
                                judges=("refusal",), limit=8, start=parse_instant("2026-01-01", "test")).id
                   for _ in range(SCHEDULES)}
        args = ["--db", store_url, "redteam", "run-due", "--now", NOW, "--json"]
        procs = {name: subprocess.Popen([sys.executable, "-c", RUNNER, str(tmp_path), name, *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for name in ("r1", "r2")}
        deadline = time.monotonic() + 120
        while not all((tmp_path / f"ready-{n}").exists() for n in procs) and time.monotonic() < deadline:
            time.sleep(0.01)
        (tmp_path / "go").touch()
        outputs = {}
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=300)
            assert proc.returncode in (0, 3), err  # 3: 8-attempt comparisons are inconclusive
            outputs[name] = json.loads(out)
        requests = len(server.requests)

    ran = [r["schedule_id"] for out in outputs.values() for r in out["ran"]]
    assert sorted(ran) == sorted(ids)  # each schedule once, between the two runners
    assert all(r["status"] == "recorded" for out in outputs.values() for r in out["ran"])
    with Store.open(store_url) as store:
        records = list(store.records(type=RecordType.REDTEAM_RUN))
        runs = list_runs(store)
        assert store.verify().ok
        with store.engine.connect() as conn:
            claims = conn.execute(select(RedteamClaimRow)).all()
    assert sorted(r.body["schedule_id"] for r in records) == sorted(ids)
    assert len(runs) == SCHEDULES and requests == sum(run.n_planned for run in runs)  # no model call twice
    assert len(claims) == SCHEDULES and all(c.state == "done" and c.attempts == 1 for c in claims)
    # they really ran at the same time: each started before the other had finished
    spans = [tuple(map(float, (tmp_path / f"span-{n}").read_text().split())) for n in procs]
    assert max(start for start, _ in spans) < min(end for _, end in spans)


def test_a_running_claim_is_renewed_past_its_lease(tmp_path: Path) -> None:
    """A run longer than its lease keeps its claim: a second runner arriving after the lease would have
    lapsed (without renewal) finds the schedule held and runs nothing."""
    from tunesafe.production.redteam import run_due

    db = f"sqlite:///{tmp_path / 'store.db'}"
    lease_s = 4.0
    with serve(latency_s=0.5) as server:  # 152 attempts, 8 at a time: about 10 s of model calls
        with Store.open(db) as store:
            add_model(store, ModelSpec(name="support-bot", ref=f"openai:tunesafe-test@{server.url}"))
            add_schedule(store, "support-bot", every="30d", suite="smoke",
                         attacks="direct_request,refusal_suppression,prefix_injection", judges=("refusal",),
                         start=parse_instant("2026-01-01", "test"))
        first = subprocess.Popen([sys.executable, "-m", "tunesafe.cli.app", "--db", db, "redteam", "run-due",
                                  "--now", NOW, "--lease", str(lease_s), "--json"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with Store.open(db) as store:
            deadline = time.monotonic() + 120
            while not _claimed(store) and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(1.5 * lease_s)  # past the first lease
            assert first.poll() is None, "the run ended before the lease ran out: make it slower"
            second = run_due(store, now=parse_instant(NOW, "test"), lease=timedelta(seconds=lease_s))
        out, err = first.communicate(timeout=300)
        requests = len(server.requests)
    assert first.returncode == 0, err
    assert second.ran == []  # the claim still stood: not due, not taken over
    assert len(json.loads(out)["ran"]) == 1
    with Store.open(db) as store:
        assert requests == sum(run.n_planned for run in list_runs(store))
        with store.engine.connect() as conn:
            claim = conn.execute(select(RedteamClaimRow)).one()
    assert claim.state == "done" and claim.attempts == 1


def _claimed(store: Store) -> bool:
    with store.engine.connect() as conn:
        return conn.execute(select(RedteamClaimRow)).first() is not None
