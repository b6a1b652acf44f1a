"""What every attack is: metadata (`Attack`), a pure expansion of a behaviour into attempts, and an
execution of one attempt against a target model.

Template attacks only transform the prompt; `AttackImpl.execute` then sends it once. Attacker-driven
attacks (see `attacker.py`) override `execute` and return, in `Execution.frozen`, what a second model
needs to replay the same user turns, so pre/post runs stay paired.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING, Any, Protocol

import yaml

from tunesafe.types import Attack, Attempt, Behavior, Capabilities, ChatRequest, Generation, Message, Verdict

if TYPE_CHECKING:
    from tunesafe.models.base import ChatModel


class JudgeLike(Protocol):
    """The part of a judge an attack uses (PAIR and Crescendo score the target's answers). Structural, so
    attacks do not import the judges package, which sits downstream of them."""

    name: str
    version: str

    async def judge(self, items: Sequence[Any]) -> list[Verdict]: ...


@dataclass(frozen=True)
class JudgeItem:
    """Field-for-field the judges' JudgeInput (request, response, kind, id)."""

    request: str
    response: str
    kind: str | None = None
    id: str | None = None


@dataclass(frozen=True)
class ExecContext:
    attacker: ChatModel | None = None
    judge: JudgeLike | None = None
    max_new_tokens: int = 256
    temperature: float = 0.0
    seed: int = 0
    frozen: Mapping[str, Any] | None = None  # from an earlier run's Execution.frozen: replay, do not search
    attacker_max_new_tokens: int = 256
    attacker_temperature: float = 0.0  # greedy by default: the search is then reproducible too


@dataclass(frozen=True)
class Execution:
    """The outcome of running one attempt. `response` is what the judges see: the model's own words
    (decoded when the attack encodes, without a forced prefill); `conversation` holds every turn sent and
    received; `frozen` is what to store for replay. A failure of the target or the attacker sits in
    `generation.error` (one source of truth, so the engine cannot record a failed attempt as an
    answer)."""

    generation: Generation
    response: str
    conversation: tuple[Message, ...]
    frozen: Mapping[str, Any] = field(default_factory=dict)

    @property
    def error(self) -> str | None:
        return self.generation.error

    @property
    def ok(self) -> bool:
        return self.generation.error is None

    @staticmethod
    def failed(message: str, conversation: Sequence[Message] = (), frozen: Mapping[str, Any] | None = None,
               latency_s: float = 0.0) -> Execution:
        gen = Generation(text="", finish_reason="error", latency_s=latency_s, error=message)
        return Execution(generation=gen, response="", conversation=tuple(conversation), frozen=frozen or {})


@dataclass(frozen=True)
class Prompt:
    """The messages (and optional assistant prefill) one attempt sends."""

    messages: tuple[Message, ...]
    prefill: str | None = None


@cache
def families() -> Mapping[str, Mapping[str, Any]]:
    """The family catalogue (families.yaml): summary, OWASP / ATLAS ids and sources per family."""
    text = files("tunesafe.attacks").joinpath("families.yaml").read_text(encoding="utf-8")
    catalogue: Mapping[str, Mapping[str, Any]] = yaml.safe_load(text)["families"]
    return catalogue


def make_meta(family: str, name: str, version: str, description: str, *, needs_attacker: bool = False,
              needs_white_box: bool = False, needs_prefill: bool = False) -> Attack:
    """Attack metadata whose framework ids come from the family catalogue (one place to keep them)."""
    entry = families()[family]  # KeyError here is a programming error in a built-in module
    return Attack(family=family, name=name, version=version, description=description,
                  needs_attacker=needs_attacker, needs_white_box=needs_white_box, needs_prefill=needs_prefill,
                  owasp=tuple(entry["owasp"]), atlas=tuple(entry["atlas"]))


def request_text(behavior: Behavior) -> str:
    """The request as a user would send it; contextual behaviours carry their document first."""
    return f"{behavior.context}\n\n{behavior.text}" if behavior.context else behavior.text


def user(text: str) -> tuple[Message, ...]:
    return (Message("user", text),)


def with_prefill(prefill: str | None, text: str) -> str:
    """The assistant answer as a reader sees it: the forced prefix plus the continuation. Backends may
    or may not echo the prefill in Generation.text, so it is added only when missing."""
    if not prefill or text.startswith(prefill):
        return text
    return prefill + text


def continuation(prefill: str | None, text: str) -> str:
    """What the model itself wrote after a forced prefix (the prefix is the attacker's text: judged, it
    would turn an empty or evasive continuation into an affirmative answer)."""
    if prefill and text.startswith(prefill):
        return text[len(prefill):]
    return text


def at_least_one(what: str, value: int) -> int:
    """A count option of a family (shots, turns, iterations): it names the attack and goes into its
    attempt ids, so text, a bool or a fraction is refused rather than coerced."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a whole number of at least 1, got {value!r}")
    return value


class AttackImpl:
    """Base of every attack. Subclasses set `meta` and implement `build`; an attack with a setting (shots,
    turns, iterations) puts it in `params`; one with several attempts per behaviour overrides `variants`;
    one that encodes the answer overrides `decode`."""

    meta: Attack
    params: Mapping[str, Any] = {}

    def variants(self, behavior: Behavior, seed: int) -> list[dict[str, Any]]:
        """The params of each attempt for this behaviour (recorded in the attempt, part of its id)."""
        return [dict(self.params)]

    def build(self, behavior: Behavior, params: Mapping[str, Any], seed: int) -> Prompt:
        raise NotImplementedError

    def expand(self, behavior: Behavior, seed: int) -> list[Attempt]:
        attempts = []
        for params in self.variants(behavior, seed):
            prompt = self.build(behavior, params, seed)
            attempts.append(Attempt(
                id=Attempt.make_id(behavior.id, self.meta.name, self.meta.version, params, seed),
                behavior_id=behavior.id, attack=self.meta.name, attack_version=self.meta.version,
                family=self.meta.family, category=behavior.category, kind=behavior.kind,
                messages=prompt.messages, prefill=prompt.prefill, params=params, seed=seed))
        return attempts

    def not_for(self, behavior: Behavior) -> str | None:
        """None when the attack applies to this behaviour, else why not: the plan leaves the pair out and
        counts it (an encoding that would leave the request as written measures the plain request)."""
        return None

    def requires(self, capabilities: Capabilities) -> str | None:
        """None when a target with these capabilities can run the attack, else the reason to skip it."""
        if self.meta.needs_prefill and not capabilities.prefill:
            return f"{self.meta.name} needs assistant-turn prefill, which this backend does not support"
        if self.meta.needs_white_box and not capabilities.white_box:
            return f"{self.meta.name} needs white-box access (weights), which this backend does not give"
        return None

    def decode(self, text: str) -> str:
        """The answer in plain text for the judges (identity unless the attack asks for an encoding)."""
        return text

    def instructions(self) -> tuple[str, ...]:
        """What the attack tells an attacker model (its system prompts, as sent): not in the attempts,
        yet it shapes what the target is sent, so the versioning guard fingerprints it with them."""
        return ()

    async def execute(self, attempt: Attempt, target: ChatModel, ctx: ExecContext) -> Execution:
        request = ChatRequest(messages=attempt.messages, prefill=attempt.prefill,
                              max_new_tokens=ctx.max_new_tokens, temperature=ctx.temperature, seed=ctx.seed)
        [generation] = await target.generate([request])
        if not generation.ok:
            return Execution(generation=generation, response="", conversation=attempt.messages)
        answer = with_prefill(attempt.prefill, generation.text)
        return Execution(generation=generation, response=self.decode(continuation(attempt.prefill, answer)),
                         conversation=(*attempt.messages, Message("assistant", answer)))


class TemplateAttack(AttackImpl):
    """A single-turn attack given by a template with a `{request}` slot (and an optional system prompt)."""

    def __init__(self, meta: Attack, template: str, system: str | None = None) -> None:
        if "{request}" not in template:
            raise ValueError(f"template of {meta.name} has no {{request}} slot")
        self.meta = meta
        self.template = template
        self.system = system

    def build(self, behavior: Behavior, params: Mapping[str, Any], seed: int) -> Prompt:
        text = self.template.replace("{request}", request_text(behavior))
        system = (Message("system", self.system),) if self.system else ()
        return Prompt(messages=(*system, Message("user", text)))
