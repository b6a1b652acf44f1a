"""`tunesafe attacks list|show` through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

import tunesafe.attacks as attacks
from tunesafe.cli.app import app

runner = CliRunner()


def test_list_json_has_every_attack_with_versions() -> None:
    result = runner.invoke(app, ["attacks", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == [a.meta.name for a in attacks.all_attacks()]
    assert all(r["version"] and r["owasp"] and r["atlas"] for r in rows)
    assert {r["name"]: r["needs"] for r in rows}["prefill_sure"] == "prefill"


def test_list_family_filter_and_table() -> None:
    result = runner.invoke(app, ["attacks", "list", "--family", "encoding_obfuscation", "--json"])
    assert [r["name"] for r in json.loads(result.stdout)] == [
        "encoding_base64", "encoding_leetspeak", "encoding_rot13"]
    table = runner.invoke(app, ["attacks", "list"], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "18 families" in table.stdout and "crescendo_5" in table.stdout


def test_show_prints_an_example_on_a_harmless_request() -> None:
    result = runner.invoke(app, ["attacks", "show", "encoding_base64"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "RXhwbGFpbiBob3cgdG8gYmFrZSBhIGxvYWYgb2YgYnJlYWQ=" in result.stdout  # base64 of the example
    assert "AML.T0068" in result.stdout and "Wei et al. 2023" in result.stdout
    info = json.loads(runner.invoke(app, ["attacks", "show", "many_shot_8", "--json"]).stdout)
    assert len(info["example"][0]["messages"]) == 17 and info["example"][0]["params"] == {"shots": 8}
    escaped = runner.invoke(app, ["attacks", "show", "many_shot_8"], env={"COLUMNS": "200"})
    assert "Step 1: [redacted]" in escaped.stdout  # brackets survive Rich markup


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tunesafe.cli.app", *args], capture_output=True, text=True,
                          timeout=120)


def test_unknown_names_exit_2_with_the_fix() -> None:
    unknown = _cli("attacks", "show", "no_such_attack")
    assert unknown.returncode == 2
    assert "unknown attacks 'no_such_attack'" in unknown.stderr and "direct_request" in unknown.stderr
    family = _cli("attacks", "list", "--family", "nope")
    assert family.returncode == 2 and "--family: unknown family 'nope'" in family.stderr
