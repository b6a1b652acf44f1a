"""Two real processes appending to one store at the same time must queue, not fork the chain."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from tunesafe.engine import results as run_store
from tunesafe.engine.runner import finish_run
from tunesafe.evidence.store import Store
from tunesafe.production.incidents import get_incident, open_incident
from tunesafe.production.inventory import ModelSpec, add_model, inventory, record_safety_eval, version_body
from tunesafe.types import Attempt, AttemptResult, Generation, Message, RecordType, Verdict

WRITER = """
import sys, time
from pathlib import Path
from tunesafe.evidence.store import Store
store = Store.open(sys.argv[1])
Path(sys.argv[4], "ready-" + sys.argv[2]).touch()
while not Path(sys.argv[4], "go").exists():  # start line: both processes begin appending together
    time.sleep(0.005)
started = time.time()
for i in range(int(sys.argv[3])):
    store.append("concurrency", {"writer": sys.argv[2], "i": i}, actor=sys.argv[2])
Path(sys.argv[4], "span-" + sys.argv[2]).write_text(f"{started} {time.time()}")
store.close()
"""
PER_WRITER = 300
REF = "openai:x@http://127.0.0.1:9/v1"
Race = Callable[..., list[str]]  # the `race` fixture (tests/conftest.py)


def test_two_processes_append_without_forking_the_chain(store_url: str, tmp_path: Path) -> None:
    Store.open(store_url).close()  # migrate first, so both writers start appending at once
    args = [str(PER_WRITER), str(tmp_path)]
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, store_url, name, *args],
                                stderr=subprocess.PIPE, text=True) for name in ("w1", "w2")]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready-{n}").exists() for n in ("w1", "w2")) and time.monotonic() < deadline:
        time.sleep(0.01)
    (tmp_path / "go").touch()
    # verify while they write: a consistent snapshot never reports a broken chain
    with Store.open(store_url) as store:
        while any(proc.poll() is None for proc in writers):
            result = store.verify()
            assert result.ok, result
    for proc in writers:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    with Store.open(store_url) as store:
        result = store.verify()
        records = list(store.records(type="concurrency"))
    assert result.ok and result.checked == 2 * PER_WRITER
    assert [r.id for r in records] == list(range(1, 2 * PER_WRITER + 1))
    for name in ("w1", "w2"):  # each writer's records all landed, in its own order
        assert [r.body["i"] for r in records if r.actor == name] == list(range(PER_WRITER))
    # they really contended: each began appending before the other had finished. (Whether the
    # chain interleaves is up to the database's lock fairness: SQLite may let one writer starve
    # the other, which is slow but correct, so interleaving is not asserted.)
    spans = [tuple(map(float, (tmp_path / f"span-{n}").read_text().split())) for n in ("w1", "w2")]
    assert max(start for start, _ in spans) < min(end for _, end in spans)


ADD = f"""
from tunesafe.production.inventory import ModelSpec, add_model
add_model(store, ModelSpec(name="shared", ref={REF!r}), actor=me)
print("added")
"""


def test_processes_adding_one_model_name_at_once_record_it_once(tmp_path: Path, race: Race) -> None:
    # the duplicate-name check and the append must be one step: every process passed the check before
    # any had appended, and the name got as many versions as processes, none asked for with --new-version
    db = str(tmp_path / "store.db")
    with Store.open(db) as store:  # an inventory of some size: reading it for the check takes a while
        store.append_many([(RecordType.MODEL_VERSION, version_body(ModelSpec(name=f"other-{i}", ref=REF),
                                                                   tmp_path), f"other-{i}")
                           for i in range(500)])
    outputs = race(db, ADD)
    assert sorted(outputs)[0] == "added" and outputs.count("added") == 1, outputs
    with Store.open(db) as store:
        assert len(list(store.records(type=RecordType.MODEL_VERSION, subject="shared"))) == 1
        assert inventory(store)["shared"].version == 1
        assert store.verify().ok


CLOSE_OR_NOTE = """
from tunesafe.production.incidents import close_incident, update_incident
if me in ("p0", "p1"):
    close_incident(store, 1, resolution=f"fixed by {me}")
else:
    update_incident(store, 1, note=f"seen by {me}")
