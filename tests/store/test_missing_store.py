"""A command that only reads the store, given a --db (or a workspace) whose database does not exist, is one
line naming the path with exit code 2, and leaves no file behind: a mistyped --db must not turn into an
empty store that later commands silently use. Commands that record evidence still create the store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tunesafe.evidence.store import Store
from tunesafe.evidence.workspace import init_workspace

READ_ONLY = [
    ("verify",),
    ("runs", "list"),
    ("runs", "show", "run-1"),
    ("runs", "rejudge", "run-1"),
    ("compare", "run-1", "run-2"),
    ("judge", "audit", "run-1", "--out", "sheet.csv"),
    ("models", "list"),
    ("models", "show", "bot"),
    ("models", "update", "bot", "--stage", "production"),
    ("models", "endpoints"),
    ("incidents", "list"),
    ("incidents", "show", "INC-1"),
    ("incidents", "due"),
    ("incidents", "report", "INC-1"),
    ("incidents", "update", "INC-1", "--status", "investigating"),
    ("incidents", "close", "INC-1", "--resolution", "fixed"),
    ("incidents", "to-suite", "INC-1"),
    ("controls", "status", "bot"),
    ("lineage", "bot"),
    ("docs", "annex-iv", "bot", "--out", "docs"),
    ("docs", "model-card", "bot"),
    ("export", "cyclonedx", "bot"),
    ("export", "mlflow", "bot", "--tracking-uri", "sqlite:///mlflow.db"),
    ("bundle", "bot", "--out", "b.zip"),
    ("monitor", "daily"),
    ("redteam", "schedule", "list"),
    ("redteam", "schedule", "remove", "S-1"),
    ("training", "list"),
    ("training", "report", "run-1"),
]


Run = Callable[..., tuple[int, str]]


@pytest.fixture
def run(tunesafe_cli: Callable[..., tuple[int, str, str]]) -> Run:
    """`tunesafe ARGS`: (exit code, what it printed to stderr)."""
    def err(*args: str) -> tuple[int, str]:
        code, _out, said = tunesafe_cli(*args)
        return code, said

    return err


@pytest.mark.parametrize("command", READ_ONLY, ids=" ".join)
def test_a_read_only_command_on_a_missing_store_creates_nothing(
        command: tuple[str, ...], tmp_path: Path, run: Run,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "sub" / "missing.db"
    code, err = run("--db", str(missing), *command)
    assert code == 2, err
    assert f"no tunesafe store at {missing}" in err and "--db" in err, err
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert not missing.exists() and not missing.parent.exists()


def test_a_sqlite_url_and_a_workspace_without_its_database_alike(
        tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "missing.db"
    code, err = run("--db", f"sqlite:///{missing}", "runs", "list")
    assert code == 2 and f"no tunesafe store at {missing}" in err, err
    assert not missing.exists()

    workspace, _ = init_workspace(tmp_path / "proj")
    db = Path(workspace.db_url())
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    monkeypatch.chdir(workspace.root)
    code, err = run("models", "list")
    assert code == 2 and f"no tunesafe store at {db}" in err, err
    assert not db.exists()


def test_a_sqlite_file_without_a_tunesafe_schema_is_no_store(
        tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
    conn.close()
    code, err = run("--db", str(other), "verify")
    assert code == 2 and f"no tunesafe store at {other}" in err, err
    with sqlite3.connect(other) as conn:  # nothing was migrated into it
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.close()
    assert tables == {"notes"}


ENDPOINT = "openai:m@http://127.0.0.1:9/v1"  # never called: each command below is refused first
EMBEDDED = "embedded:qwen2.5-coder-0.5b"
EXAMPLE_LOG = Path(__file__).parents[2] / "examples" / "production" / "chat-completions.jsonl"
BAD_WRITES = [
    ("eval", EMBEDDED, "--suite", "no-such-suite"),
    ("eval", EMBEDDED, "--attacks", "no_such_attack"),
    ("eval", EMBEDDED, "--judge", "no-such-judge"),
    ("eval", "gguf:missing.gguf"),
    ("eval", "nosuch:model"),
    ("eval", EMBEDDED, "--resume", "run-1"),  # a stored run: no store, no run
    ("eval", EMBEDDED, "--replay-from", "run-1"),
    ("eval", EMBEDDED, "--attest-weights"),  # vouches for an inventory version, and no --name says which
    ("gate", "--base", EMBEDDED, "--candidate", EMBEDDED, "--attest-weights"),
    ("gate", "--base", EMBEDDED, "--candidate", "gguf:missing.gguf"),
    ("gate", "--base", EMBEDDED, "--candidate", EMBEDDED, "--suite", "no-such-suite"),
    ("gate", "--base", EMBEDDED, "--candidate", EMBEDDED, "--judge", "no-such-judge"),
    ("models", "add", "bot", "--ref", "nosuch:model"),
    ("models", "add", "bot", "--ref", "gguf:missing.gguf"),
    ("models", "add", "bot", "--ref", ENDPOINT, "--dataset", "missing.jsonl"),
    ("models", "add", "bot", "--ref", ENDPOINT, "--training-config", "missing.yaml"),
    ("models", "add", "bot", "--ref", ENDPOINT, "--stage", "no-such-stage"),
    ("models", "add", "bot v2", "--ref", ENDPOINT),
    ("models", "add", "ft", "--ref", ENDPOINT, "--base", "bot"),  # a base in an inventory that is not there
    ("models", "add", "bot", "--ref", ENDPOINT, "--new-version"),
    ("models", "import", "missing.csv"),
    ("incidents", "open", "bot", "--title", "t", "--severity", "no-such-severity"),
    ("incidents", "open", "bot", "--title", "t", "--severity", "low", "--kind", "no-such-kind"),
    ("incidents", "open", "bot", "--title", " ", "--severity", "low"),
    ("incidents", "open", "bot", "--title", "t", "--severity", "low", "--aware-at", "2026-12-01T09:30:00"),
    ("incidents", "open", "bot", "--title", "t", "--severity", "low", "--evidence", "1"),
    # each records against a model of the inventory, which a store that is not there cannot hold
    ("controls", "attest", "bot", "PRE-00", "--by", "a", "--note", "n"),
    ("role", "decide", "bot", "--intended-purpose", "support", "--annex-iii", "none", "--no-annex-i",
     "--own-name", "--base-gpai", "--base-flop", "unknown", "--params", "5e8", "--tokens", "1e6"),
    ("redteam", "schedule", "add", "bot", "--every", "7d"),
    ("models", "endpoint", "ep", "--model", "bot"),
    ("redteam", "run-due"),  # runs stored schedules: on a mistyped --db it said nothing was due (exit 0)
    ("guardrails", "verify", "--guard", f"llama-guard:{ENDPOINT}?guard_prompt=xml", "--suite", "smoke"),
    ("guardrails", "verify", "--guard", "nosuch:thing", "--suite", "smoke"),
    ("guardrails", "verify", "--guard", f"llama-guard:{ENDPOINT}", "--suite", "no-such-suite"),
    ("guardrails", "verify", "--guard", f"llama-guard:{ENDPOINT}", "--model", "gguf:missing.gguf"),
    ("guardrails", "verify", "--guard", f"llama-guard:{ENDPOINT}", "--endpoint", "ep"),  # a stored endpoint
    ("monitor", "ingest", "missing.jsonl", "--model", "bot"),
    ("monitor", "ingest", ".", "--model", "bot"),  # a folder, not a log
    ("monitor", "ingest", str(EXAMPLE_LOG), "--model", "bot"),  # a model of the inventory: a stored one
]


@pytest.mark.parametrize("command", BAD_WRITES, ids=" ".join)
def test_a_recording_command_refuses_bad_input_before_it_creates_the_store(
        command: tuple[str, ...], tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command exited 2 as it should, but left a new, empty store at the --db path behind, which a
    later command then took for the real one."""
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "sub" / "new.db"
    code, err = run("--db", str(missing), *command)
    assert code == 2 and "Traceback" not in err, err
    assert not missing.exists() and not missing.parent.exists(), err


