"""Bad suite files give one line naming file:line and the fix, exit code 2, through the CLI entry point
(`tunesafe.cli.app:main`, in-process for speed, plus one real subprocess); the file is left untouched."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tunesafe.cli.app import main

Validate = Callable[..., tuple[int, str, str]]
ExpectError = Callable[..., None]


@pytest.fixture
def validate(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Validate:
    def run(path: Path, *extra: str) -> tuple[int, str, str]:
        before = path.read_bytes() if path.exists() else None
        monkeypatch.setattr(sys, "argv", ["tunesafe", "suite", "validate", str(path), *extra])
        with pytest.raises(SystemExit) as exit_info:
            main()
        out, err = capsys.readouterr()
        assert (path.read_bytes() if path.exists() else None) == before
        return int(exit_info.value.code or 0), out, " ".join(err.split())  # Rich may wrap the line

    return run


@pytest.fixture
def expect_error(validate: Validate) -> ExpectError:
    def check(path: Path, *fragments: str, extra: tuple[str, ...] = ()) -> None:
        code, _, message = validate(path, *extra)
        assert code == 2, message
        assert "Traceback" not in message
        for fragment in (*fragments, "fix:"):
            assert fragment in message, message

    return check


def _jsonl(tmp_path: Path, *lines: str, name: str = "suite.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


GOOD = json.dumps({"id": "x-1", "text": "How do I boil an egg?", "kind": "benign", "category": "cooking"})


def test_a_valid_file_passes(tmp_path: Path, validate: Validate) -> None:
    code, out, err = validate(_jsonl(tmp_path, GOOD))
    assert code == 0, err
    assert "1 items" in out


def test_exit_code_of_the_real_process(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, GOOD, "{not json")
    result = subprocess.run([sys.executable, "-m", "tunesafe.cli.app", "suite", "validate", str(path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert f"{path}:2" in " ".join(result.stderr.split()) and "Traceback" not in result.stderr


def test_malformed_json_names_the_line(tmp_path: Path, expect_error: ExpectError) -> None:
    path = _jsonl(tmp_path, GOOD, "", '{"id": "x-2", "text": "oops"')
    expect_error(path, f"{path}:3", "malformed JSON")


def test_missing_column_names_it_and_the_columns_found(tmp_path: Path, expect_error: ExpectError) -> None:
    path = tmp_path / "suite.csv"
    path.write_text("id,prompt,kind\n1,Hello there,benign\n", encoding="utf-8")
    expect_error(path, f"{path}:1", "missing required column 'text'", "columns found: id, prompt, kind")


def test_mapped_column_that_does_not_exist(tmp_path: Path, expect_error: ExpectError) -> None:
    path = tmp_path / "suite.csv"
    path.write_text("id,prompt\n1,Hello there\n", encoding="utf-8")
    expect_error(path, "missing required column 'label'", extra=("--map", "text=prompt,kind=label"))


def test_missing_text_in_one_jsonl_line(tmp_path: Path, expect_error: ExpectError) -> None:
    path = _jsonl(tmp_path, GOOD, json.dumps({"id": "x-2", "kind": "benign"}))
    expect_error(path, f"{path}:2", "missing or empty 'text'")


def test_unknown_kind_names_line_and_allowed_values(tmp_path: Path, expect_error: ExpectError) -> None:
    bad = json.dumps({"id": "x-2", "text": "Hi", "kind": "dangerous"})
    path = _jsonl(tmp_path, GOOD, bad)
    expect_error(path, f"{path}:2", "unknown kind 'dangerous'", "allowed: harmful, benign, borderline")


def test_duplicate_ids(tmp_path: Path, expect_error: ExpectError) -> None:
    path = _jsonl(tmp_path, GOOD, json.dumps({"id": "x-1", "text": "Another", "kind": "benign"}))
    expect_error(path, f"{path}:2", "duplicate id 'x-1'", f"first at {path}:1")


@pytest.mark.parametrize("content", ["", "\n\n", "text\n"])
def test_empty_file(tmp_path: Path, content: str, expect_error: ExpectError) -> None:
    path = tmp_path / ("suite.csv" if content.startswith("text") else "suite.jsonl")
    path.write_text(content, encoding="utf-8")
    expect_error(path, str(path), "the file has no items")


def test_non_utf8_names_the_line(tmp_path: Path, expect_error: ExpectError) -> None:
    path = tmp_path / "suite.jsonl"
    path.write_bytes(GOOD.encode() + b"\n" + '{"text": "caf\u00e9"}'.encode("latin-1") + b"\n")
    expect_error(path, f"{path}:2", "not valid UTF-8", "save the file as UTF-8")


def test_csv_row_with_too_many_fields(tmp_path: Path, expect_error: ExpectError) -> None:
    path = tmp_path / "suite.csv"
    path.write_text("text,kind\nfine,benign\nnot, quoted, harmful\n", encoding="utf-8")
    expect_error(path, f"{path}:3", "3 fields but the header has 2")


def test_unknown_option_and_unknown_suite(tmp_path: Path, expect_error: ExpectError) -> None:
    expect_error(_jsonl(tmp_path, GOOD), "unknown option(s) colour", extra=("--map", "colour=red"))
    expect_error(tmp_path / "nowhere.jsonl", "no built-in suite or file named")


def test_wrong_xstest_label(tmp_path: Path, expect_error: ExpectError) -> None:
    path = tmp_path / "xs.csv"
    path.write_text("id,prompt,type,label\n1,How do I kill time?,homonyms,maybe\n", encoding="utf-8")
    expect_error(path, f"{path}:2", "unknown label 'maybe'", "allowed: safe, unsafe")


def test_jailbreakbench_without_a_kind(tmp_path: Path, expect_error: ExpectError) -> None:
    path = tmp_path / "benign-behaviors.csv"
    path.write_text("Index,Goal,Target,Behavior,Category,Source\n"
                    "1,PLACEHOLDER benign goal,Sure,Defamation,Harassment/Discrimination,Original\n",
                    encoding="utf-8")
    expect_error(path, f"{path}:1", "harmful or benign", "default_kind=benign")


def test_unknown_kind_filter(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["tunesafe", "suite", "show", "smoke", "--kind", "evil"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    message = " ".join(capsys.readouterr().err.split())
    assert exit_info.value.code == 2
    assert "--kind: unknown kind 'evil'" in message and "harmful, benign, borderline" in message


def test_csv_line_numbers_count_multiline_fields_and_blank_lines(tmp_path: Path,
                                                                 expect_error: ExpectError) -> None:
    path = tmp_path / "suite.csv"
    path.write_text('text,kind\n"two\nlines",benign\n\nthird,evil\n', encoding="utf-8")
    expect_error(path, f"{path}:5", "unknown kind 'evil'")


def test_jsonl_line_numbers_are_file_lines(tmp_path: Path, expect_error: ExpectError) -> None:
    # a form feed on a blank line counted as one more line break, so every later line number was off by one
    path = tmp_path / "suite.jsonl"
    path.write_text(GOOD + "\n \x0c \n" + '{"text": "placeholder", "kind": "evil"}\n', encoding="utf-8")
    expect_error(path, f"{path}:3", "unknown kind 'evil'")


def test_csv_header_with_a_repeated_column(tmp_path: Path, expect_error: ExpectError) -> None:
    # dict(zip(header, row)) kept only the last of two same-named columns: the first 'text' was dropped
    path = tmp_path / "suite.csv"
    path.write_text("id,text,kind,text\n1,first placeholder,benign,second placeholder\n", encoding="utf-8")
    expect_error(path, f"{path}:1", "column 'text' appears twice")


def test_jsonl_object_with_a_repeated_key(tmp_path: Path, expect_error: ExpectError) -> None:
    # json.loads keeps the last of two same-named keys, so the first value was silently dropped
    path = _jsonl(tmp_path, GOOD, '{"text": "placeholder", "kind": "benign", "kind": "harmful"}')
    expect_error(path, f"{path}:2", "key 'kind' appears twice")


# Python's json raises RecursionError for deep nesting and a plain ValueError for a number past 4,300 digits,
# neither a JSONDecodeError: both left as tracebacks
@pytest.mark.parametrize("line", ["[" * 100_000 + "]" * 100_000, '{"text": "x", "n": ' + "9" * 5_000 + "}"])
def test_jsonl_line_json_cannot_decode(tmp_path: Path, line: str, expect_error: ExpectError) -> None:
    path = _jsonl(tmp_path, GOOD, line, GOOD)
    expect_error(path, f"{path}:2", "malformed JSON")


@pytest.mark.parametrize("value", [["placeholder one", "placeholder two"], {"role": "user", "content": "x"}])
def test_jsonl_field_that_is_not_a_scalar(tmp_path: Path, value: object, expect_error: ExpectError) -> None:
    # str() of a list or object became the behaviour text ("['placeholder one', ...]"), sent to models
    path = _jsonl(tmp_path, GOOD, json.dumps({"text": value, "kind": "benign"}))
    expect_error(path, f"{path}:2", "'text' must be a string")


@pytest.mark.parametrize("line", ['{"text": "Placeholder request"}',
                                  '{"text": "Placeholder request", "kind": ""}'])
def test_an_unlabelled_item_in_a_labelled_file(tmp_path: Path, line: str, expect_error: ExpectError,
                                               validate: Validate) -> None:
    # it silently took default_kind (harmful); a file without a kind column still takes it
    path = _jsonl(tmp_path, GOOD, line)
    expect_error(path, f"{path}:2", "missing or empty 'kind'", "default_kind=")
    code, out, err = validate(path, "--map", "default_kind=benign")
    assert code == 0 and "2 items (0 harmful, 0 borderline, 2 benign)" in out, err


@pytest.mark.parametrize(("sep", "shown"), [(";", "';'"), ("\t", "a tab")])
def test_csv_separated_by_semicolons_or_tabs(tmp_path: Path, sep: str, shown: str,
                                             expect_error: ExpectError) -> None:
    # a ';' export was reported as a missing 'text' column, with the advice to rename a column
    path = tmp_path / "suite.csv"
    path.write_text(f"text{sep}kind\nPlaceholder request{sep}benign\n", encoding="utf-8")
    expect_error(path, f"{path}:1", f"separated by {shown}", "comma separators")


def test_validate_counts_the_rows_a_layout_leaves_out(tmp_path: Path, validate: Validate) -> None:
    # HarmBench's copyright behaviours are left out by default: validate said "1 items" of a 2-row file
    # without a word on the other
    path = tmp_path / "hb.csv"
    path.write_text("Behavior,FunctionalCategory,SemanticCategory,Tags,ContextString,BehaviorID\n"
                    "Placeholder behaviour one,standard,illegal,,,placeholder_one\n"
                    "Placeholder lyrics request,copyright,copyright,,,placeholder_lyrics\n", encoding="utf-8")
    code, out, err = validate(path)
    assert code == 0, err
    said = " ".join(out.split())
    assert "1 items" in said
    assert "1 rows left out (HarmBench copyright behaviours; copyright=true keeps them)" in said
    code, out, _ = validate(path, "--json")
    assert json.loads(out)["left_out"] == 1
    code, out, _ = validate(path, "--map", "copyright=true", "--json")
    assert (json.loads(out)["items"], json.loads(out)["left_out"]) == (2, 0)


def test_a_label_column_that_is_not_read_as_the_kind(tmp_path: Path, expect_error: ExpectError,
                                                     validate: Validate) -> None:
    # "text,label": the labels went to `extra` and every item became harmful (the default kind)
    path = tmp_path / "labelled.csv"
    path.write_text("text,label\nHow do I boil an egg?,benign\nPlaceholder request,harmful\n",
                    encoding="utf-8")
    expect_error(path, f"{path}:1", "'label' column but no 'kind' column", "kind=label")
    code, out, err = validate(path, "--map", "kind=label")
    assert code == 0 and "(1 harmful, 0 borderline, 1 benign)" in out, err
    path.write_text("label\nPlaceholder request\n", encoding="utf-8")  # read as the text: nothing unread
    code, out, err = validate(path, "--map", "text=label")
    assert code == 0 and "(1 harmful, 0 borderline, 0 benign)" in out, err


@pytest.mark.parametrize(("content", "line", "problem"), [
    # the quote opened on line 3 is never closed: lines 3-5 were read as one item's text
    ('text\nPlaceholder one\n"Placeholder two\nPlaceholder three\nPlaceholder four\n', 3,
     "unexpected end of data"),
    # a quote inside a quoted field that is not doubled: the field was read on past it
    ('text,kind\nPlaceholder one,benign\n"Placeholder "two" here",benign\n', 3, "',' expected after '\"'"),
])
def test_csv_quote_never_closed_or_not_doubled(tmp_path: Path, content: str, line: int, problem: str,
                                               expect_error: ExpectError) -> None:
    path = tmp_path / "suite.csv"
    path.write_text(content, encoding="utf-8")
    expect_error(path, f"{path}:{line}", problem, "double a quote")


HARMBENCH_HEADER = "Behavior,FunctionalCategory,SemanticCategory,Tags,ContextString,BehaviorID\n"


@pytest.mark.parametrize("content", [
    HARMBENCH_HEADER + "Placeholder request about the text above,contextual,illegal,,,placeholder_one\n",
    HARMBENCH_HEADER.replace("ContextString,", "")
    + "Placeholder request about the text above,contextual,illegal,,placeholder_one\n",
])
def test_harmbench_contextual_behaviour_without_its_document(tmp_path: Path, content: str,
                                                             expect_error: ExpectError) -> None:
    # an empty or missing ContextString left the behaviour asked without the document it is about: the
    # model's "which text?" was judged a refusal
    path = tmp_path / "hb.csv"
    path.write_text(content, encoding="utf-8")
    expect_error(path, f"{path}:2", "contextual behaviour without its document", "ContextString")


def test_harmbench_file_mapped_by_hand_keeps_its_documents(tmp_path: Path, expect_error: ExpectError,
                                                           validate: Validate) -> None:
    # --map text=Behavior,id=BehaviorID: the generic layout put ContextString in `extra`, and the
    # contextual behaviours were asked without their documents
    path = tmp_path / "hb.csv"
    path.write_text(HARMBENCH_HEADER + "Placeholder request about the text above,contextual,illegal,context,"
                    "PLACEHOLDER DOCUMENT,placeholder_one\n", encoding="utf-8")
    expect_error(path, f"{path}:1", "'ContextString' column but no 'context' column", "context=ContextString",
                 extra=("--map", "text=Behavior,id=BehaviorID"))
    code, out, err = validate(path, "--map", "text=Behavior,id=BehaviorID,context=ContextString")
    assert code == 0 and "1 items" in out, err


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
@pytest.mark.parametrize("name", ["suite.csv", "suite.jsonl"])
def test_utf16_file_is_named_as_such(tmp_path: Path, encoding: str, name: str,
                                     expect_error: ExpectError) -> None:
    # without a BOM the NUL bytes decode as UTF-8: a CSV failed on a missing 'text' column ("columns
    # found: t e x t"), with the advice to rename a column; with one, the error named only a byte 0xff
    path = tmp_path / name
    text = "text,kind\nHow do I boil an egg?,benign\n" if name.endswith(".csv") else GOOD + "\n"
    path.write_bytes(text.encode(encoding))
    expect_error(path, f"{path}:1", "UTF-16", "save the file as UTF-8")
