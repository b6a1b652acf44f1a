"""The public Python API: the CLI's main operations as plain functions, for notebooks and pipelines.

    import tunesafe
    report = tunesafe.evaluate("openai:base@http://127.0.0.1:8000/v1", suite="smoke", store="runs.db")
    outcome = tunesafe.gate(base_ref, candidate_ref, policy="tunesafe-policy.yaml", store="runs.db")
    outcome.decision.verdict  # "pass" | "fail" | "inconclusive"; outcome.record is the evidence record

Contract, the same for every function here:
- Each one calls what its command calls (`tunesafe eval`, `gate`, `scan-data`, `judge`), with the same
  defaults; nothing is computed a second way. Names and defaults are stable across minor versions.
- Bad input raises `tunesafe.errors.UserError` (message, `where`, `fix`): what the CLI prints before it
  exits with code 2. Nothing stored is lost by it. An argument of the wrong type or an unknown judge name
  is refused before any work, with `where` naming the argument.
- They are synchronous. Called where an event loop is already running (Jupyter, an async web handler),
  the work runs in a worker thread with its own event loop and the call blocks until it is done.
- `store`: a SQLAlchemy URL, a SQLite file path (created if needed) or an open `Store` (left open);
  None finds the store as the CLI does (TUNESAFE_DB, else the `.tunesafe/` workspace above the current
  folder).
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, Union

from tunesafe.engine.config import RUNTIME_FIELDS, EvalConfig
from tunesafe.errors import UserError
from tunesafe.evidence.store import Store
from tunesafe.evidence.workspace import open_store

if TYPE_CHECKING:
    from tunesafe.engine.runner import RunReport
    from tunesafe.gating import GateOutcome
    from tunesafe.judges.base import JudgeInput
    from tunesafe.policy import Policy
    from tunesafe.screening.scan import ScanReport
    from tunesafe.training.callback import SafetyCallback

__all__ = ["SafetyCallback", "evaluate", "gate", "judge", "scan_data"]

StoreLike = Union[str, "os.PathLike[str]", Store, None]
PathLike = Union[str, "os.PathLike[str]"]
T = TypeVar("T")

DEFAULT_OUT = Path("tunesafe-report")  # as `tunesafe gate --out`
log = logging.getLogger("tunesafe")


def evaluate(model: str | None, *, suite: str = "default", attacks: str = "all",
             judges: str | Sequence[str] = ("default",), judge_model: str | None = None,
             attacker: str | None = None, limit: int | None = None, seed: int = 0, concurrency: int = 8,
             max_new_tokens: int = 256, temperature: float = 0.0, use_cache: bool = True,
             max_pause: float = 600.0, executor: str = "local", workers: int = 2,
             ray_address: str | None = None, name: str | None = None, resume: str | None = None,
             store: StoreLike = None, progress: bool = False, attest_weights: bool = False) -> RunReport:
    """`tunesafe eval MODEL`: an adversarial safety evaluation (suite x attacks, judged), stored as it goes.

    Returns the run's report: `run_id`, `status`, `summary` (rates with intervals overall, per family,
    category and kind) and `stats` (throughput of this call). An identical earlier run is not reused here
    (as with the CLI); `gate` reuses stored runs. `resume=RUN_ID` completes an interrupted run with its
    stored options (`model` may then be None; a measured option set to another value than the stored
    one is a UserError), e.g. after an EndpointUnavailable. `executor="ray"` runs
    the attempts on `workers` Ray actors (at `ray_address`, or a local instance), as `--executor ray`.
    `name` in the inventory must be the model of that name's current version (a UserError before any model
    call otherwise); `attest_weights`: the CLI's `--attest-weights` (docs/gate.md)."""
    _check_arguments(locals())
    config = EvalConfig(suite=suite, attacks=attacks, judges=_names(judges), limit=limit, seed=seed,
                        concurrency=concurrency, max_new_tokens=max_new_tokens, temperature=temperature,
                        use_cache=use_cache, attacker_ref=attacker, judge_model_ref=judge_model,
                        max_pause=max_pause, executor=executor, ray_address=ray_address, workers=workers)

    async def run() -> RunReport:
        from tunesafe.engine.runner import evaluate as run_evaluation

        with _opened(store) as opened:
            return await run_evaluation(opened, model, config, resume=resume, model_name=name,
                                        progress=progress, explicit=_set_options(config), check_name=True,
                                        attest_weights=attest_weights)

    return _blocking(lambda: asyncio.run(run()))


