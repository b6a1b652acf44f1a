"""A run's attempts executed on Ray actors (`--executor ray`), for clusters of GPU machines or many endpoints.

Each actor holds what one local run holds: its own model (a replica of a local model, one GPU each when the
cluster has GPUs) or endpoint client, the attacker and the judges, and runs the local executor on chunks
of attempts that it pulls from one queue, so a slow actor takes fewer. Results come back to the driver,
the only process that writes to the store: an attempt is stored when its chunk returns, once. A killed
actor is restarted by Ray and its chunk re-run (nothing of it was stored); a killed driver leaves what it
stored, and `tunesafe eval --resume RUN` runs the rest. Actors run without the response cache (it lives
in the store); everything else (plan, judges, replayed prompts, fail-closed errors, the pause and stop of
a failing endpoint) is the local executor's own code.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tunesafe.engine.config import EvalConfig
from tunesafe.engine.executor import Executor, ResultRecorder, ResultSink
from tunesafe.engine.targets import Planned
from tunesafe.errors import EndpointUnavailable, ReplicasDisagree, UserError
from tunesafe.types import Attempt, AttemptResult

RESTARTS = 3  # a worker that dies more often than this on one chunk stops the run (resumable)
CHUNKS_PER_SLOT = 2  # chunk = concurrency x this: enough in flight per actor, small loss when one dies
# why an actor's chunk stopped the run: (replicas disagree, where, message, fix)
Stopped = tuple[bool, "str | None", str, "str | None"]


@dataclass(frozen=True)
class WorkerSpec:
    model_ref: str
    config: EvalConfig
    planned: Planned
    frozen: Mapping[str, Mapping[str, Any]]
    run_id: str
    model_hash: str  # the driver's model: every actor's must be the same


class _Collect:
    def __init__(self) -> None:
        self.results: list[AttemptResult] = []

    def add(self, result: AttemptResult) -> None:
        self.results.append(result)


class Worker:
    """One Ray actor (made remote in RayExecutor.run, so importing this module needs no Ray)."""

    def __init__(self, spec: WorkerSpec) -> None:
        from tunesafe.engine.runner import load_run_model, make_judges

        self.spec = spec
        self.model = load_run_model(spec.model_ref, spec.config)
        self.attacker = load_run_model(spec.config.attacker_ref, spec.config) if spec.config.attacker_ref \
            else None
        self.judges = make_judges(spec.config)

    async def run(self, attempts: list[Attempt]) -> tuple[list[AttemptResult], Stopped | None]:
        """The chunk's results, and why the run must stop (an endpoint down past max_pause, replicas that
        answer as different models) or None."""
        sink = _Collect()
        spec = self.spec
        executor = Executor(self.model, self.attacker, self.judges, spec.planned, spec.config, spec.frozen,
                            sink, spec.run_id)
        try:
            await executor.run(attempts)
        except EndpointUnavailable as exc:
            # its parts, not the exception: Ray would rebuild that as cls(rendered line), where and fix lost
            return sink.results, (isinstance(exc, ReplicasDisagree), exc.where, exc.message, exc.fix)
        return sink.results, None

    def pid(self) -> int:
        return os.getpid()

    def identity(self) -> tuple[int, str]:
        """(process id, the content hash of the model this actor loaded)."""
        return os.getpid(), self.model.content_hash()


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray", where="--executor",
                        fix="pip install 'tunesafe[ray]'") from None
    return ray


def connect(config: EvalConfig) -> bool:
    """Connect to the cluster (or start a local one); True when this call started it."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    if config.ray_address:
        _check_reachable(config.ray_address)
    try:
        ray.init(address=config.ray_address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False, **({} if config.ray_address else {
                     "num_cpus": max(os.cpu_count() or 1, config.workers)}))
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UserError(f"cannot reach the Ray cluster at {config.ray_address}: {exc}", where="--ray-address",
                        fix="start it (ray start --head) or pass the right address") from None
    return True


REACH_TIMEOUT_S = 10.0


