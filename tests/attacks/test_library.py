"""The registry, resolve(), the family catalogue and the versioning guard."""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import textwrap
from pathlib import Path

import pytest

import tunesafe.attacks as attacks
from tunesafe.attacks.base import TemplateAttack, make_meta
from tunesafe.attacks.library import registry
from tunesafe.errors import UserError
from tunesafe.types import Behavior, canonical_json, sha256_hex

FINGERPRINTS = Path(__file__).with_name("fingerprints.json")
REFERENCE = Behavior(id="ref", text="Describe how to do the reference task", kind="harmful", category="ref")


def test_at_least_thirteen_families_with_framework_ids() -> None:
    catalogue = attacks.families()
    used = {a.meta.family for a in attacks.all_attacks()}
    assert len(used) >= 13 and used <= set(catalogue)
    for attack in attacks.all_attacks():
        meta = attack.meta
        assert meta.owasp and all(re.fullmatch(r"LLM\d\d:2025|ASI\d\d", x) for x in meta.owasp), meta.name
        assert meta.atlas and all(re.fullmatch(r"AML\.T\d{4}(\.\d{3})?", x) for x in meta.atlas), meta.name
        assert meta.version and meta.description
    assert attacks.get("indirect_tool_result").meta.atlas[0] == "AML.T0051.001"
    assert "ASI01" in attacks.get("indirect_tool_result").meta.owasp
    assert attacks.get("encoding_base64").meta.atlas[0] == "AML.T0068"


def test_resolve_specs() -> None:
    everything = attacks.resolve("all")
    template = attacks.resolve("template")
    assert everything[0].meta.name == "direct_request"
    assert {a.meta.name for a in template} == {a.meta.name for a in everything if not a.meta.needs_attacker}
    assert any(a.meta.needs_attacker for a in everything)
    names = [a.meta.name for a in attacks.resolve("encoding_obfuscation, direct_request,encoding_base64")]
    assert names == ["encoding_base64", "encoding_leetspeak", "encoding_rot13", "direct_request"]