def _set_options(config: EvalConfig) -> list[str]:
    """The measured options a call set away from their defaults (a resume refuses them if they differ
    from the stored run's, as the CLI does for the options given)."""
    default = EvalConfig()
    return [f.name for f in fields(EvalConfig)
            if f.name not in RUNTIME_FIELDS and getattr(config, f.name) != getattr(default, f.name)]


def gate(base: str, candidate: str, *, policy: PathLike | Policy | None = None, suite: str = "default",
         attacks: str = "all", judges: str | Sequence[str] = ("default",), attacker: str | None = None,
         limit: int | None = None, seed: int = 0, concurrency: int = 8, max_new_tokens: int = 256,
         temperature: float = 0.0, use_cache: bool = True, max_pause: float = 600.0,
         executor: str = "local", workers: int = 2, ray_address: str | None = None,
         base_name: str | None = None, candidate_name: str | None = None, escalate_judge: str | None = None,
         out: PathLike | None = DEFAULT_OUT, store: StoreLike = None, progress: bool = False,
         notify: Callable[[str], None] | None = None, attest_weights: bool = False) -> GateOutcome:
    """`tunesafe gate`: evaluate base and candidate on identical attempts (reusing stored runs), compare
    them pairwise, decide against the policy, append the decision to the evidence chain, write the reports.

    Returns the outcome: `decision` (`verdict` pass / fail / inconclusive, `exit_code` as the CLI's,
    `reasons`, the comparison), `record` (the gate_decision evidence record), `body` (its JSON body, what
    decision.json holds) and `reports` (format -> file written under `out`; `out=None` writes none).
    `policy`: a YAML path, a loaded `Policy`, or None for the built-in policy. `notify` receives the
    notes the CLI prints on stderr (runs re-judged, incident regression items added); default: the
    "tunesafe" logger. `attest_weights`: the CLI's `--attest-weights` (docs/gate.md). With `out=None`,
    the candidate's incident regression items go to a temporary folder, removed when the call returns."""
    from tunesafe.analysis.escalate import parse_escalation_ref
    from tunesafe.cli.common import check_out_folder
    from tunesafe.gating import gate_models

    _check_arguments(locals())
    chosen = _policy(policy)
    escalate = None if escalate_judge is None else parse_escalation_ref(escalate_judge)
    config = EvalConfig(suite=suite, attacks=attacks, judges=_names(judges), limit=limit, seed=seed,
                        concurrency=concurrency, max_new_tokens=max_new_tokens, temperature=temperature,
                        use_cache=use_cache, attacker_ref=attacker, max_pause=max_pause,
                        executor=executor, ray_address=ray_address, workers=workers)
    out_dir = None if out is None else Path(out)
    if out_dir is not None:
        check_out_folder(out_dir, "out")  # as the CLI: before both evaluations, not after
    say = notify or log.info

    async def run() -> GateOutcome:
        with _opened(store) as opened, _regressions_dir(out_dir) as regressions:
            return await gate_models(opened, base, candidate, chosen, config, base_name=base_name,
                                     candidate_name=candidate_name, out_dir=out_dir, progress=progress,
                                     notify=say, escalate=escalate, regressions_dir=regressions,
                                     attest_weights=attest_weights)

    return _blocking(lambda: asyncio.run(run()))


