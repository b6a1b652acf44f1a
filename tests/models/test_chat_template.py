"""Templates without a system role (Gemma-2, Mistral-7B-Instruct v0.1-v0.2 raise on one; others drop it):
the system prompt goes to the start of the first user turn, as their serving stacks do, so attacks with
a system prompt are measured instead of failing as errors or losing the prompt unseen."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tunesafe.models import load_model
from tunesafe.models.chat_template import fold_system
from tunesafe.models.hf import HFChatModel
from tunesafe.testing.random_llama import save_random_llama
from tunesafe.types import ChatRequest, Message

# Gemma-2's rule, in the same jinja: a system message raises
RAISES = ("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not "
          "supported') }}{% endif %}<{{ m['role'] }}> {{ m['content'] }} {% endfor %}<assistant>")
DROPS = ("{% for m in messages %}{% if m['role'] != 'system' %}<{{ m['role'] }}> {{ m['content'] }} "
         "{% endif %}{% endfor %}<assistant>")
KEEPS = "{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} {% endfor %}<assistant>"


def _folder(tmp_path: Path, template: str) -> Path:
    folder = tmp_path / "model"
    save_random_llama(folder, "tiny")
    config = folder / "tokenizer_config.json"
    settings = json.loads(config.read_text())
    settings["chat_template"] = template
    config.write_text(json.dumps(settings))
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    return folder


REQUEST = ChatRequest(messages=(Message("system", "t7 t8"), Message("user", "t5 t6")), max_new_tokens=3)


@pytest.mark.parametrize("template", [RAISES, DROPS])
def test_a_system_prompt_the_template_cannot_take_opens_the_first_user_turn(tmp_path: Path,
                                                                           template: str) -> None:
    model = load_model(f"hf:{_folder(tmp_path, template)}?device=cpu&dtype=float32")
    assert isinstance(model, HFChatModel)
    assert model.engine.prompt(REQUEST) == "<user> t7 t8\n\nt5 t6 <assistant>"
    [gen] = asyncio.run(model.generate([REQUEST]))
    assert gen.ok, gen.error


def test_a_template_with_a_system_role_is_left_as_it_is(tmp_path: Path) -> None:
    model = load_model(f"hf:{_folder(tmp_path, KEEPS)}?device=cpu&dtype=float32")
    assert isinstance(model, HFChatModel)
    assert model.engine.prompt(REQUEST) == "<system> t7 t8 <user> t5 t6 <assistant>"


def test_fold_system() -> None:
    turns = [{"role": "system", "content": "S1"}, {"role": "assistant", "content": "A"},
             {"role": "system", "content": "S2"}, {"role": "user", "content": "U"}]
    assert fold_system(turns) == [{"role": "assistant", "content": "A"},
                                  {"role": "user", "content": "S1\n\nS2\n\nU"}]
    assert fold_system([{"role": "system", "content": "S"}]) == [{"role": "user", "content": "S"}]
    assert fold_system([{"role": "user", "content": "U"}]) == [{"role": "user", "content": "U"}]