print("done")
"""


def test_an_incident_closed_while_others_change_it_is_closed_once_and_stays_closed(
        tmp_path: Path, race: Race) -> None:
    # closing is final, but each process checked "not closed" on what it had read, then appended: two
    # closing records (the second replacing the resolution), and notes appended after the close
    db = str(tmp_path / "store.db")
    with Store.open(db) as store:
        first = open_incident(store, model="m", title="harmful answer", severity="high", source="manual")
        opened = store.get(first.id).body
        store.append_many([(RecordType.INCIDENT, opened, "m")] * 500)  # reading them all takes a while
    outputs = race(db, CLOSE_OR_NOTE)
    assert outputs.count("done") >= 1, outputs
    with Store.open(db) as store:
        changes = [r for r in store.records(type=RecordType.INCIDENT_UPDATE) if r.body["incident"] == 1]
        closing = [r for r in changes if r.body.get("status") == "closed"]
        assert len(closing) == 1, [r.body for r in changes]
        assert changes[-1] == closing[0], [r.body for r in changes]  # nothing after the close
        assert get_incident(store, 1).resolution == closing[0].body["resolution"]
        assert store.verify().ok


RECLASSIFY = """
from datetime import datetime, timezone
from tunesafe.production.incidents import update_incident
now = datetime(2026, 1, 20, tzinfo=timezone.utc)
if me in ("p0", "p1", "p2"):  # widespread, known since 01-17: its 2-day deadline passed on 01-19
    update_incident(store, 1, kind="widespread", aware_at="2026-01-17T00:00:00Z", now=now)
else:  # general only: allowed while no deadline has passed. Each linked record is looked up between
    # reading the incident and appending: the window another process's reclassification lands in
    update_incident(store, 1, kind="general", links=range(2, 400), now=now)
