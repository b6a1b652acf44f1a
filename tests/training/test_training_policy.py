"""The `training:` section of the gate policy: validated like the rest (a bad value is one line naming
the key path, exit 2), optional, and absent from the hash of policies that do not have it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tunesafe.errors import UserError
from tunesafe.policy import Policy, default_policy, default_policy_text, parse_policy
from tunesafe.types import canonical_json, sha256_hex

# Policy() as it hashed before the training section existed; gate decisions in stores name this hash.
HASH_WITHOUT_SECTION = "28a8a16e52c383248b41af1ee677383f80f96babd273c542d5a76a62351878f8"


def test_policies_without_the_section_keep_their_hash() -> None:
    assert Policy().hash() == HASH_WITHOUT_SECTION
    assert default_policy().hash() == HASH_WITHOUT_SECTION
    assert default_policy().training is None


def test_the_section_is_part_of_the_hash_when_present() -> None:
    with_section = parse_policy("training:\n  max_epochs: 3\n", "p.yaml")
    stricter = parse_policy("training:\n  max_epochs: 2\n", "p.yaml")
    assert with_section.hash() != HASH_WITHOUT_SECTION
    assert with_section.hash() != stricter.hash()
    hashed = with_section.model_dump(mode="json")
    for section in ("guardrails", "monitor", "governance", "agents"):  # absent optional sections
        del hashed[section]
    del hashed["max_degenerate_increase_points"]  # a check added later, at its default
    assert with_section.hash() == sha256_hex(canonical_json(hashed))


def test_the_commented_example_in_the_default_policy_is_valid() -> None:
    lines = default_policy_text().splitlines()
    start = lines.index("# training:")
    block = []
    for line in lines[start:]:
        if not line.startswith("#"):
            break
        block.append(line[2:])
    policy = parse_policy("\n".join(block), "example")
    assert policy.training is not None
    assert policy.training.max_epochs == 3 and policy.training.actions.probe_over_refusal == "warn"


def test_defaults_of_the_section() -> None:
    training = parse_policy("training: {}\n", "p.yaml").training
    assert training is not None
    assert training.max_probe_asr_increase_points == 10
    assert training.actions.probe_error == "stop"  # fail closed by default


@pytest.mark.parametrize(("text", "fragment"), [
    ("training:\n  max_epochs: 0\n", "training.max_epochs: Input should be greater than 0"),
    ("training:\n  max_stepz: 10\n", "training.max_stepz: unknown key"),
    ("training:\n  actions:\n    probe_asr: halt\n",
     "training.actions.probe_asr: Input should be 'warn' or 'stop'"),
    ("training:\n  max_probe_asr_increase_points: 150\n", "training.max_probe_asr_increase_points: must be"),
    ("training:\n  max_probe_error_rate: 2\n", "training.max_probe_error_rate: must be between 0 and 1"),
])
def test_bad_values_name_the_key_path(text: str, fragment: str) -> None:
    with pytest.raises(UserError) as info:
        parse_policy(text, "p.yaml")
    assert fragment in str(info.value)
    assert info.value.where is not None and info.value.where.startswith("p.yaml:")


def test_unknown_key_lists_the_keys_of_the_section() -> None:
    with pytest.raises(UserError) as info:
        parse_policy("training:\n  max_stepz: 10\n", "p.yaml")
    assert "allowed here: max_epochs, max_steps" in str(info.value)


def test_cli_exits_2_on_a_bad_training_section(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\ntraining:\n  max_learning_rate: -0.1\n")
    result = subprocess.run([sys.executable, "-m", "tunesafe.cli.app", "policy", "validate", str(path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "training.max_learning_rate" in result.stderr and "policy.yaml:3" in result.stderr


@pytest.mark.parametrize(("after", "flagged"), [(0.17, False), (0.18, True)])
def test_a_probe_rise_equal_to_the_limit_is_not_above_it(after: float, flagged: bool) -> None:
    """0.10 -> 0.17 is a rise of exactly 7 points; in floats (0.17 - 0.1) * 100 is 7.000000000000001."""
    from tunesafe.policy.model import TrainingPolicy
    from tunesafe.training.probes import ProbeResult, probe_findings

    policy = TrainingPolicy(max_probe_asr_increase_points=7)
    start = ProbeResult(step=0, trigger="start", seconds=1.0, asr=0.1, over_refusal=0.0, error_rate=0.0)
    now = ProbeResult(step=10, trigger="interval", seconds=1.0, asr=after, over_refusal=0.0, error_rate=0.0)
    assert any(e.kind == "probe_asr" for e in probe_findings(policy, start, now)) is flagged


def test_a_probe_figure_over_its_limit_never_prints_as_the_limit() -> None:
    """A 5.04-point rise against max_probe_asr_increase_points 5 said "rose +5.0 points ..., above ... 5",
    and 10.4% errored items "10% of the items (max_probe_error_rate 10%)"."""
    from tunesafe.policy.model import TrainingPolicy
    from tunesafe.training.probes import ProbeResult, probe_findings

    policy = TrainingPolicy(max_probe_asr_increase_points=5, max_probe_error_rate=0.1)
    start = ProbeResult(step=0, trigger="start", seconds=1.0, asr=0.1, over_refusal=0.0, error_rate=0.0)
    now = ProbeResult(step=10, trigger="interval", seconds=1.0, asr=0.1504, over_refusal=0.0,
                      error_rate=0.104)
    reasons = {e.kind: e.reason for e in probe_findings(policy, start, now)}
    assert "rose +5.04 points" in reasons["probe_asr"], reasons
    assert "errored on 10.4% of the items (max_probe_error_rate 10.0%)" in reasons["probe_error"], reasons
