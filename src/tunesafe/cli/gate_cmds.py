"""`tunesafe gate`, `tunesafe compare` and `tunesafe policy init|validate`. Thin: parse, call
tunesafe.gating / tunesafe.policy, render. Exit codes: 0 pass, 1 fail, 2 usage/input error, 3
inconclusive."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from tunesafe.cli import eval_options as opts
from tunesafe.cli.common import (
    JSON_OPTION,
    check_out_folder,
    console,
    db_url,
    err_console,
    print_json,
    warn_if_not_in_inventory,
)
from tunesafe.cli.groups import AFTER, BEFORE, policy_app
from tunesafe.engine.runner import EvalConfig
from tunesafe.engine.targets import check_new_run
from tunesafe.errors import UserError
from tunesafe.evidence.workspace import open_store
from tunesafe.policy import Policy, default_policy, default_policy_text, load_policy
from tunesafe.production.inventory import ATTEST_FLAG, check_attestation_named
from tunesafe.reports import decision_json
from tunesafe.reports.view import judge_checks

if TYPE_CHECKING:
    from tunesafe.analysis.escalate import EscalationRef
    from tunesafe.gating import GateOutcome

DEFAULT_OUT = Path("tunesafe-report")
DEFAULT_POLICY_FILE = Path("tunesafe-policy.yaml")
STYLE = {"pass": "bold green", "fail": "bold red", "inconclusive": "bold yellow"}

POLICY_OPTION = typer.Option(None, "--policy", help="Policy YAML (default: the built-in policy that "
                             "`tunesafe policy init` writes).")
BASE_NAME_OPTION = typer.Option(None, "--base-name", help="Inventory name of the base model.")
CANDIDATE_NAME_OPTION = typer.Option(None, "--candidate-name", help="Inventory name of the candidate: "
                                     "the decision is recorded against it.")
ATTEST_OPTION = typer.Option(False, ATTEST_FLAG, help="The candidate (or base) is an endpoint serving the "
                             "weights of the --candidate-name (--base-name) version, or local files of an "
                             "endpoint version: record the decision against that version, marked as "
                             "attested, though tunesafe cannot hash an endpoint's weights.")
ESCALATE_OPTION = typer.Option(None, "--escalate-judge", metavar="REF", help="Judge the discordant and "
                               "uncertain pairs again with a stronger LLM judge and decide on its verdicts: "
                               "strongreject@MODEL_REF, llama-guard@MODEL_REF, or a model ref (StrongREJECT "
                               "rubric), e.g. strongreject@openai:judge@http://host/v1.")


def gate_command(
    ctx: typer.Context,
    base: str = typer.Option(..., "--base", help="Model ref of the base (pre-fine-tuning) model."),
    candidate: str = typer.Option(..., "--candidate", help="Model ref of the fine-tuned candidate."),
    policy_file: Path = POLICY_OPTION,
    suite: str = opts.SUITE,
    attacks: str = opts.ATTACKS,
    judge: list[str] = typer.Option(["default"], "--judge", help="Judge name; repeat for several (the "
                                    "gate keeps the worst outcome among the policy's required judges)."),
    attacker: str = opts.ATTACKER,
    limit: int = opts.LIMIT,
    seed: int = opts.SEED,
    concurrency: int = opts.CONCURRENCY,
    max_new_tokens: int = opts.MAX_NEW_TOKENS,
    temperature: float = opts.TEMPERATURE,
    no_cache: bool = opts.NO_CACHE,
    max_pause: float = opts.MAX_PAUSE,
    executor: str = opts.EXECUTOR,
    ray_address: str = opts.RAY_ADDRESS,
    workers: int = opts.WORKERS,
    base_name: str = BASE_NAME_OPTION,
    candidate_name: str = CANDIDATE_NAME_OPTION,
    attest_weights: bool = ATTEST_OPTION,
    escalate_judge: str = ESCALATE_OPTION,
    out: Path = typer.Option(DEFAULT_OUT, "--out", help="Folder for report.html, summary.md, decision.json."),
    progress: bool = opts.PROGRESS,
    as_json: bool = JSON_OPTION,
) -> None:
    """Gate a fine-tuned model: evaluate base and candidate on identical attempts (reusing stored runs),
    compare them pairwise, decide against the policy, record the decision and write the reports."""
    policy = _policy(policy_file)
    escalate = _escalation(escalate_judge)  # a bad ref fails now, not after both evaluations
    check_out_folder(out, "--out")  # likewise a report folder that cannot be made
    config = EvalConfig(suite=suite, attacks=attacks, judges=tuple(judge), limit=limit, seed=seed,
                        concurrency=concurrency, max_new_tokens=max_new_tokens, temperature=temperature,
                        use_cache=not no_cache, attacker_ref=attacker, max_pause=max_pause,
                        executor=executor, ray_address=ray_address, workers=workers)
    # before a new store is made for a --db that did not exist
    check_new_run(config, base, candidate)
    check_attestation_named(attest_weights, (base_name, candidate_name), ("--candidate-name", "--base-name"))
    with open_store(db_url(ctx)) as store:
        from tunesafe.gating import gate_models  # numpy/scipy load only when a gate actually runs

        outcome = asyncio.run(gate_models(store, base, candidate, policy, config, base_name=base_name,
                                          candidate_name=candidate_name, out_dir=out,
                                          progress=progress and not as_json, notify=_note,
                                          escalate=escalate, regressions_dir=out,
                                          attest_weights=attest_weights))
        warn_if_not_in_inventory(store, base_name, candidate_name)
    _finish(outcome, as_json)


def compare_command(
    ctx: typer.Context,
    run_a: str = typer.Argument(..., metavar="RUN_A",
                                help="Run id of the base model (see `tunesafe runs list`)."),
    run_b: str = typer.Argument(..., metavar="RUN_B", help="Run id of the candidate model."),
    policy_file: Path = POLICY_OPTION,
    base_name: str = BASE_NAME_OPTION,
    candidate_name: str = CANDIDATE_NAME_OPTION,
    attest_weights: bool = ATTEST_OPTION,
    escalate_judge: str = ESCALATE_OPTION,
    out: Path = typer.Option(None, "--out", help="Also write report.html, summary.md, decision.json here."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Compare two stored runs pairwise and decide against the policy (the gate without evaluating). A
    base judged by other judge versions than the candidate is re-judged from its stored answers."""
    policy = _policy(policy_file)
    escalate = _escalation(escalate_judge)
    with open_store(db_url(ctx), must_exist=True) as store:
        from tunesafe.gating import compare_runs

        outcome = asyncio.run(compare_runs(store, run_a, run_b, policy, base_name=base_name,
                                           candidate_name=candidate_name, out_dir=out, notify=_note,
                                           escalate=escalate, attest_weights=attest_weights))
        warn_if_not_in_inventory(store, base_name, candidate_name)
    _finish(outcome, as_json)