def scan_data(path: PathLike, *, format: str = "auto", columns: Mapping[str, str] | None = None,
              model: str | None = None, contamination: Sequence[PathLike] = (), fix: PathLike | None = None,
              model_name: str | None = None, record: bool = True, store: StoreLike = None) -> ScanReport:
    """`tunesafe scan-data PATH`: screen a fine-tuning dataset (harmful content, obedience patterns,
    PII/secrets, duplicates, contamination, similarity to safety data) and rate it low / medium / high.

    `columns` maps roles to your columns ({"prompt": "question", "completion": "answer"}); `fix` writes a
    filtered copy and its manifest. With `record` (the default, as in the CLI) the scan is appended to the
    store as a data_scan record linked to the dataset's sha256 (subject: `model_name` when given)."""
    from tunesafe.screening import Scanner, ScanOptions
    from tunesafe.types import RecordType

    _check_arguments(locals())
    def run() -> ScanReport:
        with _opened(store) if record else _no_store() as opened:  # opened first, as in the CLI
            options = ScanOptions(contamination=tuple(Path(p) for p in contamination))
            report = Scanner(model).scan(Path(path), format, dict(columns or {}), options,
                                         fix=None if fix is None else Path(fix))
            if opened is not None:
                opened.append(RecordType.DATA_SCAN, report.evidence_body(),
                              subject=model_name or report.sha256)
            return report

    return _blocking(run)


def judge(pairs: PathLike | Iterable[Mapping[str, Any] | JudgeInput], *,
          judges: str | Sequence[str] = ("default",), judge_model: str | None = None) -> list[dict[str, Any]]:
    """`tunesafe judge FILE.jsonl`: judge existing (request, response) pairs without calling a model.

    `pairs`: a JSONL path, or mappings with `request`, `response`, optional `id` and `kind` (harmful /
    benign / borderline; decided from the request when missing, which needs tunesafe[screen]).
    Returns one row per pair and judge, as `--json` prints them: id, judge, judge_version, refused,
    harmful, degenerate, score, error, evidence, and where the pair's kind came from."""
    from tunesafe.judges.base import check_judge_model, get_judge
    from tunesafe.judges.pairs import judge_pairs, read_pairs
    from tunesafe.screening.request_kind import fill_kinds

    _check_arguments(locals())
    check_judge_model(_names(judges), judge_model)
    items = read_pairs(Path(pairs)) if isinstance(pairs, (str, os.PathLike)) else _pair_inputs(pairs)
    options = {"model_ref": judge_model} if judge_model else {}

    def run() -> list[dict[str, Any]]:
        loaded = [get_judge(name, **options) for name in dict.fromkeys(_names(judges))]
        filled, kinds = fill_kinds(items)
        return judge_pairs(loaded, filled, kinds)

    return _blocking(run)


def __getattr__(name: str) -> Any:
    if name == "SafetyCallback":  # transformers loads only for those who train
        from tunesafe.training.callback import SafetyCallback

        return SafetyCallback
    raise AttributeError(f"module 'tunesafe.api' has no attribute {name!r}")


