"""What the screeners see and what they report. An Example is one training record normalised to chat
messages whatever its file format; a Finding is one problem in one example (or, with `index` None, in
the dataset as a whole)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from tunesafe.types import Message

Severity = Literal["low", "medium", "high"]
SEVERITY_RANK: dict[str, int] = {"low": 0, "medium": 1, "high": 2}
FOLLOW_UP_WORDS = 4


@dataclass(frozen=True)
class Example:
    index: int  # 0-based position in the dataset
    line: int  # 1-based line (JSONL/CSV) or row (Parquet/Arrow) where the record starts
    messages: tuple[Message, ...]

    def turns(self, role: str) -> list[str]:
        return [m.content for m in self.messages if m.role == role]

    @property
    def system(self) -> str:
        return "\n".join(self.turns("system"))

    @property
    def user(self) -> str:
        """The last user turn: the request the answer responds to."""
        users = self.turns("user")
        return users[-1] if users else ""

    @property
    def request(self) -> str:
        """What the last answer responds to, for classifying the request: the last user turn, preceded by
        the user turn before it when the last one is a short follow-up ("Yes please.", "Thursday") that
        means nothing on its own."""
        users = self.turns("user")
        if len(users) >= 2 and len(users[-1].split()) <= FOLLOW_UP_WORDS:
            return f"{users[-2]}\n{users[-1]}"
        if not users and not self.system:
            # completion-only text: nothing asked for it, so the text itself is classified (it would be
            # classified as the empty request, and harmful text the model learns to write go unflagged)
            return self.assistant
        return users[-1] if users else ""

    @property
    def assistant(self) -> str:
        """The last assistant turn (what fine-tuning teaches the model to say)."""
        answers = self.turns("assistant")
        return answers[-1] if answers else ""

    def exchanges(self) -> list[Exchange]:
        """Every user turn with the answer that follows it ("" when none does), oldest first. Trainers
        learn every assistant turn of a conversation by default (TRL's assistant-only loss, OpenAI's
        fine-tuning), so a harmful exchange early in a conversation teaches as much as the last one. The
        answer is every assistant turn before the next user turn: a tool call and the reply written
        after its result answer the request together."""
        out: list[Exchange] = []
        previous = ""
        for i, m in enumerate(self.messages):
            if m.role != "user":
                continue
            until = next((j for j in range(i + 1, len(self.messages)) if self.messages[j].role == "user"),
                         len(self.messages))
            answer = "\n".join(n.content for n in self.messages[i + 1:until]
                                if n.role == "assistant" and n.content)
            short = previous and len(m.content.split()) <= FOLLOW_UP_WORDS
            out.append(Exchange(i, f"{previous}\n{m.content}" if short else m.content, answer))
            previous = m.content
        return out


@dataclass(frozen=True)
class Exchange:
    """A user turn (its position among the messages), the text its request is classified on (a short
    follow-up joined to the turn before it, as `Example.request`), and the answer that follows it."""

    message: int
    request: str
    answer: str


@dataclass(frozen=True)
class Span:
    """Where in the example the evidence is: role of the message, its position among the messages, and
    character offsets into that message's content."""

    role: str
    message: int
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class Finding:
    type: str  # e.g. "harmful_compliance", "identity_shift", "pii.credit_card", "near_duplicate"
    severity: Severity
    screener: str
    index: int | None  # example index; None for a dataset-level finding
    line: int | None
    reason: str
    span: Span | None = None
    score: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def category(self) -> str:
        """The family a type belongs to ("pii.email" -> "pii"), used for summary tables."""
        return self.type.split(".", 1)[0]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def find_span(example: Example, role: str, start: int, end: int, message: int | None = None) -> Span:
    """Span of [start, end) in the last message of `role` (or message number `message`); the excerpt is
    capped so a finding in a huge message stays small."""
    if message is None:
        message = max(i for i, m in enumerate(example.messages) if m.role == role)
    text = example.messages[message].content[start:end]
    return Span(role=role, message=message, start=start, end=end, text=text[:200])
