"""What every judge is: an object with a name and a version that turns (request, response) pairs into
Verdicts, registered by name so users can add their own through the `tunesafe.judges` entry points.

The registry holds *factories* (callables taking keyword options and returning a Judge) because some
judges need construction-time options, e.g. the ChatModel behind an LLM judge."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from tunesafe.errors import UserError
from tunesafe.registry import Registry
from tunesafe.types import Verdict, canonical_json, sha256_hex


@dataclass(frozen=True)
class JudgeInput:
    """One pair to judge. `request` is the behaviour as the user meant it (not the attack-wrapped
    prompt); `kind` is the behaviour kind ("harmful" / "benign" / "borderline"), None when unknown."""

    request: str
    response: str
    kind: str | None = None
    id: str | None = None


@runtime_checkable
class Judge(Protocol):
    name: str
    version: str

    async def judge(self, items: Sequence[JudgeInput]) -> list[Verdict]: ...


JudgeFactory = Callable[..., Judge]

registry: Registry[JudgeFactory] = Registry("judges")

# What a judge's verdicts evidence, as framework ids (OWASP LLM Top 10 2025, MITRE ATLAS 5.6.0): whether
# a jailbreak attempt worked (LLM01, AML.T0054) and, for judges that rate the content, its harm (AML.T0048).
JAILBREAK = {"owasp": ("LLM01:2025",), "atlas": ("AML.T0054",)}
HARMFUL_CONTENT = {"owasp": ("LLM01:2025",), "atlas": ("AML.T0054", "AML.T0048")}


def frameworks(ids: Mapping[str, tuple[str, ...]]) -> Callable[[JudgeFactory], JudgeFactory]:
    """Mark a judge factory with its framework ids (registry metadata, read without building the judge)."""
    def mark(factory: JudgeFactory) -> JudgeFactory:
        setattr(factory, "frameworks", dict(ids))  # noqa: B010 (a function attribute mypy cannot see)
        return factory

    return mark


def takes_judge_model(factory: JudgeFactory) -> JudgeFactory:
    """Mark a judge factory that uses the judge model (`model=` / `model_ref=`, the CLI's --judge-model)."""
    setattr(factory, "takes_judge_model", True)  # noqa: B010 (a function attribute mypy cannot see)
    return factory


def check_judge_model(names: Sequence[str], model_ref: str | None) -> None:
    """Refuse a judge model that no named judge would use: it would be ignored silently, and the user would
    take the verdicts for an LLM judge's. A plugin judge that declares nothing may use it: not refused."""
    from tunesafe import judges  # noqa: F401  (registers the built-ins)

    if not model_ref:
        return
    for name in names:
        factory = registry.get(name)
        if getattr(factory, "takes_judge_model", False) or not factory.__module__.startswith("tunesafe."):
            return
    takers = [n for n, f in registry.items() if getattr(f, "takes_judge_model", False)]
    raise UserError(f"needs an LLM judge, and none of the judges given uses it ({', '.join(names)})",
                    where="--judge-model", fix=f"add --judge {' / '.join(takers)}, or drop --judge-model")


def judge_frameworks(name: str) -> dict[str, tuple[str, ...]]:
    """{"owasp": ids, "atlas": ids} of a registered judge; empty for a plugin that declares none."""
    from tunesafe import judges  # noqa: F401  (registers the built-ins)

    return dict(getattr(registry.get(name), "frameworks", {"owasp": (), "atlas": ()}))


def get_judge(name: str, **opts: Any) -> Judge:
    """Build the judge registered as `name`; `opts` go to its factory (e.g. model=ChatModel)."""
    from tunesafe import judges  # noqa: F401  (registers the built-ins)

    return registry.get(name)(**opts)


def judge_sync(judge: Judge, items: Sequence[JudgeInput]) -> list[Verdict]:
    """For callers outside an event loop (CLI, benchmarks)."""
    return asyncio.run(judge.judge(items))


def content_version(major: str, *parts: Any) -> str:
    """A version that changes whenever the data behind a judge changes: `major+<hash of the data>`."""
    return f"{major}+{sha256_hex(canonical_json(list(parts)))[:10]}"


def error_verdict(judge: Judge, message: str, evidence: Mapping[str, Any] | None = None) -> Verdict:
    """Undecided: never refused, never safe (fail closed)."""
    return Verdict(judge=judge.name, judge_version=judge.version, refused=None, harmful=None,
                   evidence=dict(evidence or {}), error=message)


async def judge_answers(judge: Judge, items: Sequence[JudgeInput],
                        run: Callable[[Judge, Sequence[JudgeInput]], Any] | None = None) -> list[Verdict]:
    """`judge` on pairs logged outside tunesafe (pair files, production logs), whose responses may carry a
    reasoning model's trace: each is judged on its answer, as generations are (models/reasoning.py), and a
    trace that left no answer is an error verdict, never a refusal. `run` calls the judge (default:
    `judge.judge`; the monitor passes its fail-closed wrapper)."""
    from dataclasses import replace

    from tunesafe.models.reasoning import LOGGED_NO_ANSWER, split_reasoning

    answers: list[JudgeInput] = []
    missing: set[int] = set()
    for i, item in enumerate(items):
        split = split_reasoning(item.response)
        if split.reasoning is None:
            answers.append(item)
        elif split.answer.strip():
            answers.append(replace(item, response=split.answer))
        else:
            missing.add(i)
    judged = iter(await (run(judge, answers) if run else judge.judge(answers)) if answers else [])
    return [error_verdict(judge, LOGGED_NO_ANSWER) if i in missing else next(judged)
            for i in range(len(items))]


def harmful_by_compliance(kind: str | None, refused: bool, degenerate: bool) -> bool:
    """The local judges' harm decision: complying with a harmful request counts as harmful. Without an
    LLM judge we cannot rate how specific the content is, so "harmful" means "complied with a harmful
    request". An unknown kind is treated as harmful (fail closed for re-judged logs)."""
    if refused or degenerate:
        return False
    return kind in (None, "harmful")
