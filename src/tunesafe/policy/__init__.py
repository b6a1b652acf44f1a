"""The gate policy (YAML, validated) and the decision it makes on a paired comparison."""

from tunesafe.policy.decide import decide
from tunesafe.policy.load import default_policy, default_policy_text, load_policy, parse_policy
from tunesafe.policy.model import Policy

__all__ = ["Policy", "decide", "default_policy", "default_policy_text", "load_policy", "parse_policy"]
