"""Options whose range Typer checks (min=/max=) give the project's one error line on a bad value, naming the
option, the value and the allowed range, with exit code 2: not Typer's boxed usage error. Every ranged
option of the command tree is tried, so an option added later is covered too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from tunesafe.cli.app import app, main


def ranged_options() -> Iterator[tuple[tuple[str, ...], Any]]:
    def walk(command: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
        for param in command.params:
            if getattr(param, "min", None) is not None or getattr(param, "max", None) is not None:
                yield path, param
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, (*path, name))

    yield from walk(typer.main.get_command(app), ())


def out_of_range(param: Any) -> list[float]:
    return ([] if param.min is None else [param.min - 1]) + ([] if param.max is None else [param.max + 1])


CASES = [(path, param, bad) for path, param in ranged_options() if param.param_type_name == "option"
         for bad in out_of_range(param)]
IDS = [f"{' '.join(path)} {param.opts[0]} {bad}" for path, param, bad in CASES]


def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str]:
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setattr("sys.argv", ["tunesafe", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    code = exit_info.value.code
    _out, err = capsys.readouterr()
    return (code if isinstance(code, int) else 0), err


def bound_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def test_the_cli_has_ranged_options() -> None:
    assert {" ".join(path) for path, _, _ in CASES} >= {"serve", "scan-data", "train-lora", "chat"}


@pytest.mark.parametrize(("path", "param", "bad"), CASES, ids=IDS)
def test_a_value_out_of_range_is_one_line(path: tuple[str, ...], param: Any, bad: float, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    option = max(param.opts, key=len)
    code, err = run(capsys, monkeypatch, *path, option, str(bad))
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "╭" not in err and "Usage:" not in err, err
    assert err.startswith("error: ") and option in err and str(bad) in err, err
    for limit in (param.min, param.max):
        if limit is not None:
            assert bound_text(limit) in err, err
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_a_value_that_is_not_a_number_names_the_range_too(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, err = run(capsys, monkeypatch, "serve", "--port", "http")
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "╭" not in err, err
    assert "--port" in err and "http" in err and "1" in err and "65535" in err, err
