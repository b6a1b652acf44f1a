"""`--executor ray`: a real local Ray cluster (started once for this module) runs the attempts on actors
against the loopback server; results match the local executor's, and a worker killed mid-run loses and
repeats nothing."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tunesafe.engine.results import load_results, load_run
from tunesafe.evidence.store import Store

from .conftest import Cli, Server, write_suite

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # a Ray cluster takes seconds to start


@pytest.fixture(scope="module", autouse=True)
def cluster() -> Iterator[None]:
    # Ray gives its node 30 s (fixed) to come up; a heavily loaded 2-core machine can miss that once.
    for attempt in range(3):
        try:
            ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
            break
        except Exception:
            ray.shutdown()
            if attempt == 2:
                raise
    try:
        yield
    finally:
        ray.shutdown()


def outcomes(db: Path, run_id: str) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(r.attempt.id, r.response, tuple(v.outcome for v in r.verdicts))
            for r in load_results(Store.open(str(db)), run_id)]


def eval_json(cli: Cli, ref: str, suite: Path, *extra: str) -> str:
    code, out, err = cli("eval", ref, "--suite", str(suite), "--attacks",
                         "direct_request,refusal_suppression", "--judge", "refusal", "--no-cache", "--json",
                         *extra)
    assert code == 0, err
    return str(json.loads(out)["run"]["id"])


def test_ray_runs_the_same_attempts_with_the_same_results(cli: Cli, tmp_path: Path, server: Server) -> None:
    suite = write_suite(tmp_path / "s.jsonl", n_harmful=8, n_benign=2)
    local = eval_json(cli, server.ref(), suite)
    distributed = eval_json(cli, server.ref(), suite, "--executor", "ray", "--workers", "2")
    assert outcomes(cli.db, distributed) == outcomes(cli.db, local)
    assert len(outcomes(cli.db, local)) == 26  # 8 harmful x 2 attacks + 2 benign x 5


def _ray_worker_pids() -> list[int]:
    import psutil

    return [p.pid for p in psutil.process_iter(["cmdline"])
            if p.info["cmdline"] and p.info["cmdline"][0].startswith("ray::Worker")]


def test_a_worker_killed_mid_run_loses_and_repeats_nothing(cli: Cli, tmp_path: Path) -> None:
    from tunesafe.testing.openai_server import serve

    suite = write_suite(tmp_path / "s.jsonl", n_harmful=30, n_benign=2)
    killed: list[int] = []
    with serve(latency_s=0.05) as running:
        def kill_one() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(running.app.requests) < 10:
                time.sleep(0.02)
            pids = _ray_worker_pids()
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])

        killer = threading.Thread(target=kill_one)
        killer.start()
        run_id = eval_json(cli, f"openai:tunesafe-test@{running.url}", suite, "--executor", "ray",
                           "--workers", "2", "--concurrency", "2")
        killer.join()
    assert killed, "no Ray worker process was found to kill"
    results = outcomes(cli.db, run_id)
    ids = [r[0] for r in results]
    planned = load_run(Store.open(str(cli.db)), run_id).n_planned
    assert len(ids) == len(set(ids)) == planned  # every attempt stored, none twice
    assert all(r[1] for r in results)  # and each one answered (the chunk was re-run on the restarted actor)


def test_bad_executor_options_are_one_error(cli: Cli, server: Server) -> None:
    code, _, err = cli("eval", server.ref(), "--suite", "smoke", "--executor", "spark")
    assert code == 2 and "unknown executor" in err and "Traceback" not in err
    code, _, err = cli("eval", server.ref(), "--suite", "smoke", "--executor", "ray", "--workers", "0")
    assert code == 2 and "--workers" in err


def test_a_worker_that_keeps_failing_is_one_error_and_the_run_resumes(
        cli: Cli, tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    from tunesafe.engine import distributed

    class Broken(distributed.Worker):
        # Defined here so Ray ships it by value; every actor dies in its constructor (a model that cannot
        # load on the worker machines), past any restart.
        def __init__(self, spec: distributed.WorkerSpec) -> None:
            raise RuntimeError("placeholder: no model on this worker")

    suite = write_suite(tmp_path / "s.jsonl", n_harmful=4, n_benign=2)
    args = ("--suite", str(suite), "--attacks", "direct_request", "--judge", "refusal", "--no-cache",
            "--no-progress")
    original = distributed.Worker
    monkeypatch.setattr(distributed, "Worker", Broken)
    code, _, err = cli("eval", server.ref(), *args, "--executor", "ray", "--workers", "2")
    # Ray itself logs the remote task's traceback from its driver thread; ours is one error line, exit 2
    assert code == 2 and "error: --executor ray: a Ray worker failed" in err, err
    [run_id] = cli.runs()
    assert f"--resume {run_id}" in err, err
    assert load_run(Store.open(str(cli.db)), run_id).status != "complete"
    monkeypatch.setattr(distributed, "Worker", original)
    code, _, err = cli("eval", "--resume", run_id, "--executor", "ray", "--workers", "2", "--no-progress")
    assert code == 0, err
    info = load_run(Store.open(str(cli.db)), run_id)
    assert info.status == "complete" and info.n_done == info.n_planned


def test_a_worker_whose_model_differs_stores_nothing(cli: Cli, tmp_path: Path, server: Server,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from tunesafe.engine import distributed

    class Stale(distributed.Worker):
        # a node whose copy of the model is not the driver's (another checkpoint at the same path)
        def __init__(self, spec: distributed.WorkerSpec) -> None:
            super().__init__(spec)
            self.model.content_hash = lambda: "0" * 64  # type: ignore[method-assign]

    suite = write_suite(tmp_path / "s.jsonl", n_harmful=4, n_benign=2)
    monkeypatch.setattr(distributed, "Worker", Stale)
    code, _, err = cli("eval", server.ref(), "--suite", str(suite), "--attacks", "direct_request", "--judge",
                       "refusal", "--no-cache", "--no-progress", "--executor", "ray", "--workers", "2")
    assert code == 2 and "model" in err, err
    [run_id] = cli.runs()
    assert load_run(Store.open(str(cli.db)), run_id).n_done == 0  # no answer of another model was stored


def test_a_misrouted_replica_fails_the_run_on_ray_too(cli: Cli, tmp_path: Path) -> None:
    from tunesafe.testing.openai_server import serve

    suite = write_suite(tmp_path / "s.jsonl", n_harmful=4, n_benign=2)
    with serve(latency_s=0.01) as good, serve(latency_s=0.01, reported_model="other-weights") as misrouted:
        code, _, err = cli("eval", f"openai:tunesafe-test@{good.url},{misrouted.url}", "--suite", str(suite),
                           "--attacks", "direct_request", "--judge", "refusal", "--no-cache", "--no-progress",
                           "--executor", "ray", "--workers", "2")
    assert code == 3 and "other-weights" in err and "start a new run" in err, err
    [run_id] = cli.runs()
    assert load_run(Store.open(str(cli.db)), run_id).status == "failed"  # as on the local executor
