"""Production endpoints in the inventory and `models list --missing-guardrail`: an endpoint counts as
guarded only after a verification of one of its guardrails, linked to it, passed; a failed one, one of
another guard, or one before the endpoint was re-recorded does not count."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tunesafe.evidence.workspace import open_store
from tunesafe.types import RecordType

RunCli = Callable[..., tuple[int, str, str]]
STRICT = "guardrails:\n  max_false_positive_rate: {borderline: 0.0}\n"


def missing(run_cli: RunCli) -> list[str]:
    code, out, err = run_cli("models", "list", "--missing-guardrail", "--json")
    assert code == 0, err
    return [e["name"] for e in json.loads(out)]


def test_missing_guardrail_until_a_linked_verification_passes(run_cli: RunCli, team_filter: str,
                                                              tmp_path: Path) -> None:
    guard = f"python:{team_filter}:check"
    assert run_cli("models", "add", "base", "--ref", "openai:base@http://127.0.0.1:9/v1")[0] == 0
    assert run_cli("models", "add", "ft", "--ref", "openai:ft@http://127.0.0.1:9/v1", "--base",
                   "base")[0] == 0
    code, out, err = run_cli("models", "endpoint", "support-bot", "--model", "ft", "--guard", guard,
                             "--url", "https://user:secret@bot.example/v1?api_key=sk-123", "--json")
    assert code == 0, err
    assert "secret" not in out and "sk-123" not in out
    assert run_cli("models", "endpoint", "bare", "--model", "ft")[0] == 0
    assert missing(run_cli) == ["bare", "support-bot"]

    strict = tmp_path / "strict.yaml"
    strict.write_text(STRICT)
    verify = ("guardrails", "verify", "--suite", "smoke", "--attacks", "direct_request")
    assert run_cli(*verify, "--guard", guard, "--endpoint", "support-bot", "--policy", str(strict))[0] == 1
    assert run_cli(*verify, "--guard", f"python:{team_filter}:check?on_error=open", "--endpoint",
                   "support-bot")[0] == 0  # passed, but not a guard the endpoint declares
    assert missing(run_cli) == ["bare", "support-bot"]

    assert run_cli(*verify, "--guard", guard, "--endpoint", "support-bot")[0] == 0
    assert missing(run_cli) == ["bare"]
    code, out, _ = run_cli("models", "endpoints")
    assert code == 0 and "support-bot" in out and "missing" in out

    # re-recording the endpoint (e.g. a new model version behind it) needs a fresh verification
    assert run_cli("models", "endpoint", "support-bot", "--model", "ft", "--guard", guard)[0] == 0
    assert missing(run_cli) == ["bare", "support-bot"]
    with open_store() as store:
        records = list(store.records(type=RecordType.GUARDRAIL_VERIFICATION))
    assert [r.subject for r in records] == ["support-bot"] * 3


def test_endpoint_bad_input_exits_2(run_cli: RunCli) -> None:
    code, _, err = run_cli("models", "endpoint", "bot", "--model", "not-in-inventory")
    assert code == 2 and "not in the inventory" in err
    assert run_cli("models", "add", "m", "--ref", "openai:m@http://127.0.0.1:9/v1")[0] == 0
    code, _, err = run_cli("models", "endpoint", "bad name!", "--model", "m")
    assert code == 2
    assert missing(run_cli) == []


def test_an_endpoint_with_a_guard_or_url_that_cannot_be_used_is_not_recorded(run_cli: RunCli) -> None:
    # A typo'd guard scheme or a URL without http(s):// was recorded as given (exit 0): the endpoint then
    # stayed "missing a verified guardrail" for good, since no verification can name that guard.
    assert run_cli("models", "add", "m", "--ref", "openai:m@http://127.0.0.1:9/v1")[0] == 0
    for option, value, fragment in (("--guard", "lama-guard:openai:g@http://127.0.0.1:9/v1", "lama-guard"),
                                    ("--guard", "moderation", "moderation"),
                                    ("--url", "bot.example/v1", "bot.example/v1")):
        code, _, err = run_cli("models", "endpoint", "bot", "--model", "m", option, value)
        assert code == 2 and option in err and fragment in err, (value, err)
    code, out, _ = run_cli("models", "endpoints", "--json")
    assert code == 0 and json.loads(out) == []