def policy_init(
    path: Path = typer.Argument(DEFAULT_POLICY_FILE, help="Where to write the policy."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write the commented default policy."""
    if path.exists() and not force:
        raise UserError("file exists", where=str(path), fix="pass --force to overwrite it, or another path")
    try:
        path.write_text(default_policy_text(), encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write the policy: {exc.strerror or exc}", where=str(path),
                        fix="pass a writable path") from None
    console.print(f"wrote {path} (policy hash {default_policy().hash()[:16]})", highlight=False)


def policy_validate(path: Path = typer.Argument(..., help="Policy YAML to check."),
                    as_json: bool = JSON_OPTION) -> None:
    """Check a policy file; exit 2 with the key path and the fix when it is invalid."""
    policy = load_policy(path)
    if as_json:
        print_json({"valid": True, "policy_hash": policy.hash(), "policy": policy.model_dump(mode="json")})
        return
    console.print(f"{path}: valid (policy hash {policy.hash()})", highlight=False)


def _policy(path: Path | None) -> Policy:
    return default_policy() if path is None else load_policy(path)


def _escalation(ref: str | None) -> EscalationRef | None:
    from tunesafe.analysis.escalate import parse_escalation_ref

    return None if ref is None else parse_escalation_ref(ref)


def _note(line: str) -> None:
    err_console.print(line, highlight=False, soft_wrap=True)




def _finish(outcome: GateOutcome, as_json: bool) -> None:
    decision, body = outcome.decision, outcome.body
    if as_json:
        print_json({**decision_json(body, outcome.record),
                    "reports": {fmt: str(p) for fmt, p in outcome.reports.items()}})
    else:
        base, cand = body["base"], body["candidate"]
        console.print(f"[{STYLE[decision.verdict]}]{decision.verdict.upper()}[/] (exit {decision.exit_code}) "
                      + escape(f"{cand['model_ref']} vs {base['model_ref']}, judge {body['judge']}, "
                               f"runs {base['run_id']} / {cand['run_id']}"), highlight=False, markup=True)
        for reason in decision.reasons:
            console.print(f"  - {reason}", highlight=False, soft_wrap=True)
        for line in judge_checks(body):
            console.print(f"  judge check: {line}", highlight=False, soft_wrap=True)
        err_console.print(f"decision recorded as evidence #{outcome.record.id}", highlight=False)
        for path in outcome.reports.values():
            err_console.print(f"wrote {path}", highlight=False)
    raise typer.Exit(decision.exit_code)


def register(app: typer.Typer) -> None:
    app.command("gate", rich_help_panel=AFTER)(gate_command)
    app.command("compare", rich_help_panel=AFTER)(compare_command)
    policy_app.command("init", rich_help_panel=BEFORE)(policy_init)
    policy_app.command("validate", rich_help_panel=BEFORE)(policy_validate)