def _blocking(call: Callable[[], T]) -> T:
    """call() here when no event loop runs in this thread; else in a worker thread, where the engine's
    asyncio.run can start a loop of its own (it cannot inside a running one)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return call()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tunesafe-api") as worker:
        return worker.submit(call).result()


@contextmanager
def _opened(store: StoreLike) -> Iterator[Store]:
    if isinstance(store, Store):
        yield store  # the caller's: the caller closes it
        return
    with open_store(None if store is None else os.fspath(store)) as opened:
        yield opened


@contextmanager
def _no_store() -> Iterator[None]:
    yield None


@contextmanager
def _regressions_dir(out_dir: Path | None) -> Iterator[Path]:
    """Where the combined suite of incident regression items goes: `out`, as the CLI's --out; with no
    `out`, a temporary folder, so that a gate writes nothing outside its store and `out`."""
    if out_dir is not None:
        yield out_dir
        return
    with tempfile.TemporaryDirectory(prefix="tunesafe-regressions-") as folder:
        yield Path(folder)


_TEXT, _PATH = (str,), (str, os.PathLike)
_OPTIONAL_TEXT, _OPTIONAL_PATH = (str, type(None)), (str, os.PathLike, type(None))
# argument -> (accepted types, what to pass); the arguments not named here are checked where they are used
_KINDS: dict[str, tuple[tuple[type, ...], str]] = {
    **dict.fromkeys(("model", "judge_model", "attacker", "ray_address", "name", "resume", "base_name",
                     "candidate_name", "escalate_judge", "model_name"), (_OPTIONAL_TEXT, "a string or None")),
    **dict.fromkeys(("base", "candidate", "suite", "attacks", "executor", "format"), (_TEXT, "a string")),
    **dict.fromkeys(("seed", "concurrency", "max_new_tokens", "workers"), ((int,), "an integer")),
    "limit": ((int, type(None)), "an integer or None"),
    **dict.fromkeys(("temperature", "max_pause"), ((int, float), "a number")),
    **dict.fromkeys(("use_cache", "progress", "attest_weights", "record"), ((bool,), "True or False")),
    "store": ((*_OPTIONAL_PATH, Store), "a SQLAlchemy URL, a SQLite file path, an open Store or None"),
    **dict.fromkeys(("out", "fix"), (_OPTIONAL_PATH, "a folder path or None")),
    "path": (_PATH, "a file or folder path"),
    "columns": ((Mapping, type(None)), "a mapping of roles to column names, or None"),
    "pairs": ((str, os.PathLike, Iterable), "a JSONL path or an iterable of pairs"),
}


def _check_arguments(arguments: Mapping[str, Any]) -> None:
    """A wrong type is one UserError naming the argument, before any work, not a TypeError from deep in
    the engine (or, worse, after a model has run)."""
    for argument, value in arguments.items():
        if argument == "judges":
            _names(value)
        elif argument in _KINDS:
            kinds, what = _KINDS[argument]
            # bool is an int to isinstance: seed=True is a slip, not a seed
            if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                raise UserError(f"{argument} must be {what}, not {type(value).__name__} {value!r}",
                                where=argument, fix=f"pass {argument}= as {what}")


def _names(judges: str | Sequence[str]) -> tuple[str, ...]:
    """judges="refusal" means one judge, not seven one-letter ones. Each must be a registered judge."""
    from tunesafe import judges as builtins  # noqa: F401  (registers the built-ins)
    from tunesafe.judges.base import registry

    names = (judges,) if isinstance(judges, str) else judges
    if not isinstance(names, Sequence) or not all(isinstance(n, str) for n in names):
        raise UserError(f"judges must be a judge name or a list of them, not {judges!r}", where="judges",
                        fix='pass judges="default" or judges=["default", "refusal"]')
    unknown = [n for n in names if n not in registry]
    if unknown or not names:
        raise UserError(f"unknown judge {', '.join(map(repr, unknown))}" if unknown else "no judge given",
                        where="judges", fix=f"use one or more of: {', '.join(registry.names())}")
    return tuple(names)


def _policy(policy: PathLike | Policy | None) -> Policy:
    from tunesafe.policy import Policy, default_policy, load_policy

    if isinstance(policy, Policy):
        return policy
    if not isinstance(policy, (str, os.PathLike, type(None))):
        raise UserError(f"policy must be a YAML path, a Policy or None, not {type(policy).__name__}",
                        where="policy", fix="pass policy= as a path to a policy file (tunesafe policy init)")
    return default_policy() if policy is None else load_policy(Path(policy))


def _pair_inputs(pairs: Iterable[Mapping[str, Any] | JudgeInput]) -> list[JudgeInput]:
    from tunesafe.judges.base import JudgeInput
    from tunesafe.judges.pairs import pair_from_row, require_pairs

    items = [p if isinstance(p, JudgeInput) else pair_from_row(p, f"pairs[{i}]", str(i + 1))
             for i, p in enumerate(pairs)]
    return require_pairs(items, "pairs")