def test_resolve_without_attacker(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    # the warning is said once per process: start from a process that has not said it yet, whichever
    # test said it before this one
    monkeypatch.setattr("tunesafe.attacks.library._warned", set())
    with caplog.at_level(logging.WARNING):
        chosen = attacks.resolve("all", attacker_available=False)
    assert chosen and not any(a.meta.needs_attacker for a in chosen)
    assert "pair_3" in caplog.text
    with pytest.raises(UserError, match="need an attacker model"):
        attacks.resolve("pair", attacker_available=False)


@pytest.mark.parametrize("spec", ["", " , ", "no_such_attack", "direct_request,nope"])
def test_resolve_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(UserError) as info:
        attacks.resolve(spec)
    assert info.value.where == "--attacks" and info.value.fix


def test_plugins_register_and_duplicates_are_refused() -> None:
    meta = make_meta("roleplay_persona", "roleplay_test_plugin", "1", "test plugin")
    plugin = TemplateAttack(meta, "As a pirate: {request}")
    attacks.library.add(plugin)
    try:
        assert attacks.get("roleplay_test_plugin") is plugin
        assert plugin in attacks.resolve("roleplay_persona")
        with pytest.raises(ValueError, match="registered twice"):
            attacks.library.add(TemplateAttack(meta, "Other: {request}"))
    finally:
        registry._items.pop("roleplay_test_plugin")
    with pytest.raises(ValueError, match="request"):
        TemplateAttack(meta, "no slot here")


def fingerprint(attack: attacks.AttackImpl) -> str:
    attempts = attack.expand(REFERENCE, 0)
    sent: list[object] = [[a.messages, a.prefill, a.params] for a in attempts]
    if attack.instructions():  # only attacker-driven attacks have any: other fingerprints stay as they were
        sent.append(list(attack.instructions()))
    return sha256_hex(canonical_json(sent))[:16]


def test_a_changed_template_bumps_its_version() -> None:
    """An attack's prompts may only change together with its version, because the version is part of the
    attempt id: old and new prompts must never pair up. After a deliberate bump, regenerate the file with
    TUNESAFE_UPDATE_FINGERPRINTS=1."""
    current = {
        a.meta.name: {"version": a.meta.version, "fingerprint": fingerprint(a)} for a in attacks.all_attacks()
    }
    if os.environ.get("TUNESAFE_UPDATE_FINGERPRINTS") == "1":
        FINGERPRINTS.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    recorded = json.loads(FINGERPRINTS.read_text())
    for name, now in current.items():
        assert name in recorded, f"new attack {name}: regenerate {FINGERPRINTS.name}"
        before = recorded[name]
        if now["version"] == before["version"]:
            assert now["fingerprint"] == before["fingerprint"], f"{name} changed: bump its version"
        else:
            pytest.fail(f"{name} is now version {now['version']}: regenerate {FINGERPRINTS.name}")


def test_entry_point_plugins_load_as_instances_or_classes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real installed-distribution layout (dist-info with entry_points.txt) on sys.path."""
    plugin = textwrap.dedent("""
        from tunesafe.attacks.base import TemplateAttack, make_meta

        INSTANCE = TemplateAttack(make_meta("roleplay_persona", "plugin_instance", "1", "x"),
                                  "Pirate: {request}")

        class Built(TemplateAttack):
            def __init__(self):
                super().__init__(make_meta("style_injection", "plugin_class", "1", "y"), "Haiku: {request}")
    """)
    (tmp_path / "ts_plugin_attacks.py").write_text(plugin)
    dist = tmp_path / "ts_plugin_attacks-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ts-plugin-attacks\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[tunesafe.attacks]\n"
        "plugin_instance = ts_plugin_attacks:INSTANCE\n"
        "plugin_class = ts_plugin_attacks:Built\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_loaded_entry_points", False)
    try:
        assert (
            attacks.get("plugin_instance").build(REFERENCE, {}, 0).messages[-1].content.startswith("Pirate:")
        )
        assert attacks.get("plugin_class").meta.family == "style_injection"
        assert {"plugin_instance", "plugin_class"} <= {a.meta.name for a in attacks.resolve("all")}
    finally:
        registry._items.pop("plugin_instance", None)
        registry._items.pop("plugin_class", None)


class _NeedsArguments(TemplateAttack):
    def __init__(self, template: str) -> None:
        super().__init__(make_meta("style_injection", "plugin_needs_args", "1", "z"), template)


class _MetaIsNotAnAttack(attacks.AttackImpl):
    meta = "not attack metadata"  # type: ignore[assignment]


@pytest.mark.parametrize(
    "plugin", [_NeedsArguments, _MetaIsNotAnAttack()], ids=["class-needs-args", "bad-meta"]
)
def test_a_broken_plugin_is_one_user_error_not_a_traceback(plugin: object) -> None:
    """A plugin class that cannot be built without arguments, or an instance whose `meta` is not attack
    metadata, must stop `attacks list`, `eval --attacks all`... with one clear error (exit 2)."""
    registry.add("broken_plugin", plugin)  # type: ignore[arg-type]
    try:
        calls = (lambda: attacks.get("broken_plugin"), lambda: attacks.resolve("all"), attacks.all_attacks)
        for call in calls:
            with pytest.raises(UserError, match="broken_plugin") as info:
                call()
            assert info.value.where == "entry point group tunesafe.attacks" and info.value.fix
    finally:
        registry._items.pop("broken_plugin")


# The taxonomy of /shared/reference/governance.md section 8: per entry, its OWASP LLM 2025 and ATLAS ids.
TAXONOMY = {
    "direct_request": ({"LLM01:2025"}, {"AML.T0051.000", "AML.T0048"}),
    "roleplay_persona": ({"LLM01:2025"}, {"AML.T0054", "AML.T0065"}),
    "prefix_injection_refusal_suppression": ({"LLM01:2025"}, {"AML.T0054", "AML.T0051.000"}),
    "encoding_obfuscation": ({"LLM01:2025"}, {"AML.T0068", "AML.T0054"}),
    "low_resource_translation": ({"LLM01:2025"}, {"AML.T0054", "AML.T0068"}),
    "past_tense_reformulation": ({"LLM01:2025"}, {"AML.T0054", "AML.T0065"}),
    "many_shot": ({"LLM01:2025"}, {"AML.T0054", "AML.T0065", "AML.T0051.000"}),
    "multi_turn_crescendo": ({"LLM01:2025"}, {"AML.T0054", "AML.T0080.001"}),
    "indirect_injection_tool_results": ({"LLM01:2025", "LLM06:2025", "LLM08:2025", "LLM05:2025"},
                                        {"AML.T0051.001", "AML.T0099", "AML.T0070", "AML.T0093", "AML.T0053",
                                         "AML.T0086"}),
    "prefilling": ({"LLM01:2025"}, {"AML.T0054", "AML.T0051.000"}),
}


def test_prompt_families_carry_the_ids_of_their_taxonomy_entry() -> None:
    """A family that names a taxonomy entry carries that entry's OWASP LLM and ATLAS ids (the agent
    families refine theirs per environment and are checked with the agents)."""
    checked = []
    for family, entry in attacks.families().items():
        if family.startswith("agent_") or entry["taxonomy_id"] is None:
            continue
        owasp, atlas = TAXONOMY[entry["taxonomy_id"]]
        assert {x for x in entry["owasp"] if x.startswith("LLM")} == owasp, family
        assert set(entry["atlas"]) == atlas, family
        checked.append(family)
    assert "style_injection" in checked and len(checked) >= 12


@pytest.mark.parametrize(("name", "module", "constant"), [
    ("translation_zulu", "tunesafe.attacks.low_resource_translation", "TRANSLATE_SYSTEM"),
    ("pair_3", "tunesafe.attacks.pair", "ATTACKER_SYSTEM"),
    ("crescendo_5", "tunesafe.attacks.multi_turn_crescendo", "ATTACKER_SYSTEM"),
    ("past_tense_attacker", "tunesafe.attacks.past_tense_reformulation", "REWRITE_SYSTEM"),
])
def test_a_changed_attacker_instruction_changes_the_fingerprint(
    name: str, module: str, constant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the attacker model is told shapes what the target is sent: a change to it must trip the
    versioning guard like a changed template, or old and new attempts would pair under one id."""
    attack = attacks.get(name)
    before = fingerprint(attack)
    monkeypatch.setattr(f"{module}.{constant}", getattr(importlib.import_module(module), constant) + " Also.")
    assert fingerprint(attack) != before
    if name.startswith("translation_"):
        monkeypatch.undo()
        monkeypatch.setattr(attack, "language", "Xhosa")
        assert fingerprint(attack) != before


@pytest.mark.parametrize("value", ["8", True, 2.5, 0, None])
def test_a_family_option_of_the_wrong_type_is_named_in_one_error(value: object) -> None:
    """`add(ManyShot(...))` in a plugin: a count given as text, a bool or a fraction must not become an
    attack named many_shot_True or a TypeError about '<'; the plugin error names the option."""
    from tunesafe.attacks.many_shot import ManyShot
    from tunesafe.attacks.multi_turn_crescendo import Crescendo
    from tunesafe.attacks.pair import Pair

    for build, option in ((ManyShot, "shots"), (Pair, "iterations"), (Crescendo, "max_turns")):
        plugin = type("WrongOption", (build,), {"__init__": lambda self, b=build: b.__init__(self, value)})
        registry.add("wrong_option", plugin)  # type: ignore[arg-type]
        try:
            with pytest.raises(UserError, match=rf"could not be built: .*{option} must be a whole number"):
                attacks.get("wrong_option")
        finally:
            registry._items.pop("wrong_option")
