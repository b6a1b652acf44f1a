"""Which 400s name a request parameter the server does not take (openai_params.refused_param): only
"unsupported" ones. A value out of range for a parameter the server does take stays an error."""

from __future__ import annotations

import json

import pytest

from tunesafe.models.openai_params import RequestShape, UnsupportedTemperature, refused_param


def _openai(message: str, param: str | None, code: str | None) -> str:
    return json.dumps({"error": {"message": message, "type": "invalid_request_error", "param": param,
                                 "code": code}})


@pytest.mark.parametrize(("body", "expected"), [
    (_openai("Unsupported parameter: 'max_tokens' is not supported with this model. Use "
             "'max_completion_tokens' instead.", "max_tokens", "unsupported_parameter"), "max_tokens"),
    (_openai("Unsupported value: 'temperature' does not support 0 with this model.", "temperature",
             "unsupported_value"), "temperature"),
    # a proxy that keeps the message but drops the structured fields
    (json.dumps({"detail": "Unsupported parameter: 'stop' is not supported with this model."}), "stop"),
    ("Unsupported parameter: 'seed'", "seed"),
    # a parameter the server takes, with a value it does not: not adaptable
    (_openai("max_tokens is too large: 100000. This model supports at most 16384 completion tokens.",
             "max_tokens", "invalid_value"), None),
    (json.dumps({"object": "error", "message": "System role not supported", "param": None, "code": 400}),
     None),
    ("<html>Bad Request</html>", None),
    # pydantic's 422 for a field the schema lacks: Azure AI Foundry's Mistral deployments for `seed`
    # (github.com/langchain-ai/langchain-azure#82), Mistral's API with the list under `message`
    # (github.com/editor-code-assistant/eca#231), or as a JSON string (mistralai/platform-docs-public#7)
    (json.dumps({"detail": [{"type": "extra_forbidden", "loc": ["body", "seed"],
                             "msg": "Extra inputs are not permitted", "input": 123}]}), "seed"),
    (json.dumps({"object": "error", "message": {"detail": [
        {"type": "extra_forbidden", "loc": ["body", "seed"], "msg": "Extra inputs are not permitted",
         "input": 0}]}, "type": "invalid_request_error", "param": None, "code": None}), "seed"),
    (json.dumps({"object": "error", "message": json.dumps({"detail": [
        {"type": "extra_forbidden", "loc": ["body", "stop"], "msg": "Extra inputs are not permitted"}]}),
        "type": "internal_error_proxy", "param": None, "code": "1000"}), "stop"),
    # a field inside a message, or a value of the wrong type: the request is wrong, not a parameter
    (json.dumps({"detail": [{"type": "extra_forbidden", "loc": ["body", "messages", 0, "user", "name"],
                             "msg": "Extra inputs are not permitted"}]}), None),
    (json.dumps({"detail": [{"type": "int_parsing", "loc": ["body", "seed"], "msg": "not an int"}]}), None),
])
def test_refused_param(body: str, expected: str | None) -> None:
    assert refused_param(body) == expected


def test_only_a_parameter_that_was_sent_is_adapted_and_each_once() -> None:
    shape = RequestShape()
    body = _openai("Unsupported parameter: 'stop'", "stop", "unsupported_parameter")
    assert not shape.adapt(400, body, {"model": "m"})  # not in the body: the 400 is about something else
    assert shape.adapt(400, body, {"model": "m", "stop": ["x"]})
    assert shape.apply({"model": "m", "stop": ["x"], "max_tokens": 3}) == {"model": "m", "max_tokens": 3}
    assert not shape.adapt(500, body, {"stop": ["x"]})
    with pytest.raises(UnsupportedTemperature, match="--temperature 1"):
        shape.adapt(400, _openai("Unsupported value: 'temperature'", "temperature", "unsupported_value"),
                    {"temperature": 0.0})
