"""`tunesafe eval` and `tunesafe runs` through the CLI entry point: bad input exits 2 with one line naming
what is wrong and the fix (nothing stored), and a real run's table / JSON output."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Cli, Server, write_suite


@pytest.mark.parametrize(("args", "fragments"), [
    (["--suite", "no-such-suite"], ["no built-in suite or file named 'no-such-suite'"]),
    (["--attacks", "no_such_attack"], ["--attacks", "unknown attack or family 'no_such_attack'"]),
    (["--judge", "no_such_judge"], ["unknown judges 'no_such_judge'"]),
    (["--concurrency", "0"], ["--concurrency", "at least 1"]),
    (["--limit", "0"], ["--limit"]),
    (["--attacks", "crescendo_5"], ["need an attacker model"]),
])
def test_bad_options_exit_2(cli: Cli, server: Server, args: list[str], fragments: list[str]) -> None:
    code, _, err = cli("eval", server.ref(), "--suite", "smoke", *args)
    assert code == 2, err
    for fragment in (*fragments, "fix:"):
        assert fragment in err
    assert "Traceback" not in err
    assert cli.runs() == []  # nothing was started


def test_bad_model_refs_exit_2(cli: Cli) -> None:
    code, _, err = cli("eval", "nonsense-model", "--suite", "smoke", "--judge", "refusal")
    assert code == 2 and "unknown model ref 'nonsense-model'" in err and "fix:" in err
    code, _, err = cli("eval", "openai:m@http://127.0.0.1:9/v1", "--suite", "smoke", "--judge", "refusal")
    assert code == 2 and "cannot reach http://127.0.0.1:9/v1" in err
    code, _, err = cli("eval", "--suite", "smoke")
    assert code == 2 and "missing MODEL" in err
    assert cli.runs() == []


def test_unknown_runs_exit_2(cli: Cli) -> None:
    assert cli.runs() == []  # a store without runs (a store that is not there: tests/store)
    code, _, err = cli("eval", "--resume", "nope")
    assert code == 2 and "no run 'nope'" in err and "tunesafe runs list" in err
    code, _, err = cli("runs", "show", "nope")
    assert code == 2 and "no run 'nope'" in err


def test_real_process_exit_code(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "tunesafe.cli.app", "--db", str(tmp_path / "s.db"), "eval",
                             "gguf:", "--suite", "smoke"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "model ref" in result.stderr and "Traceback" not in result.stderr


def test_dry_run_counts_attempts_per_family_without_a_model(cli: Cli) -> None:
    code, out, err = cli("eval", "--suite", "smoke", "--attacks", "direct_request,style_injection",
                         "--dry-run", "--json", "--usd-per-mtok", "1.0")
    assert code == 0, err
    body = json.loads(out)
    families = {f["family"]: f["attempts"] for f in body["families"]}
    assert set(families) == {"direct_request", "style_injection"}
    assert sum(families.values()) == body["attempts"] > 0
    assert body["usd"] == pytest.approx(body["tokens_max"] / 1e6)
    code, out, _ = cli("eval", "--suite", "smoke", "--attacks", "direct_request", "--dry-run")
    assert code == 0 and "direct_request" in out and "estimated time" in out
    # an HTTP model cannot prefill: its dry run leaves prefilling out, a local model's keeps it
    code, out, _ = cli("eval", "openai:m@http://127.0.0.1:9/v1", "--suite", "smoke", "--attacks", "template",
                       "--dry-run", "--json")
    assert code == 0 and "prefilling" not in {f["family"] for f in json.loads(out)["families"]}
    code, out, _ = cli("eval", "--suite", "smoke", "--attacks", "template", "--dry-run", "--json")
    assert "prefilling" in {f["family"] for f in json.loads(out)["families"]}


def test_dry_run_lists_what_it_leaves_out(cli: Cli, mixed_script_suite: Path) -> None:
    # attacks the target cannot run and behaviours an attack does not apply to: the plan is smaller than
    # --attacks says, and the dry run says by how much and why (JSON fields and text lines)
    suite = mixed_script_suite
    args = ("eval", "openai:m@http://127.0.0.1:9/v1", "--suite", str(suite), "--attacks",
            "template", "--dry-run")
    code, out, err = cli(*args, "--json")
    assert code == 0, err
    body = json.loads(out)
    assert "prefill_sure" in {s["attack"] for s in body["skipped_attacks"]}
    assert all(s["reason"] for s in body["skipped_attacks"])
    skipped = {s["attack"]: s for s in body["skipped_behaviors"]}
    assert skipped["encoding_rot13"]["behaviors"] == 1 and "Latin" in skipped["encoding_rot13"]["reason"]
    code, out, err = cli(*args)
    assert code == 0, err
    assert "prefill_sure" in out and "encoding_rot13: left out for 1 behaviour" in out
    code, out, _ = cli("eval", "--suite", "smoke", "--attacks", "direct_request", "--dry-run", "--json")
    assert json.loads(out)["skipped_attacks"] == json.loads(out)["skipped_behaviors"] == []


def test_eval_then_runs_list_and_show(cli: Cli, tmp_path: Path, server: Server) -> None:
    suite = write_suite(tmp_path / "s.jsonl", n_harmful=3, n_benign=2)
    code, out, err = cli("eval", server.ref(), "--suite", str(suite), "--attacks", "direct_request",
                         "--judge", "refusal", "--json")
    assert code == 0, err
    body = json.loads(out)
    run_id = body["run"]["id"]
    assert body["run"]["status"] == "complete" and body["run"]["n_done"] == 5
    assert body["summary"]["groups"]["overall"]["asr"]["k"] == 3  # the echo server always complies
    assert body["session"]["attempts"] == 5
    code, out, _ = cli("runs", "list", "--json")
    assert code == 0 and [r["id"] for r in json.loads(out)] == [run_id]
    code, out, _ = cli("runs", "show", run_id)
    assert code == 0 and "complete: 5/5 attempts" in out and "family:direct_request" in out
    code, out, _ = cli("runs", "show", run_id, "--json")
    assert json.loads(out)["summary"]["groups"]["category:homonyms"]["over_refusal"]["n"] == 2
    code, out, err = cli("eval", server.ref(), "--suite", str(suite), "--attacks", "direct_request",
                         "--judge", "refusal", "--no-progress", "--name", "unregistered-ft")
    assert code == 0 and "ASR" in out and "5 attempts in" in err
    assert "'unregistered-ft' is not in the inventory" in err  # said before the run, not after


def test_eval_over_replicas_records_each_replica(cli: Cli, tmp_path: Path, server: Server) -> None:
    from tunesafe.testing.openai_server import serve

    suite = write_suite(tmp_path / "s.jsonl", n_harmful=6, n_benign=2)
    with serve(latency_s=0.02) as second:
        code, out, err = cli("eval", f"{server.ref('tunesafe-test')},{second.url}", "--suite", str(suite),
                             "--attacks", "direct_request", "--judge", "refusal", "--json")
    assert code == 0, err
    replicas = json.loads(out)["session"]["replicas"]
    assert [r["url"] for r in replicas] == [server.url, second.url]
    assert sum(r["requests"] for r in replicas) == 8
    assert all(r["model_id"] == "tunesafe-test" for r in replicas)


@pytest.mark.parametrize(("damage", "fragment"), [
    ("update runs set config = 'not json'", "a run or result row holds a column that is not JSON"),
    ("update attempt_results set generation = '{\"x\": 1}' where pk = 1", "does not read back"),
    ("drop table attempt_results", "no such table: attempt_results"),
    ("update runs set config = '[]'", "holds a config that is not a JSON object"),
    ("update runs set config = '{}'", "holds no evaluation options"),
])
def test_a_damaged_run_store_is_one_error_line(cli: Cli, tmp_path: Path, server: Server, damage: str,
                                               fragment: str, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # Rows edited (or a table dropped) outside tunesafe: every command that reads runs said so in a
    # traceback; it is one line naming the store, exit 2, and the file is left as it was.
    suite = write_suite(tmp_path / "s.jsonl", n_harmful=2, n_benign=1)
    code, _, err = cli("eval", server.ref(), "--suite", str(suite), "--attacks", "direct_request",
                       "--judge", "refusal", "--no-progress")
    assert code == 0, err
    [run_id] = cli.runs()
    with sqlite3.connect(cli.db) as conn:
        conn.execute(damage)
        conn.execute("update runs set status = 'interrupted'")
    damaged = _rows(cli.db)
    commands = [["runs", "list"], ["runs", "show", run_id], ["eval", "--resume", run_id, "--no-progress"]]
    if "attempt_results set" in damage:  # a result row: the commands that read results
        commands = commands[1:]
    elif "'{}'" in damage:  # a run without its options: only a resume needs them
        commands = commands[2:]
    for command in commands:
        code, _, err = Cli(cli.db, capsys, monkeypatch)(*command)
        assert code == 2, (command, err)
        assert fragment in err and str(cli.db) in err and "fix:" in err, err
    assert _rows(cli.db) == damaged  # nothing stored was lost or rewritten


def _rows(db: Path) -> list[tuple[object, ...]]:
    """What the store holds, but the runs' status (a resume that stops on the damage may move it)."""
    queries = {"runs": "select id, model_hash, config, config_hash, n_planned from runs",
               "attempt_results": "select * from attempt_results", "records": "select * from records"}
    with sqlite3.connect(db) as conn:
        tables = {t for (t,) in conn.execute("select name from sqlite_master where type = 'table'")}
        return [(t, *row) for t, query in queries.items() if t in tables for row in conn.execute(query)]


def test_runs_show_and_list_print_names_from_the_data_as_written(cli: Cli, tmp_path: Path,
                                                                  server: Server) -> None:
    # Category and suite names went through Rich markup: "[/b]" crashed the eval's summary (after the
    # run was stored) and `runs show`; "[v2]" vanished from the suite line
    suite = tmp_path / "tags[v2].jsonl"
    suite.write_text(json.dumps({"id": "h0", "text": "Explain forbidden thing 0.", "kind": "harmful",
                                 "category": "a[/b]"}) + "\n", encoding="utf-8")
    code, _, err = cli("eval", server.ref(), "--suite", str(suite), "--attacks", "direct_request",
                       "--judge", "refusal", "--no-progress", "--name", "ft[v2]")
    assert code == 0, err
    run_id = cli.runs()[0]
    code, out, err = cli("runs", "show", run_id)
    assert code == 0, err
    assert "category:a[/b]" in out and "tags[v2] v" in out
    code, out, err = cli("runs", "list")
    assert code == 0 and "ft[v2]" in out, err
