"""`tunesafe eval` and `tunesafe runs list|show`. Thin: parse, call tunesafe.engine, render."""

from __future__ import annotations

import asyncio
import math
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from tunesafe.analysis.metrics import Summary, summarize
from tunesafe.cli import eval_options as opts
from tunesafe.cli.common import JSON_OPTION, console, db_url, err_console, print_json, print_rows
from tunesafe.cli.groups import AFTER, runs_app
from tunesafe.engine import estimate as estimates
from tunesafe.engine.plan import left_out_line
from tunesafe.engine.results import list_runs, load_history, load_results, load_run
from tunesafe.engine.runner import EvalConfig, evaluate, in_inventory, replayable_attacks
from tunesafe.engine.targets import check_judges, check_new_run, dry_run_plan
from tunesafe.errors import EndpointUnavailable, ReplicasDisagree, UserError
from tunesafe.evidence.workspace import open_store
from tunesafe.production.inventory import ATTEST_FLAG, check_attestation_named
from tunesafe.reports.view import percent_apart
from tunesafe.types import Rate, RecordType


def eval_command(
    ctx: typer.Context,
    model: str = typer.Argument(None, help="Model ref, e.g. embedded:qwen2.5-coder-0.5b, "
                                "openai:NAME@http://HOST/v1, hf:PATH[+ADAPTER], gguf:PATH. "
                                "Not needed with --resume."),
    suite: str = opts.SUITE,
    attacks: str = opts.ATTACKS,
    judge: list[str] = typer.Option(["default"], "--judge", help="Judge name; repeat for several "
                                    "(the first is primary)."),
    judge_model: str = typer.Option(None, "--judge-model", help="Model ref behind LLM judges "
                                    "(--judge strongreject / llama-guard)."),
    attacker: str = opts.ATTACKER,
    replay_from: str = typer.Option(None, "--replay-from", help="Replay the frozen attacker prompts of "
                                    "this run (pairs two models on identical attempts)."),
    limit: int = opts.LIMIT,
    seed: int = opts.SEED,
    concurrency: int = opts.CONCURRENCY,
    max_new_tokens: int = opts.MAX_NEW_TOKENS,
    temperature: float = opts.TEMPERATURE,
    no_cache: bool = opts.NO_CACHE,
    dry_run: bool = typer.Option(False, "--dry-run", help="Show attempts per family and the estimated "
                                 "cost and time; call no model."),
    usd_per_mtok: float = typer.Option(None, "--usd-per-mtok", help="With --dry-run: price per million "
                                       "tokens, to estimate the cost."),
    resume: str = typer.Option(None, "--resume", help="Complete an interrupted run with its stored "
                               "config (an option given with another value is refused)."),
    retry_errors: bool = typer.Option(False, "--retry-errors", help="With --resume: run the errored "
                                      "attempts again; the new results count, the old stay as history."),
    max_pause: float = opts.MAX_PAUSE,
    executor: str = opts.EXECUTOR,
    ray_address: str = opts.RAY_ADDRESS,
    workers: int = opts.WORKERS,
    policy: Path = typer.Option(None, "--policy", help="Policy YAML whose max_error_rate the run is held "
                                "to (default: the built-in policy); above it eval exits 3."),
    name: str = typer.Option(None, "--name", help="Inventory name of the model: also records a "
                             "safety evaluation for it (MODEL must be that name's current version)."),
    attest_weights: bool = typer.Option(False, ATTEST_FLAG, help="MODEL is an endpoint serving the "
                                        "weights of the --name version's local files (or the reverse): "
                                        "record the evaluation against that version, marked as attested, "
                                        "though tunesafe cannot hash an endpoint's weights."),
    progress: bool = opts.PROGRESS,
    as_json: bool = JSON_OPTION,
) -> None:
    """Run an adversarial safety evaluation: suite x attacks on MODEL, judged, stored as it goes."""
    config = EvalConfig(suite=suite, attacks=attacks, judges=tuple(judge), limit=limit, seed=seed,
                        concurrency=concurrency, max_new_tokens=max_new_tokens, temperature=temperature,
                        use_cache=not no_cache, attacker_ref=attacker, replay_from=replay_from,
                        judge_model_ref=judge_model, max_pause=max_pause, executor=executor,
                        ray_address=ray_address, workers=workers)
    max_error_rate = _max_error_rate(policy)  # a bad policy file fails now, before any model call
    if resume is None:  # a resumed run judges with its stored judges: the runner checks those
        check_judges(config)  # the dry run refuses what the real run would
    if dry_run:
        _dry_run(ctx, model, config, usd_per_mtok, as_json)
        return
    if model is None and resume is None:
        raise UserError("missing MODEL", where="tunesafe eval",
                        fix="pass a model ref (e.g. embedded:qwen2.5-coder-0.5b) or --resume RUN")
    # --resume and --replay-from name runs of an existing store; a new run refuses bad input before the
    # store is opened: a --db that did not exist would be left behind as a new, empty store
    stored_runs = resume is not None or replay_from is not None
    if not stored_runs:
        check_new_run(config, model)
        check_attestation_named(attest_weights, [name], ["--name"])
    started: list[str] = []

    def announce(run_id: str, planned: int, done: int) -> None:
        started.append(run_id)
        err_console.print(f"run [bold]{escape(run_id)}[/]: {planned} attempts planned, {done} already done",
                          highlight=False, markup=True)

    with open_store(db_url(ctx), must_exist=stored_runs) as store:
        if name and not in_inventory(store, name):
            err_console.print(f"warning: model '{name}' is not in the inventory: the run is recorded under "
                              "that name, but no safety evaluation is linked (add it with `tunesafe models "
                              "add`)", highlight=False)
        try:
            report = asyncio.run(evaluate(store, model, config, resume=resume, model_name=name,
                                          progress=progress and not as_json, on_start=announce,
                                          retry_errors=retry_errors, explicit=_given_options(ctx),
                                          check_name=True, attest_weights=attest_weights))
        except KeyboardInterrupt:
            if started:
                err_console.print(f"interrupted: resume with `{_resume_command(ctx, started[0])}`")
            raise typer.Exit(130) from None
        except EndpointUnavailable as exc:
            if not started or isinstance(exc, ReplicasDisagree):  # its own fix: a new run, not a resume
                raise
            err_console.print(f"stopped: {exc.where}: {exc.message}; everything done so far is kept, resume "
                              f"with `{_resume_command(ctx, started[0])}` when the endpoint is back",
                              highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        info = load_run(store, report.run_id)
    if as_json:
        print_json({"run": info.as_dict(), "summary": report.summary, "session": report.stats})
    else:
        if report.summary is not None:
            _print_summary(report.summary, title=f"run {info.id} ({info.model_ref})")
        if report.stats:
            s = report.stats
            err_console.print(f"{s['attempts']} attempts in {s['wall_s']:.1f} s ({s['attempts_per_s']} /s), "
                              f"{s['errors']} errors, {s['cache_hits']} cached", highlight=False)
    error_rate = report.summary.overall.error.rate if report.summary is not None else None
    if error_rate is not None and error_rate > max_error_rate:
        shown, bound = percent_apart(error_rate, max_error_rate)  # never "9.7% exceeds 9.7%"
        err_console.print(f"warning: error rate {shown}% exceeds max_error_rate "
                          f"{bound}%: the run is inconclusive (exit 3); fix the cause, then "
                          f"`{_resume_command(ctx, info.id)} --retry-errors`",
                          highlight=False, soft_wrap=True)
        raise typer.Exit(3)


# `tunesafe eval` options -> the EvalConfig fields they set
_CONFIG_FIELDS = {"suite": "suite", "attacks": "attacks", "judge": "judges", "judge_model": "judge_model_ref",
                  "attacker": "attacker_ref", "replay_from": "replay_from", "limit": "limit", "seed": "seed",
                  "max_new_tokens": "max_new_tokens", "temperature": "temperature"}


def _given_options(ctx: typer.Context) -> list[str]:
    """The EvalConfig fields whose options the command line gave (not left at their defaults)."""
    return [field for param, field in _CONFIG_FIELDS.items()
            if (source := ctx.get_parameter_source(param)) is not None and source.name != "DEFAULT"]


def _max_error_rate(path: Path | None) -> float:
    from tunesafe.policy.load import default_policy, load_policy

    return float((load_policy(path) if path is not None else default_policy()).max_error_rate)


def _resume_command(ctx: typer.Context, run_id: str) -> str:
    """The exact command that resumes the run, naming the store when it was not found by the workspace
    (a URL with credentials is not echoed)."""
    db = db_url(ctx)
    store = "" if db is None else f"--db {'<store URL>' if '@' in db else shlex.quote(db)} "
    return f"tunesafe {store}eval --resume {run_id}"


def _dry_run(ctx: typer.Context, model: str | None, config: EvalConfig, usd_per_mtok: float | None,
             as_json: bool) -> None:
    from tunesafe.models import parse_ref

    if usd_per_mtok is not None and not (math.isfinite(usd_per_mtok) and usd_per_mtok >= 0):
        raise UserError(f"not a price: {usd_per_mtok}", where="--usd-per-mtok",
                        fix="pass the price in USD per million tokens, 0 or more (e.g. 0.6)")
    planned = dry_run_plan(config, model, _replayable(ctx, config))
    local = parse_ref(model).local if model else True
    rate = _measured_rate(ctx, model) if model else None
    est = estimates.estimate(planned.plan, max_new_tokens=config.max_new_tokens,
                             concurrency=config.concurrency, local=local, measured_attempts_per_s=rate,
                             usd_per_mtok=usd_per_mtok)
    rows = [{"family": f.family, "attempts": f.attempts, "calls (max)": f.calls,
             "tokens (max)": f.prompt_tokens + f.completion_tokens} for f in est.families]
    if as_json:
        print_json({"suite": {"name": planned.suite_name, "version": planned.suite_version},
                    "attempts": est.attempts, "per_kind": planned.plan.per_kind(), "families": est.families,
                    "calls_max": est.calls, "tokens_max": est.tokens, "seconds": est.seconds,
                    "basis": est.basis, "usd": est.usd, "skipped_attacks": list(planned.skipped),
                    "skipped_behaviors": list(planned.plan.skipped_behaviors)})
        return
    print_rows(rows, ["family", "attempts", "calls (max)", "tokens (max)"],
               title=f"dry run: suite {planned.suite_name} v{planned.suite_version}")
    kinds = ", ".join(f"{n} {k}" for k, n in planned.plan.per_kind().items())
    console.print(f"{est.attempts} attempts ({kinds}); at most {est.calls} target calls, {est.tokens} tokens",
                  highlight=False)
    cost = f"; about ${est.usd:.2f}" if est.usd is not None else " (pass --usd-per-mtok for a cost)"
    console.print(f"estimated time {_duration(est.seconds)} ({est.basis}){cost}", highlight=False)
    for skip in planned.skipped:
        console.print(f"{skip['attack']}: left out ({skip['reason']})", highlight=False, soft_wrap=True)
    for entry in planned.plan.skipped_behaviors:
        console.print(left_out_line(entry), highlight=False, soft_wrap=True)


def _replayable(ctx: typer.Context, config: EvalConfig) -> frozenset[str]:
    if config.replay_from is None:
        return frozenset()
    with open_store(db_url(ctx), must_exist=True) as store:
        return replayable_attacks(store, config)


def _measured_rate(ctx: typer.Context, model: str) -> float | None:
    try:
        store = open_store(db_url(ctx), must_exist=True)
    except UserError:  # a dry run works without a workspace; it just has no measurement to go on
        return None
    with store:
        return estimates.measured_rate((r.body for r in store.records(type=RecordType.RUN)), model)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _fmt(rate: Rate) -> str:
    if rate.rate is None:
        return "-"
    assert rate.low is not None and rate.high is not None
    return f"{rate.rate:.1%} [{100 * rate.low:.1f}-{100 * rate.high:.1f}] {rate.k}/{rate.n}"


def _print_summary(summary: Summary, *, title: str) -> None:
    table = Table(title=Text(title))
    table.add_column("group", no_wrap=True)
    # Only judges with a calibrated confidence mark verdicts uncertain: no column when none did.
    uncertain = any(g.uncertain for g in summary.groups.values())
    columns = ("n", "ASR", "refusal", "over-refusal", "errors", "degenerate", "blocked")
    for column in (*columns, "uncertain") if uncertain else columns:
        table.add_column(column, overflow="fold")  # wrap a narrow terminal's cells, never cut an interval
    for key, g in summary.groups.items():
        cells: list[str | Text] = [Text(key), str(g.n), _fmt(g.asr), _fmt(g.refusal), _fmt(g.over_refusal),
                                   _fmt(g.error), _fmt(g.degenerate), _fmt(g.blocked)]
        table.add_row(*cells, *([str(g.uncertain)] if uncertain else []))
    console.print(table)
    console.print("rate [95% interval] k/n. ASR and refusal over harmful attempts, over-refusal over benign "
                  "and borderline ones; errors are left out of those and counted on their own. Blocked: the "
                  "deployment declined (provider filter or refusal field), counted as refused."
                  + (" Uncertain: verdicts the judge doubts, counted in their best-guess outcome."
                     if uncertain else ""), style="dim")


def runs_list(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Evaluation runs in the store, oldest first."""
    with open_store(db_url(ctx), read_only=True) as store:
        runs = list_runs(store)
    rows: list[dict[str, Any]] = [{
        "id": r.id, "model": r.model_ref, "name": r.model_name, "suite": _suite_label(r.config),
        "status": r.status, "done": f"{r.n_done}/{r.n_planned}", "errors": r.n_errors,
        "created": r.created_at.isoformat(timespec="seconds")} for r in runs]
    if as_json:
        print_json([r.as_dict() for r in runs])
        return
    print_rows(rows, ["id", "model", "name", "suite", "status", "done", "errors", "created"], title="runs")


def runs_show(ctx: typer.Context,
              run_id: str = typer.Argument(..., help="Run id (see `tunesafe runs list`)."),
              as_json: bool = JSON_OPTION) -> None:
    """One run: provenance, progress and its metrics overall, per family, category and kind."""
    with open_store(db_url(ctx), read_only=True) as store:
        info = load_run(store, run_id)
        summary = summarize(load_results(store, run_id))
        replaced = len(load_history(store, run_id))
    if as_json:
        print_json({"run": info.as_dict(), "summary": summary, "replaced_results": replaced})
        return
    config = info.config
    lines = [
        ("model", f"{info.model_ref} (hash {info.model_hash[:16]})"),
        ("status", f"{info.status}: {info.n_done}/{info.n_planned} attempts, {info.n_errors} errors"
                   + (f" ({replaced} earlier results replaced by --retry-errors, kept as history)"
                      if replaced else "")),
        ("suite", _suite_label(config)),
        ("attacks", _names(config.get("attacks", []))),
        ("judges", _names(config.get("judges", []))),
        ("decoding", ", ".join(f"{k}={v}" for k, v in config.get("decoding", {}).items())),
        ("tool", str(config.get("tool_version"))),
    ]
    if config.get("rejudged_from"):
        lines.append(("re-judged from", f"run {config['rejudged_from']} (answers generated in run "
                                        f"{config.get('generated_in')})"))
    for label, value in lines:
        console.print(f"[bold]{label}:[/] {escape(value)}", highlight=False, soft_wrap=True, markup=True)
    if info.status != "complete":
        again = (f"re-judge run {source} again" if (source := config.get("rejudged_from"))
                 else f"resume with `{_resume_command(ctx, info.id)}`")
        console.print(f"incomplete: {again}", style="yellow", soft_wrap=True)
    _print_summary(summary, title=f"run {info.id}")


def _suite_label(config: Mapping[str, Any]) -> str:
    suite = config.get("suite") or {}
    return f"{suite.get('name')} v{suite.get('version')}"


def _names(items: Sequence[dict[str, Any]]) -> str:
    return ", ".join(f"{i['name']}@{i['version']}" for i in items)


def register(app: typer.Typer) -> None:
    app.command("eval", rich_help_panel=AFTER)(eval_command)
    runs_app.command("list")(runs_list)
    runs_app.command("show")(runs_show)
