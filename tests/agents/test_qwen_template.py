"""The local tool format: the embedded Qwen2.5 model's own chat template renders the harness's tool
turns (calls as <tool_call> objects, results as <tool_response>), through the transformers backend's
prompt builder. Slow: it needs the embedded model's converted tokenizer (no weights are loaded)."""

from __future__ import annotations

import json

import pytest

from tunesafe.agents.environments import all_tools
from tunesafe.models.tool_calls import ToolCall, render_reply
from tunesafe.types import ChatRequest, Message


@pytest.mark.slow
def test_qwen_template_renders_tool_calls_and_results() -> None:
    from transformers import AutoTokenizer

    from tunesafe.models.embedded import embedded_gguf_path
    from tunesafe.models.hf import HFEngine, _converted_gguf

    engine = HFEngine.__new__(HFEngine)  # the prompt builder only needs the tokenizer
    engine.tokenizer = AutoTokenizer.from_pretrained(_converted_gguf(embedded_gguf_path()))
    tools = all_tools()
    request = ChatRequest(messages=(
        Message("system", "You are a banking assistant."),
        Message("user", "Pay the bill in bills/water.txt."),
        Message("assistant", render_reply("", [ToolCall("read_file", {"path": "bills/water.txt"})])),
        Message("tool", "Amount: 45.20 EUR <b>due</b> & payable"),
    ), tools=(tools["read_file"].schema(), tools["send_money"].schema()))
    prompt = engine.prompt(request)
    assert prompt.startswith("<|im_start|>system\nYou are a banking assistant.\n\n# Tools")
    assert json.dumps(tools["send_money"].schema(), ensure_ascii=False) in prompt  # schemas as passed
    # arguments rendered as an object (no double encoding), results without HTML escaping
    call = '<tool_call>\n{"name": "read_file", "arguments": {"path": "bills/water.txt"}}\n</tool_call>'
    assert call in prompt
    assert "<tool_response>\nAmount: 45.20 EUR <b>due</b> & payable\n</tool_response>" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    # <tool_call> is an added, non-special token: decoding with skip_special_tokens keeps the tags
    ids = engine.tokenizer.encode("<tool_call>\n{}\n</tool_call>", add_special_tokens=False)
    assert "<tool_call>" in engine.tokenizer.decode(ids, skip_special_tokens=True)
