"""The framework ids (OWASP LLM Top 10, MITRE ATLAS) an evaluation run evidences: those of the attack
families it ran (tunesafe/attacks/families.yaml) and of the judges that decided it (judge registry
metadata). Read from the run's stored config, so a run is described as it was made."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunesafe.errors import UserError


def evaluated_frameworks(run_body: Mapping[str, Any]) -> dict[str, list[str]]:
    """{"owasp": ids, "atlas": ids} of a `run` record body, sorted."""
    from tunesafe.attacks.base import families
    from tunesafe.judges.base import judge_frameworks

    config = run_body.get("config") or {}
    found: dict[str, set[str]] = {"owasp": set(), "atlas": set()}
    catalogue = families()
    for attack in config.get("attacks", ()):
        entry = catalogue.get(str(attack.get("family"))) or {}
        for key in found:
            found[key].update(entry.get(key, ()))
    for judge in config.get("judges", ()):
        try:
            ids = judge_frameworks(str(judge.get("name")))
        except UserError:  # a plugin judge not installed here: its ids are unknown, not guessed
            continue
        for key in found:
            found[key].update(ids.get(key, ()))
    return {key: sorted(values) for key, values in found.items()}
