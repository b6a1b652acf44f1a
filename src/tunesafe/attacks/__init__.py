"""The attack library: one module per family, one registry (`registry`), `resolve(spec)`.

Importing this package registers the built-in attacks; plugins come through the entry-point group
`tunesafe.attacks`.
"""

from tunesafe.attacks import (  # noqa: F401  (imported to register the built-ins)
    direct_request,
    encoding_obfuscation,
    indirect_injection,
    low_resource_translation,
    many_shot,
    multi_turn_crescendo,
    pair,
    past_tense_reformulation,
    payload_splitting,
    prefilling,
    prefix_injection,
    refusal_suppression,
    roleplay_persona,
    style_injection,
)
from tunesafe.attacks.base import AttackImpl, ExecContext, Execution, JudgeItem, Prompt, families
from tunesafe.attacks.library import all_attacks, get, registry, resolve

__all__ = ["AttackImpl", "ExecContext", "Execution", "JudgeItem", "Prompt", "all_attacks", "families", "get",
           "registry", "resolve"]

# The agent families live in tunesafe.agents (environments, episodes) and register here, after the
# library above exists, so importing the attacks always lists them.
from tunesafe.agents import attacks as _agent_attacks  # noqa: E402,F401
