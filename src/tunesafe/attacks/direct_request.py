"""direct_request: the behaviour exactly as written. The no-attack baseline against which every other
family is read, and the attempt used for refusal and over-refusal rates."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunesafe.attacks.base import AttackImpl, Prompt, make_meta, request_text, user
from tunesafe.attacks.library import add
from tunesafe.types import Behavior


class DirectRequest(AttackImpl):
    meta = make_meta("direct_request", "direct_request", "1", "The behaviour as written, no transformation.")

    def build(self, behavior: Behavior, params: Mapping[str, Any], seed: int) -> Prompt:
        return Prompt(messages=user(request_text(behavior)))


add(DirectRequest())
