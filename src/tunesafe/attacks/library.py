"""The attack registry and `resolve`, which turns a user's --attacks spec into attack objects.

Built-ins register on import of `tunesafe.attacks`; plugins register through the entry-point group
`tunesafe.attacks` (an AttackImpl instance, or a class that builds one with no arguments).
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from tunesafe.attacks.base import AttackImpl, families
from tunesafe.errors import UserError
from tunesafe.registry import Registry
from tunesafe.types import Attack

log = logging.getLogger(__name__)

registry: Registry[AttackImpl] = Registry("attacks")


def add(impl: AttackImpl) -> AttackImpl:
    registry.add(impl.meta.name, impl)
    return impl


def get(name: str) -> AttackImpl:
    return _instance(name, registry.get(name))


def all_attacks() -> list[AttackImpl]:
    """Every attack, in catalogue order of families (the baseline first), then by name; plugin families
    not in the catalogue come last."""
    order = {family: i for i, family in enumerate(families())}
    attacks = [_instance(name, obj) for name, obj in registry.items()]
    return sorted(attacks, key=lambda a: (order.get(a.meta.family, len(order)), a.meta.name))


def _instance(name: str, obj: object) -> AttackImpl:
    where, fix = "entry point group tunesafe.attacks", \
        "register an AttackImpl instance, or a subclass built with no arguments, whose `meta` is an Attack"
    if isinstance(obj, type) and issubclass(obj, AttackImpl):
        try:
            obj = obj()
        except Exception as exc:  # plugin code: whatever it raises is the plugin's fault, not a crash of ours
            raise UserError(f"attack plugin '{name}' could not be built: {type(exc).__name__}: {exc}",
                            where=where, fix=fix) from exc
    # Every caller reads meta.name / meta.family: a wrong `meta` would surface later as an AttributeError.
    if not isinstance(obj, AttackImpl) or not isinstance(getattr(obj, "meta", None), Attack):
        raise UserError(f"attack plugin '{name}' is not an AttackImpl with Attack metadata",
                        where=where, fix=fix)
    return obj


def resolve(spec: str, *, attacker_available: bool = True,
            replayable: Collection[str] = ()) -> list[AttackImpl]:
    """Attacks named by `spec`: "all", "template" (every attack that needs no attacker model), or a comma
    list of family and attack names. Order follows the spec, duplicates are dropped.

    Without an attacker model (`attacker_available=False`), attacker-driven attacks can still run when
    their attacker prompts are replayed from an earlier run (`replayable`: the names that run planned).
    "all" leaves out the others with one warning, while naming one explicitly is a UserError: a requested
    attack never silently disappears.
    """
    attacks = all_attacks()
    family_names = sorted({a.meta.family for a in attacks})

    def unavailable(attack: AttackImpl) -> bool:
        return attack.meta.needs_attacker and not attacker_available and attack.meta.name not in replayable

    chosen: dict[str, AttackImpl] = {}
    terms = [t.strip() for t in spec.split(",") if t.strip()]
    if not terms:
        raise UserError("empty attack spec", where="--attacks",
                        fix="use all, template, or family/attack names")
    for term in terms:
        if term == "all":
            skipped = [a.meta.name for a in attacks if unavailable(a)]
            if skipped:
                warn_once(f"no attacker model: skipping attacker-driven attacks {', '.join(skipped)} "
                           "(pass --attacker REF to run them)")
            matched = [a for a in attacks if not unavailable(a)]
        elif term == "template":
            matched = [a for a in attacks if not a.meta.needs_attacker]
        else:
            matched = [a for a in attacks if term in (a.meta.family, a.meta.name)]
            if not matched:
                raise UserError(f"unknown attack or family '{term}'", where="--attacks",
                                fix=f"use all, template, a family ({', '.join(family_names)}) "
                                    "or a name from `tunesafe attacks list`")
            needy = [a.meta.name for a in matched if unavailable(a)]
            if needy:
                raise UserError(f"{', '.join(needy)} need an attacker model", where="--attacks",
                                fix="pass an attacker model (--attacker REF) or drop these attacks")
        for attack in matched:
            chosen.setdefault(attack.meta.name, attack)
    return list(chosen.values())


_warned: set[str] = set()


def warn_once(message: str) -> None:
    """A gate plans each side more than once (reuse check, run); the user needs to read a skip once."""
    if message not in _warned:
        _warned.add(message)
        log.warning(message)
