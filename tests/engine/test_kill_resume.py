"""Kill the real `tunesafe eval` process (SIGKILL at random points, three times, then Ctrl-C), resume it,
and check that the stored attempts are exactly the plan: none lost, none repeated."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from tunesafe.engine.results import list_runs, load_run, read
from tunesafe.engine.runner import EvalConfig, plan_evaluation
from tunesafe.engine.verify import verify_store
from tunesafe.evidence.schema import AttemptResultRow
from tunesafe.evidence.store import Store
from tunesafe.testing.openai_server import serve
from tunesafe.types import Capabilities, RecordType

from .conftest import Server, write_suite


def _default_sigint() -> None:
    # A shell starts background jobs with SIGINT ignored and children inherit that, so under a
    # backgrounded test runner the Ctrl-C below would be ignored (as a nohup'd tunesafe rightly does).
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _eval(db: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "tunesafe.cli.app", "--db", str(db), "eval", *args,
                             "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, preexec_fn=_default_sigint)


def _stored(store: Store, run_id: str) -> tuple[int, int]:
    query = select(func.count(), func.count(func.distinct(AttemptResultRow.attempt_id))).where(
        AttemptResultRow.run_id == run_id)
    total, distinct = read(store, query)[0]
    return int(total), int(distinct)


def test_sigkill_at_random_points_then_resume_completes_the_plan(tmp_path: Path) -> None:
    # 200 ms per request at concurrency 2: the plan needs about 40 s of serving, while the kills below land
    # within about 10 s of it, so they hit mid-run however fast (idle) the machine is.
    with serve(latency_s=0.2) as running:
        _kill_and_resume(tmp_path, Server(running))


def _kill_and_resume(tmp_path: Path, server: Server) -> None:
    rng = random.Random(int(os.environ.get("TUNESAFE_TEST_SEED", time.time_ns() % 10_000)))
    db = tmp_path / "store.db"
    suite = write_suite(tmp_path / "s.jsonl", n_harmful=16, n_benign=4)
    args = ["--suite", str(suite), "--attacks", "template", "--judge", "refusal", "--concurrency", "2"]
    store = Store.open(str(db))
    # the loopback server has no prefill: prefilling attacks are left out of the plan, as in the CLI
    planned = plan_evaluation(EvalConfig(suite=str(suite), attacks="template", judges=("refusal",)),
                              capabilities=Capabilities())

    proc = _eval(db, server.ref(), *args)
    deadline = time.monotonic() + 120
    while not list_runs(store):  # the run exists once its row is committed
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    run_id = list_runs(store)[0].id
    progress = []
    for _ in range(3):  # SIGKILL anywhere: during start-up, planning, generation or a commit
        time.sleep(rng.uniform(0.2, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        total, distinct = _stored(store, run_id)
        assert total == distinct  # never a duplicate, even mid-run
        progress.append(total)
        # concurrency is a runtime knob that a resume takes from its own command: keep it at 2, or the
        # resumed run finishes the plan before the Ctrl-C below can land
        proc = _eval(db, "--resume", run_id, "--concurrency", "2")
    # Ctrl-C once the run is going: what is done is kept, the status says so, and the message says how
    # to resume (exit 130 like any interrupted command)
    assert proc.stderr is not None
    while "attempts planned" not in proc.stderr.readline():
        assert proc.poll() is None, "the resumed run ended before it announced itself"
    time.sleep(rng.uniform(0.1, 1.0))
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and f"--resume {run_id}" in err, err
    assert "Traceback" not in err and "never retrieved" not in err, err  # one clean line, no asyncio noise
    assert load_run(store, run_id).status == "interrupted"
    progress.append(_stored(store, run_id)[0])
    proc = _eval(db, "--resume", run_id)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert progress == sorted(progress) and progress[-1] < len(planned.plan.ids), (
        f"kills should land mid-run: stored {progress} of {len(planned.plan.ids)}")
    stored_ids = [i for (i,) in read(store, select(AttemptResultRow.attempt_id)
                                     .where(AttemptResultRow.run_id == run_id))]
    assert sorted(stored_ids) == sorted(planned.plan.ids)  # exactly the plan: nothing lost, nothing twice
    assert load_run(store, run_id).status == "complete"
    assert [r.body["run_id"] for r in store.records(type=RecordType.RUN)] == [run_id]
    assert verify_store(store).ok  # the chain, and the stored results match the run record's digest


def test_sigterm_keeps_what_finished_and_marks_the_run_interrupted(tmp_path: Path) -> None:
    # SIGTERM is how kill, systemd, docker stop and schedulers stop a job: it must end the run like Ctrl-C
    # (finished results committed, status interrupted, the resume command shown), not drop the buffer and
    # leave a dead run marked "running".
    db = tmp_path / "store.db"
    suite = write_suite(tmp_path / "s.jsonl", n_harmful=16, n_benign=4)
    store = Store.open(str(db))
    with serve(latency_s=0.2) as running:
        proc = _eval(db, Server(running).ref(), "--suite", str(suite), "--attacks", "template", "--judge",
                     "refusal", "--concurrency", "2")
        assert proc.stderr is not None
        while "attempts planned" not in proc.stderr.readline():
            assert proc.poll() is None, "the run ended before it announced itself"
        run_id = list_runs(store)[0].id
        deadline = time.monotonic() + 60
        while _stored(store, run_id)[0] == 0:  # some results are committed, more are in flight
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and f"--resume {run_id}" in err, (proc.returncode, err)
    assert "Traceback" not in err, err
    info = load_run(store, run_id)
    assert info.status == "interrupted" and 0 < info.n_done < info.n_planned


def test_a_resume_given_other_options_is_refused_not_run_with_the_stored_ones(tmp_path: Path) -> None:
    # A resume runs the stored config. An option given again with another value was silently unused: the
    # user read a run "at --max-new-tokens 17" (or "direct_request only") that had measured something else.
    db = tmp_path / "store.db"
    suite = write_suite(tmp_path / "s.jsonl", n_harmful=8, n_benign=2)
    store = Store.open(str(db))
    with serve(latency_s=0.2) as running:
        ref = Server(running).ref()
        proc = _eval(db, ref, "--suite", str(suite), "--attacks", "direct_request,prefix_injection",
                     "--judge", "refusal", "--concurrency", "1")
        run_id = _kill_once_stored(proc, store, at_least=2, within_s=60)
        before = _stored(store, run_id)
        for option in (["--max-new-tokens", "17"], ["--attacks", "direct_request"], ["--suite", "smoke"],
                       ["--judge", "default"], ["--seed", "3"]):
            proc = _eval(db, "--resume", run_id, *option)
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 2, (option, err)
            assert "Traceback" not in err and f"run {run_id} was planned with" in err, err
            assert _stored(store, run_id) == before and load_run(store, run_id).status == "running"
        # the same values again (and the runtime knobs) resume it
        proc = _eval(db, ref, "--resume", run_id, "--attacks", "direct_request,prefix_injection",
                     "--judge", "refusal", "--max-new-tokens", "256", "--concurrency", "4")
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert load_run(store, run_id).status == "complete"
        proc = _eval(db, "--resume", run_id, "--temperature", "0.7")  # a complete run is no different
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 2 and "temperature=0.0 (given 0.7)" in " ".join(err.split()), err


def test_a_killed_replica_run_resumes_on_other_replicas_at_another_concurrency(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    suite = write_suite(tmp_path / "s.jsonl", n_harmful=16, n_benign=4)
    store = Store.open(str(db))
    with serve(latency_s=0.1) as a, serve(latency_s=0.1) as b, serve(latency_s=0.1) as c:
        proc = _eval(db, f"openai:tunesafe-test@{a.url},{b.url}", "--suite", str(suite), "--attacks",
                     "template", "--judge", "refusal", "--concurrency", "2")
        run_id = _kill_once_stored(proc, store, at_least=1, within_s=120)
        killed_at = _stored(store, run_id)[0]
        moved = f"openai:tunesafe-test@{a.url},{c.url}"  # b replaced, and more requests in flight
        proc = _eval(db, moved, "--resume", run_id, "--concurrency", "8")
        _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    info = load_run(store, run_id)
    assert killed_at < info.n_planned and info.status == "complete" and info.model_ref == moved
    stored_ids = [i for (i,) in read(store, select(AttemptResultRow.attempt_id)
                                     .where(AttemptResultRow.run_id == run_id))]
    assert len(stored_ids) == len(set(stored_ids)) == info.n_planned  # none lost, none twice
    assert len(c.requests) > 0 and [r.body["run_id"] for r in store.records(type=RecordType.RUN)] == [run_id]


def _kill_once_stored(proc: subprocess.Popen[str], store: Store, at_least: int, within_s: float) -> str:
    """SIGKILL the eval once its run has `at_least` results committed; the run's id."""
    deadline = time.monotonic() + within_s
    while not list_runs(store) or _stored(store, list_runs(store)[0].id)[0] < at_least:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    return list_runs(store)[0].id
