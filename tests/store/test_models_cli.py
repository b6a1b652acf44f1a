"""`tunesafe models ...` and `init` through the real entry point (tunesafe.cli.app.main, in-process for
speed): tables and --json output, the lineage tree, and bad input as one line with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunesafe.cli.app import main
from tunesafe.evidence.workspace import open_store
from tunesafe.production.inventory import record_safety_eval


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        self.capsys, self.monkeypatch = capsys, monkeypatch
        monkeypatch.setenv("COLUMNS", "250")
        monkeypatch.delenv("TUNESAFE_DB", raising=False)

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.monkeypatch.setattr("sys.argv", ["tunesafe", *args])
        with pytest.raises(SystemExit) as exit_info:
            main()
        out, err = self.capsys.readouterr()
        code = exit_info.value.code
        return (code if isinstance(code, int) else 0), out, " ".join(err.split())


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Cli:
    monkeypatch.chdir(tmp_path)
    runner = Cli(capsys, monkeypatch)
    assert runner("init")[0] == 0
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_model.safetensors").write_bytes(b"\x02" * 100)
    (tmp_path / "train.jsonl").write_text('{"messages": []}\n')
    return runner


def test_add_list_show_and_missing_post_eval(cli: Cli) -> None:
    assert (
        cli("models", "add", "base", "--ref", "embedded:qwen2.5-coder-0.5b", "--stage", "production")[0] == 0
    )
    code, out, err = cli(
        "models",
        "add",
        "ft",
        "--ref",
        "embedded:qwen2.5-coder-0.5b+adapter",
        "--base",
        "base",
        "--dataset",
        "train.jsonl",
        "--stage",
        "production",
        "--owner",
        "team-a",
    )
    assert code == 0, err
    assert "Recorded ft version 1" in out and "2 file hashes" in out

    code, out, _ = cli("models", "list", "--stage", "production", "--missing-post-eval", "--json")
    assert code == 0
    assert [(m["name"], m["post_eval"]) for m in json.loads(out)] == [("ft", "missing")]
    code, out, _ = cli("models", "list")
    assert "base" in out and "missing" in out

    with open_store(None) as store:
        record_safety_eval(store, "ft", verdict="pass")
    code, out, _ = cli("models", "list", "--missing-post-eval", "--json")
    assert json.loads(out) == []
    code, out, _ = cli("models", "list", "--json")
    assert {m["name"]: m["post_eval"] for m in json.loads(out)} == {
        "base": None,
        "ft": "safety_eval pass (#3)",
    }

    code, out, _ = cli("models", "show", "ft")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("base v1") and any("└── ft v1" in line for line in lines)
    assert any("adapter: sha256" in line for line in lines) and any(
        "#3 safety_eval pass" in line for line in lines
    )
    code, out, _ = cli("models", "show", "ft", "--json")
    lineage = json.loads(out)["lineage"]
    assert [m["name"] for m in lineage] == ["base", "ft"]
    assert [e["type"] for e in lineage[1]["evidence"]] == ["model_version", "safety_eval"]

    assert cli("models", "update", "ft", "--stage", "staging")[0] == 0
    code, out, _ = cli("models", "list", "--stage", "staging", "--json")
    assert [m["name"] for m in json.loads(out)] == ["ft"]
    assert cli("verify")[0] == 0


def test_import_command(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "inv.csv").write_text("name,ref,base\nchild,litellm:gpt-4o-mini,root\nroot,embedded:x,\n")
    code, out, err = cli("models", "import", "inv.csv", "--json")
    assert code == 0, err
    assert json.loads(out) == {"added": ["root", "child"], "skipped": []}
    code, out, _ = cli("models", "import", "inv.csv", "--skip-existing")
    assert code == 0 and "Imported 0 models, skipped 2" in out


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("models", "add", "m", "--ref", "weird:thing"), ("unknown model ref 'weird:thing'", "fix:")),
        (("models", "add", "m", "--ref", "gguf:nope.gguf"), ("nope.gguf", "not found")),
        (
            ("models", "add", "m", "--ref", "embedded:x", "--dataset", "gone.jsonl"),
            ("gone.jsonl", "not found"),
        ),
        (("models", "add", "m", "--ref", "embedded:x", "--base", "ghost"), ("--base", "'ghost'")),
        (("models", "add", "m", "--ref", "embedded:x", "--stage", "prod"), ("--stage", "dev, staging")),
        (
            ("models", "add", "dup", "--ref", "embedded:x"),
            ("'dup' is already in the inventory", "--new-version"),
        ),
        (("models", "show", "ghost"), ("'ghost' is not in the inventory",)),
        (("models", "list", "--stage", "live"), ("unknown stage 'live'",)),
        (("models", "import", "absent.yaml"), ("absent.yaml", "inventory file not found")),
        (("models", "update", "dup"), ("nothing to update",)),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    cli: Cli, args: tuple[str, ...], fragments: tuple[str, ...]
) -> None:
    assert cli("models", "add", "dup", "--ref", "embedded:x")[0] == 0
    code, out, err = cli(*args)
    assert code == 2, (out, err)
    assert err.startswith("error:") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err
    code, out, _ = cli("models", "list", "--json")
    assert [m["name"] for m in json.loads(out)] == ["dup"]  # nothing else written


def test_init_on_a_file_is_refused(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    code, _, err = cli("init", "a-file")
    assert code == 2 and "a-file: is a file, not a folder" in err


def test_init_where_the_folder_cannot_be_made_is_one_error(cli: Cli, tmp_path: Path) -> None:
    # a parent that is a file: mkdir raised NotADirectoryError, printed as a traceback (exit 1)
    (tmp_path / "a-file").write_text("x")
    code, _, err = cli("init", "a-file/workspace")
    assert code == 2 and "Traceback" not in err, err
    assert "a-file/workspace: cannot create the workspace: Not a directory" in err