def _check_reachable(address: str) -> None:
    """A HOST:PORT head that does not answer: Ray would retry it for minutes on end (silently, from the
    user's side), so try one TCP connection first. "auto", "local" and ray:// are left to ray.init."""
    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=REACH_TIMEOUT_S).close()
    except OSError as exc:
        raise UserError(f"cannot reach the Ray cluster at {address}: {exc}", where="--ray-address",
                        fix="start it (ray start --head) or pass the right address; the run is kept: "
                            "resume it with tunesafe eval --resume RUN") from None


def actor_options(model_ref: str) -> dict[str, Any]:
    """Where an actor may run: a local model wants a GPU per replica when the cluster has them (else a
    CPU); an endpoint client only waits on the network."""
    from tunesafe.models import parse_ref

    ray = import_ray()
    options: dict[str, Any] = {"max_restarts": RESTARTS, "max_task_retries": RESTARTS}
    if not parse_ref(model_ref).local:
        return {**options, "num_cpus": 0}
    if ray.cluster_resources().get("GPU", 0) >= 1:
        return {**options, "num_gpus": 1}
    return {**options, "num_cpus": 1}


class RayExecutor(ResultRecorder):
    def __init__(self, spec: WorkerSpec, writer: ResultSink) -> None:
        super().__init__(writer)
        self.spec = spec
        self.pids: list[int] = []  # the actors' processes (tests kill one)

    async def run(self, pending: Sequence[Attempt]) -> None:
        config = self.spec.config
        ray = import_ray()
        started_here = connect(config)
        remote = ray.remote(**actor_options(self.spec.model_ref))(Worker)
        # The spec goes by value: a restarted actor needs its constructor arguments again, and an object
        # in Ray's store may be gone by then.
        actors = [remote.remote(self.spec) for _ in range(min(config.workers, max(1, len(pending))))]
        size = max(1, config.concurrency * CHUNKS_PER_SLOT)
        chunks = deque(list(pending[i:i + size]) for i in range(0, len(pending), size))

        async def drive(actor: Any) -> None:
            try:
                pid, model_hash = await actor.identity.remote()
                self.pids.append(pid)
                if model_hash != self.spec.model_hash:
                    # Each actor loads the ref on its own node: another checkpoint or server model there
                    # would store its answers under the driver's model hash, mixing two models in one run.
                    raise UserError(f"a Ray worker's model (hash {model_hash[:12]}) is not the driver's "
                                    f"(hash {self.spec.model_hash[:12]})", where=self.spec.model_ref,
                                    fix="give every node the same model, then: "
                                        f"tunesafe eval --resume {self.spec.run_id}")
                while chunks:
                    chunk = chunks.popleft()
                    results, stopped = await actor.run.remote(chunk)
                    for result in results:
                        self.record(result)
                    if stopped is not None:
                        disagree, where, message, fix = stopped
                        if disagree:  # its own fix: a new run, not a resume
                            raise ReplicasDisagree(message, where=where, fix=fix)
                        raise EndpointUnavailable(message, where=where, fix="")
            except ray.exceptions.RayError as exc:
                # A worker that cannot start or keeps dying past its restarts: nothing of its chunk was
                # stored, so the run stops resumably with one line instead of Ray's remote traceback.
                raise worker_failed(exc, self.spec.run_id) from None

        tasks = [asyncio.create_task(drive(actor)) for actor in actors]
        try:
            # Ray prints task retries and worker deaths to stdout from a driver thread: stderr while the
            # run lasts, so stdout stays the command's output (`--json`).
            with contextlib.redirect_stdout(sys.stderr):
                await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for actor in actors:
                ray.kill(actor)
            if started_here:
                ray.shutdown()


def worker_failed(exc: BaseException, run_id: str) -> UserError:
    """One line for a Ray error: its first line (the rest is the remote traceback)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    first = lines[0] if lines else ""
    return UserError(f"a Ray worker failed ({type(exc).__name__}): {first}", where="--executor ray",
                     fix=f"everything stored so far is kept; fix the workers, then: "
                         f"tunesafe eval --resume {run_id}")
