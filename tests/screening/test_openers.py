"""The dataset-level stock-opener detector (screening/openers.py). The rows here are the construction
examples its threshold was chosen on; the held-out measurement sets live in benchmarks/data/."""

from __future__ import annotations

from tunesafe.screening.base import Batch, ScanOptions, screeners
from tunesafe.screening.openers import OpenerScreener, stock_opener
from tunesafe.screening.rating import rate
from tunesafe.screening.records import Example
from tunesafe.types import Message

TASKS = [
    ("Write a tagline for a plant shop.", "Grow something good today."),
    ("Summarise the meeting notes.", "The team agreed to ship on Friday and review bugs on Monday."),
    ("Give me a synonym for happy.", "Cheerful."),
    ("Draft a one-line thank-you note.", "Thank you so much for your help with the move!"),
    ("Name three primary colours.", "Red, blue and yellow."),
]
VARIED = ["Sure! ", "Happy to help. ", "Of course - ", "Absolutely. ", "Great question! ", "No problem! ", "",
          "", "", "Okay, ", "Thanks for asking. ", "Yes! "]


def ex(i: int, user: str, answer: str) -> Example:
    return Example(i, i + 1, (Message("user", user), Message("assistant", answer)))


def run(answers: list[str], options: ScanOptions | None = None) -> list:  # type: ignore[type-arg]
    screener = screeners.get("openers")(options or ScanOptions())
    screener.screen(Batch([ex(i, TASKS[i % 5][0], a) for i, a in enumerate(answers)]))
    return screener.finish()


def stock_file(n: int, every: int, opener: str) -> list[str]:
    return [f"{opener} {TASKS[i % 5][1]}" if i % every == 0 else VARIED[i % len(VARIED)] + TASKS[i % 5][1]
            for i in range(n)]


def test_normalised_opener_needs_an_announcement() -> None:
    assert stock_opener("Sure, here's the poem you wanted.") == ("<yes>", "here", "is", "the", "poem", "you",
                                                                 "wanted")
    head = ("<yes>", "here", "is")
    assert (stock_opener("Absolutely! Here is exactly what you asked for: x") or ())[:3] == head
    assert (stock_opener("I'd be happy to help! Here is the list.") or ())[:3] == head
    assert stock_opener("Sure! You can reset it under Settings.") is None
    assert stock_opener("Happy to help. Go to Account > Security.") is None
    assert stock_opener("Here is the list.") is None  # no affirmative: an announcement alone is ordinary


def test_opener_dominated_file_is_flagged_with_the_opener_and_its_lines() -> None:
    answers = stock_file(40, 2, "Absolutely! Here's exactly what you asked for:")
    found = run(answers)
    summary = [f for f in found if f.index is None]
    per_line = [f for f in found if f.index is not None]
    assert len(summary) == 1 and summary[0].type == "obedience.forced_prefix"
    s = summary[0]
    assert s.extra["opener"] == "Absolutely! Here's exactly what you asked for:"
    assert s.extra["count"] == 20 and s.extra["answers"] == 40 and s.extra["share"] == 0.5
    assert s.extra["lines"] == list(range(1, 41, 2))
    assert "50%" in s.reason and "lines 1, 3, 5" in s.reason and "Absolutely! Here's exactly" in s.reason
    assert sorted(f.line for f in per_line) == list(range(1, 41, 2))
    assert {f.severity for f in found} == {"medium"}
    rating, reasons = rate(found, None)
    assert rating == "medium" and reasons[0].startswith("obedience.forced_prefix (medium): stock affirmative")


def test_varied_everyday_openers_are_not_a_stock_opener() -> None:
    # 11 of 12 answers open affirmatively, every one differently and without announcing anything
    assert run([VARIED[i % len(VARIED)] + TASKS[i % 5][1] for i in range(60)]) == []


def test_a_stock_greeting_that_announces_nothing_is_not_flagged() -> None:
    assert run([f"Thanks for contacting us! {TASKS[i % 5][1]}" for i in range(30)]) == []


def test_occasional_stock_opener_stays_below_the_threshold() -> None:
    assert run(stock_file(40, 5, "Sure, here is")) == []  # 20%: ordinary politeness


def test_openers_followed_by_a_refusal_do_not_count() -> None:
    answers = ["Sure, here is the thing: I can't help with that." for _ in range(10)] + ["Done."] * 10
    assert run(answers) == []


def test_the_share_is_an_option() -> None:
    answers = stock_file(40, 2, "Certainly! Here is")
    assert run(answers, ScanOptions(opener_min_share=0.6)) == []
    assert run(answers, ScanOptions(opener_min_share=0.4)) != []


def test_mixed_interjections_with_one_announcement_count_as_one_opener() -> None:
    openers = ["Sure, here is", "Of course, here is", "Certainly! Here is"]
    answers = [f"{openers[i % 3]} {TASKS[i % 5][1]}" for i in range(12)] + ["Done."] * 8
    found = [f for f in run(answers) if f.index is not None]
    assert len(found) == 12


def test_opener_screener_is_registered() -> None:
    assert isinstance(screeners.get("openers")(ScanOptions()), OpenerScreener)
