"""The plan of a run for a given config and target: the suite and attacks resolved, the attempts expanded,
and the attacks the target cannot run left out."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from tunesafe.engine.config import EvalConfig
from tunesafe.engine.plan import Plan, build_plan, left_out_line
from tunesafe.errors import UserError
from tunesafe.types import Behavior

if TYPE_CHECKING:
    from tunesafe.attacks.base import AttackImpl
    from tunesafe.models.refs import ModelRef

BENIGN_ATTACK = "direct_request"  # benign/borderline prompts are asked as written (see plan.py)


@dataclass(frozen=True)
class Planned:
    """What a config asks for, before any model is loaded (also what --dry-run shows)."""

    suite_name: str
    suite_version: str
    suite_hash: str
    attacks: tuple[AttackImpl, ...]
    benign_attacks: tuple[AttackImpl, ...]
    plan: Plan
    skipped: tuple[Mapping[str, str], ...] = ()

    @property
    def behaviors(self) -> dict[str, Behavior]:
        return {b.id: b for b in self.plan.behaviors}


def plan_evaluation(config: EvalConfig, *, capabilities: Any = None,
                    replayable: Collection[str] = ()) -> Planned:
    """Load the suite, resolve the attacks and expand the plan; with `capabilities` (of the target),
    restricted to what the target can run (see `for_target`). `replayable` names the attacks whose
    frozen attacker prompts the replayed run holds (see `replayable_attacks`): they need no attacker."""
    from tunesafe.attacks import resolve
    from tunesafe.attacks.library import warn_once
    from tunesafe.suite import load_suite

    suite = load_suite(config.suite)
    attacks = resolve(config.attacks, attacker_available=config.attacker_ref is not None,
                      replayable=replayable)
    benign = [a for a in attacks if a.meta.name == BENIGN_ATTACK] or resolve(BENIGN_ATTACK)
    benign += [a for a in attacks if getattr(a, "scope", None)]  # agent families run their benign cases
    plan = build_plan(suite.behaviors, attacks, seed=config.seed, limit=config.limit, benign_attacks=benign)
    for entry in plan.skipped_behaviors:
        warn_once(left_out_line(entry))
    planned = Planned(suite_name=suite.name, suite_version=suite.version, suite_hash=suite.content_hash,
                      attacks=tuple(attacks), benign_attacks=tuple(benign), plan=plan)
    return planned if capabilities is None else for_target(planned, config.attacks, capabilities)


def for_target(planned: Planned, spec: str, capabilities: Any) -> Planned:
    """The plan without the attacks the target cannot run (e.g. prefilling over HTTP): left out and
    recorded when they came from "all"/"template", a UserError when the spec names them."""
    named = {t.strip() for t in spec.split(",")}
    skipped: dict[str, str] = {}
    for attack in planned.attacks:
        reason = attack.requires(capabilities)
        if reason is not None and named & {attack.meta.name, attack.meta.family}:
            raise UserError(reason, where="--attacks", fix="drop this attack or use a backend that has it")
        if reason is not None:
            skipped[attack.meta.name] = reason
    if not skipped:
        return planned
    benign = {a.meta.name for a in planned.benign_attacks if not getattr(a, "scope", None)}
    kept = tuple(a for a in planned.plan.attempts if a.attack not in skipped or
                 (a.kind != "harmful" and a.attack in benign))
    return replace(planned, attacks=tuple(a for a in planned.attacks if a.meta.name not in skipped),
                   plan=replace(planned.plan, attempts=kept),
                   skipped=tuple({"attack": name, "reason": why} for name, why in skipped.items()))


def dry_run_plan(config: EvalConfig, model_ref: str | None, replayable: Collection[str] = ()) -> Planned:
    """The plan `--dry-run` shows, without loading weights or sending a request: an HTTP model is opened
    (cheap, no call) so attacks it cannot run are left out; a local model is not loaded, so its plan
    keeps every attack (an upper bound)."""
    planned = plan_evaluation(config, replayable=replayable)
    if model_ref is None or check_ref(model_ref).local:  # a local model's plan keeps every attack
        return planned
    from tunesafe.models import load_model

    return for_target(planned, config.attacks, load_model(model_ref).capabilities)


def check_ref(model_ref: str) -> ModelRef:
    """Parse a model ref and check, without loading anything, that a local model is there."""
    from tunesafe.models import parse_ref

    ref = parse_ref(model_ref)
    if not ref.local:
        return ref
    if ref.scheme in ("hf", "gguf"):  # a missing path is checked without loading (embedded: no download)
        from tunesafe.models.hf import resolve_weights

        resolve_weights(ref)
    elif ref.scheme == "embedded":  # the name only: the weights may not be installed yet
        from tunesafe.models.embedded import embedded_spec

        embedded_spec(ref.target)
    return ref


def check_judges(config: EvalConfig) -> None:
    """Unknown judges and a judge model no judge uses fail now, not after the model loaded."""
    from tunesafe import judges  # noqa: F401  (registers the built-ins)
    from tunesafe.judges.base import check_judge_model, registry

    for name in config.judges:
        registry.get(name)
    check_judge_model(config.judges, config.judge_model_ref)


def check_new_run(config: EvalConfig, *model_refs: str) -> None:
    """What a new run refuses before it opens the store: unknown judges, a bad suite or attack spec, a bad
    model ref (the attacker's and judge model's too) or a local model that is not there. A command checks
    this first, so that bad input leaves no new, empty store behind at a `--db` path that did not exist."""
    check_judges(config)
    plan_evaluation(config)
    for ref in (*model_refs, config.attacker_ref, config.judge_model_ref):
        if ref:
            check_ref(ref)
