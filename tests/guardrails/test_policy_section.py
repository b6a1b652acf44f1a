"""The policy's optional `guardrails:` section: validated like the rest, and a policy without it keeps
the hash it had before the section existed (stored gate decisions still match their policy)."""

from __future__ import annotations

import pytest

from tunesafe.errors import UserError
from tunesafe.policy.load import default_policy, parse_policy
from tunesafe.types import canonical_json, sha256_hex


def test_a_policy_without_the_section_hashes_as_before() -> None:
    policy = default_policy()
    before = policy.model_dump(mode="json")
    for section in ("guardrails", "training", "monitor", "governance", "agents"):  # absent optional sections
        del before[section]
    del before["max_degenerate_increase_points"]  # a check added later, at its default
    assert policy.hash() == sha256_hex(canonical_json(before))


def test_the_section_changes_the_hash_and_is_validated() -> None:
    with_slo = parse_policy("guardrails:\n  min_block_rate: 0.95\n  fail_mode: closed\n", "p.yaml")
    assert with_slo.guardrails is not None and with_slo.guardrails.min_block_rate == 0.95
    assert with_slo.hash() != default_policy().hash()
    for bad in ("guardrails:\n  min_block_rate: 95\n", "guardrails:\n  fail_mode: sometimes\n",
                "guardrails:\n  max_block_rate: 0.1\n"):
        with pytest.raises(UserError):
            parse_policy(bad, "p.yaml")


def test_the_commented_example_in_the_default_policy_is_valid() -> None:
    from tunesafe.policy.load import default_policy_text

    lines = default_policy_text().splitlines()
    start = lines.index("# guardrails:")
    example = "\n".join(line[2:] for line in lines[start:] if line.startswith("# "))
    slo = parse_policy(example, "example").guardrails
    assert slo is not None and slo.fail_mode == "closed" and slo.min_block_rate == 0.9
