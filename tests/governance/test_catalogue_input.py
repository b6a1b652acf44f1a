"""A team's own controls catalogue with a field of the wrong shape is one clear error naming the file and
the control, exit 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunesafe.cli.app import main
from tunesafe.errors import UserError
from tunesafe.governance.controls import load_catalogue

BAD = [
    ("checks: 5", "checks"),
    ("checks: [[role_decision]]", "checks"),
    ("attestation: 5", "attestation"),
    ("refs: {AIA: '9'}", "refs"),
    ("params: [1, 2]", "params"),
    ("evidence: just text", "evidence"),
    ("verify: 3", "verify"),
]


@pytest.mark.parametrize(("field", "key"), BAD)
def test_a_wrongly_shaped_control_field_is_a_user_error(tmp_path: Path, field: str, key: str) -> None:
    path = tmp_path / "controls.yaml"
    path.write_text(f"schema: team/v1\nversion: '1'\ncontrols:\n- id: OK-1\n  phase: pre\n"
                    f"- id: X-1\n  phase: pre\n  {field}\n")
    with pytest.raises(UserError) as raised:
        load_catalogue(path)
    error = raised.value
    where = str(error.where)
    assert str(path) in where and "controls[1]" in where and "line 6" in where
    assert f"`{key}`" in error.message and "X-1" in error.message and error.fix


def test_an_unknown_max_rating_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "controls.yaml"
    path.write_text("controls:\n- id: X-1\n  phase: pre\n  checks: [scan_rating]\n"
                    "  params: {max_rating: severe}\n")
    with pytest.raises(UserError, match="max_rating"):
        load_catalogue(path)


def test_the_cli_prints_one_line_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "controls.yaml"
    path.write_text("controls:\n- id: X-1\n  phase: pre\n  params: [1, 2]\n")
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setattr("sys.argv", ["tunesafe", "controls", "list", "--catalogue", str(path)])
    with pytest.raises(SystemExit) as exited:
        main()
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.startswith("error:") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and "params" in err


@pytest.mark.parametrize(("text", "where", "fragment"), [
    # the syntax error was PyYAML's several-line text, naming no line of the file
    ("controls:\n- id: X-1\n  phase: pre\n  checks: [\n", ":5", "invalid YAML"),
    # the last of two equal keys was kept: the control's first phase was dropped without a word
    ("controls:\n- id: X-1\n  phase: pre\n  phase: post\n", ":4", "duplicate key 'phase'"),
    # dict() of a list: a TypeError traceback
    ("ref_prefixes: [AIA, NIST]\ncontrols:\n- id: X-1\n  phase: pre\n", "",
     "`ref_prefixes` must be a mapping"),
])
def test_a_catalogue_yaml_mistake_is_one_line_naming_file_and_line(tmp_path: Path, text: str, where: str,
                                                                    fragment: str) -> None:
    path = tmp_path / "controls.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as raised:
        load_catalogue(path)
    error = raised.value
    assert error.where == f"{path}{where}" and fragment in error.message, error.render()
    assert "\n" not in error.render()
