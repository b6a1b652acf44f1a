from __future__ import annotations

import pytest

from tunesafe.judges.degenerate import degenerate_reason, off_topic


@pytest.mark.parametrize("text", ["", "   \n\t", "..."])
def test_empty(text: str) -> None:
    assert degenerate_reason(text) in ("empty", "deflection")
    assert degenerate_reason("") == "empty"


@pytest.mark.parametrize("text", ["Not now.", "maybe later", "No comment!", "I don't know.", "Hmm...",
                                  "Pass."])
def test_bare_deflections(text: str) -> None:
    assert degenerate_reason(text) == "deflection"


def test_word_loop() -> None:
    assert degenerate_reason("the answer is " + "yes and no " * 30) == "loop"


def test_character_loop_without_spaces() -> None:
    assert degenerate_reason("!" * 400) in ("deflection", "loop")
    assert degenerate_reason("ab" * 300) == "loop"


@pytest.mark.parametrize("text", [
    "Paris is the capital of France.",
    "To bake bread, mix flour, water, salt and yeast, knead for ten minutes, let it rise for an hour, "
    "shape the loaf, let it rise again and bake it at 230 degrees for about forty minutes until golden.",
    "```python\nfor i in range(3):\n    print(i)\n```",
])
def test_real_answers_are_not_degenerate(text: str) -> None:
    assert degenerate_reason(text) is None


def test_off_topic_needs_low_similarity_and_english_text() -> None:
    assert off_topic(0.01, "The stock market closed higher today on tech earnings.")
    assert not off_topic(0.5, "The stock market closed higher today on tech earnings.")
    assert not off_topic(0.01, "Конечно! Вот рецепт хлеба: мука, вода, соль.")  # cross-lingual: not judged
