"""Attack families and judges carry their OWASP LLM Top 10 and MITRE ATLAS ids (version-qualified), and an
evaluation run is described by the ids of the families it ran and the judges that decided it."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tunesafe.attacks.base import families
from tunesafe.attacks.library import all_attacks
from tunesafe.governance.frameworks import evaluated_frameworks
from tunesafe.judges.base import Judge, judge_frameworks, registry

OWASP = re.compile(r"^(LLM\d\d:20(25|26)|ASI\d\d)$")  # LLM Top 10, Agentic Top 10 2026
ATLAS = re.compile(r"^AML\.T\d{4}(\.\d{3})?$")
BUILT_IN = ("refusal", "default", "classifier", "harm", "strongreject", "llama-guard", "ensemble")


def well_formed(ids: dict[str, Any]) -> bool:
    return (bool(ids["owasp"]) and bool(ids["atlas"]) and all(OWASP.match(i) for i in ids["owasp"])
            and all(ATLAS.match(i) for i in ids["atlas"]))


def test_every_built_in_judge_and_attack_carries_framework_ids() -> None:
    for name in BUILT_IN:
        assert well_formed(judge_frameworks(name)), name
    assert "AML.T0048" in judge_frameworks("harm")["atlas"]  # rates the content: external harms
    for family, entry in families().items():
        assert well_formed({"owasp": entry["owasp"], "atlas": entry["atlas"]}), family
    for attack in all_attacks():
        assert well_formed({"owasp": attack.meta.owasp, "atlas": attack.meta.atlas}), attack.meta.name


def test_run_is_described_by_its_families_and_judges(monkeypatch: pytest.MonkeyPatch) -> None:
    def plugin(**_opts: Any) -> Judge:
        raise AssertionError("never built: the ids are read from the registry")

    registry.names()  # entry points loaded first, so the plugin below is the only change (and undone)
    monkeypatch.setitem(registry._items, "team-judge-without-ids", plugin)
    body = {"config": {"attacks": [{"name": "base64", "family": "encoding_obfuscation", "version": "1"},
                                   {"name": "direct", "family": "direct_request", "version": "1"}],
                       "judges": [{"name": "harm", "version": "1"},
                                  {"name": "team-judge-without-ids", "version": "1"},
                                  {"name": "not-installed-here", "version": "1"}]}}
    ids = evaluated_frameworks(body)
    assert ids == {"owasp": ["LLM01:2025"],
                   "atlas": ["AML.T0048", "AML.T0051.000", "AML.T0054", "AML.T0068"]}