print("done")
"""


def test_a_downgrade_racing_a_reclassification_cannot_extend_a_deadline_that_passed(
        tmp_path: Path, race: Race) -> None:
    # the passed-deadline check read the kinds before the lock: a downgrade that read "general only"
    # was appended after another process added a kind whose deadline had passed, and moved it 4 days later
    db = str(tmp_path / "store.db")
    with Store.open(db) as store:
        first = open_incident(store, model="m", title="harmful answer", severity="high", source="manual",
                              aware_at="2026-01-08T00:00:00Z", now=datetime(2026, 1, 20, tzinfo=timezone.utc))
        opened = store.get(first.id).body
        store.append_many([(RecordType.INCIDENT, opened, "m")] * 500)  # reading them all takes a while
    outputs = race(db, RECLASSIFY, processes=6)
    assert outputs.count("done") >= 3, outputs  # every reclassification is allowed
    with Store.open(db) as store:
        kinds = [r.body["kinds"] for r in store.records(type=RecordType.INCIDENT_UPDATE)
                 if r.body["incident"] == 1]
        reclassified = next(i for i, k in enumerate(kinds) if "widespread" in k)
        assert all("widespread" in k for k in kinds[reclassified:]), kinds
        assert get_incident(store, 1).overdue(datetime(2026, 1, 20, tzinfo=timezone.utc))
        assert store.verify().ok


IMPORT = """
from tunesafe.production.importer import import_inventory
import_inventory(store, Path(sys.argv[2]).parent / "inventory.csv", actor=me)
print("imported")
"""


def test_processes_importing_one_new_model_name_at_once_record_it_once(tmp_path: Path, race: Race) -> None:
    # `models import` checks that every name is new, then appends: as `models add` did, each passed it
    db = str(tmp_path / "store.db")
    with Store.open(db) as store:
        store.append_many([(RecordType.MODEL_VERSION, version_body(ModelSpec(name=f"other-{i}", ref=REF),
                                                                   tmp_path), f"other-{i}")
                           for i in range(2000)])
    (tmp_path / "inventory.csv").write_text(f"name,ref\nshared,{REF}\n")
    outputs = race(db, IMPORT)
    assert outputs.count("imported") == 1, outputs
    with Store.open(db) as store:
        assert len(list(store.records(type=RecordType.MODEL_VERSION, subject="shared"))) == 1
        assert store.verify().ok


FINISH = """
from tunesafe.engine.runner import finish_run
config = {"model_name": "m", "judges": [{"name": "refusal", "version": "1"}], "suite": {"name": "t"}}
report = finish_run(store, "run-1", [f"a{i}" for i in range(10)], config, "0" * 64, {})
print("finished", report.record_id)
"""


def test_two_resumes_finishing_one_run_at_once_write_its_records_once(tmp_path: Path, race: Race) -> None:
    # finish_run writes the run record (and the model's safety evaluation) unless it finds one already:
    # resumes of one run finishing together each found none and each wrote its own
    db = str(tmp_path / "store.db")
    config = {"model_name": "m", "judges": [{"name": "refusal", "version": "1"}], "suite": {"name": "t"}}
    with Store.open(db) as store:
        add_model(store, ModelSpec(name="m", ref=REF))
        earlier = record_safety_eval(store, "m", run_id="earlier", details={"run_record": 0})
        # the model's earlier runs and evaluations, fewer than a page (read in one query) and long to parse:
        # every process reads them for its check before any has appended
        earlier_run = {"run_id": "earlier", "results_digest": "", "summary": list(range(2000))}
        store.append_many([(RecordType.RUN, earlier_run, "m")] * 990
                          + [(RecordType.SAFETY_EVAL, {**earlier.body, "pad": list(range(2000))}, "m")] * 990)
        _store_results(store, "run-1", config)
    outputs = race(db, FINISH)
    with Store.open(db) as store:
        runs = [r.id for r in store.records(type=RecordType.RUN) if r.body["run_id"] == "run-1"]
        evals = [r.id for r in store.records(type=RecordType.SAFETY_EVAL) if r.body["run_id"] == "run-1"]
        assert len(runs) == 1 and len(evals) == 1, (runs, evals)
        assert outputs == [f"finished {runs[0]}"] * 4, outputs
        assert run_store.load_run(store, "run-1").status == "complete" and store.verify().ok


def _store_results(store: Store, run_id: str, config: dict[str, object]) -> None:
    """A run of 10 attempts, each answered and judged refused, stored but not finished."""
    run_store.create_run(store, run_id, REF, "0" * 64, config, "cfg", 10)
    writer = run_store.ResultWriter(store)
    for i in range(10):
        attempt = Attempt(id=f"a{i}", behavior_id=f"b{i}", attack="direct", attack_version="1",
                          family="direct", category="cyber", kind="harmful",
                          messages=(Message("user", f"[request {i}]"),))
        verdict = Verdict(judge="refusal", judge_version="1", refused=True, harmful=False)
        writer.add(AttemptResult(run_id, attempt, Generation("I can't help.", "stop"), "I can't help.",
                                 (), (verdict,)))
    writer.flush()


GATE_OR_ADD = f"""
from tunesafe.gating import gate_runs
from tunesafe.policy import default_policy
from tunesafe.production.inventory import ModelSpec, add_model
if me == "p0":  # adds versions for as long as the others gate
    while not all((here / f"gated-p{{i}}").exists() for i in (1, 2, 3)):
        add_model(store, ModelSpec(name="m", ref={REF!r}), new_version=True)
else:
    for _ in range(10):
        try:
            gate_runs(store, "base", "candidate", default_policy(), candidate_name="m")
        except UserError as exc:
            print("refused:", exc.message)
    (here / f"gated-{{me}}").touch()
print("done")
"""


def test_a_gate_decision_is_about_the_version_current_where_it_is_recorded(
        tmp_path: Path, race: Race) -> None:
    # the gate ties the candidate run to the name's current version, then appends; a version added in
    # between (the decision waited for the chain lock behind it) put the decision after the new version,
    # which readers take it to evaluate, while its body names the old one
    db = str(tmp_path / "store.db")
    config = {"model_name": "m", "judges": [{"name": "refusal", "version": "1"}], "suite": {"name": "t"}}
    with Store.open(db) as store:
        add_model(store, ModelSpec(name="m", ref=REF))
        for run_id in ("base", "candidate"):
            _store_results(store, run_id, config)
            finish_run(store, run_id, [f"a{i}" for i in range(10)], config, "0" * 64, {})
    outputs = race(db, GATE_OR_ADD)
    with Store.open(db) as store:
        versions = [r.id for r in store.records(type=RecordType.MODEL_VERSION, subject="m")]
        gates = list(store.records(type=RecordType.GATE_DECISION))
        assert gates and all(o.endswith("done") for o in outputs), outputs
        for gate in gates:
            current = max(v for v in versions if v < gate.id)
            assert gate.body["candidate_version"]["record_id"] == current, (gate.id, versions)
