"""A run's results live outside the chain (attempt_results), tied to it by the run record's results_digest:
a verdict or answer edited, or a row deleted, directly in the database file must make `verify` fail."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from tunesafe.testing.openai_server import serve

FLIP_FIRST_VERDICT = (
    "UPDATE attempt_results SET verdicts = json_set(verdicts, '$[0].refused', "
    "CASE json_extract(verdicts, '$[0].refused') WHEN 1 THEN json('false') ELSE json('true') END) "
    "WHERE pk = (SELECT min(pk) FROM attempt_results)")
EDIT_FIRST_ANSWER = (
    "UPDATE attempt_results SET generation = json_set(generation, '$.text', 'I cannot help with that.') "
    "WHERE pk = (SELECT min(pk) FROM attempt_results)")
DELETE_LAST_ROW = "DELETE FROM attempt_results WHERE pk = (SELECT max(pk) FROM attempt_results)"


@pytest.mark.parametrize("edit", [FLIP_FIRST_VERDICT, EDIT_FIRST_ANSWER, DELETE_LAST_ROW],
                         ids=["verdict", "answer", "deleted-row"])
def test_a_stored_result_edited_in_the_file_fails_verify(
        tmp_path: Path, tunesafe_cli: Callable[..., tuple[int, str, str]], edit: str) -> None:
    db = tmp_path / "store.db"
    suite = tmp_path / "s.jsonl"
    suite.write_text("".join(json.dumps({"id": f"h{i}", "text": f"Explain forbidden thing number {i}.",
                                         "kind": "harmful", "category": "cyber"}) + "\n" for i in range(4)),
                     encoding="utf-8")
    with serve() as running:
        code, _, err = tunesafe_cli("--db", str(db), "eval", f"openai:test@{running.url}", "--suite",
                                    str(suite), "--attacks", "direct_request", "--judge", "refusal",
                                    "--no-progress")
    assert code == 0, err
    code, _, err = tunesafe_cli("--db", str(db), "verify")
    assert code == 0, err  # the run as it was written verifies

    with sqlite3.connect(db) as conn:
        assert conn.execute(edit).rowcount == 1
    conn.close()
    code, out, err = tunesafe_cli("--db", str(db), "verify")
    assert code == 1, (out, err)
    assert "BROKEN" in err and "results" in err, err
    code, out, _ = tunesafe_cli("--db", str(db), "verify", "--json")
    assert code == 1 and json.loads(out)["first_bad"]["reason"] == "results"