def test_monitor_ingest_of_a_missing_log_names_the_log_and_creates_no_store(
        tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """The missing log was one error (exit 2) read inside the store's `with`: an empty store was left."""
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "new.db"
    code, err = run("--db", str(db), "monitor", "ingest", "nope.jsonl", "--model", "bot")
    assert code == 2 and "cannot read the log" in err and "nope.jsonl" in err, err
    assert not db.exists()


def test_commands_that_record_still_create_the_store(
        tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "new" / "store.db"
    code, err = run("--db", str(db), "incidents", "open", "bot", "--title", "t",
                    "--severity", "low")
    assert code == 0, err
    code, err = run("--db", str(db), "incidents", "list")
    assert code == 0, err
    with Store.open(str(db), must_exist=True) as store:
        assert store.verify().ok


@pytest.mark.parametrize(("config", "fragment"), [
    # a list or mapping became the file name ".tunesafe/[1]" and a writing command made a store there
    ("version: 1\ndb: [a.db]\n", "config.yaml: `db` must be a path or a database URL"),
    ("version: 1\ndb: {path: a.db}\n", "config.yaml: `db` must be a path or a database URL"),
    # the last of two `db:` lines was used without a word: records went where the reader did not expect
    ("version: 1\ndb: a.db\ndb: b.db\n", "config.yaml:3: invalid YAML: duplicate key 'db'"),
    ("version: 1\ndb: 'a.db\n", "config.yaml:3: invalid YAML"),
])
def test_a_workspace_config_mistake_is_one_error_and_creates_no_store(
        tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch, config: str, fragment: str) -> None:
    workspace, _ = init_workspace(tmp_path / "proj")
    workspace.config_path.write_text(config, encoding="utf-8")
    before = sorted(p.name for p in workspace.dir.iterdir())
    monkeypatch.chdir(workspace.root)
    monkeypatch.delenv("TUNESAFE_DB", raising=False)
    code, err = run("incidents", "open", "bot", "--title", "t", "--severity", "low")
    assert code == 2 and "Traceback" not in err, err
    assert fragment in err, err
    assert sorted(p.name for p in workspace.dir.iterdir()) == before
