"""`tunesafe judge audit`: a stratified sheet of a gate's two runs (discordant pairs first) for a person
to label, the judge's agreement with the labels (95% Wilson interval) recorded as evidence and shown by
the next gate report on the run; bad sheets are input errors naming the file and line (exit 2).

The runs come from the real engine on two loopback models judged by the naive test judge of conftest.py
(it misreads the candidate's polite decline as compliance), so the person and the judge disagree there."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner, Result

from tunesafe.analysis.metrics import wilson
from tunesafe.cli.app import app
from tunesafe.evidence.store import Store
from tunesafe.types import RecordType


def _cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def _exit_2(*args: str) -> str:
    """The real entry point, where a UserError becomes one line and exit code 2; returns stderr."""
    done = subprocess.run([sys.executable, "-m", "tunesafe.cli.app", *args], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    return " ".join(done.stderr.split())


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _write(path: Path, rows: list[dict[str, str]], columns: list[str] | None = None) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns or list(rows[0]), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture
def gated(loopback: SimpleNamespace, tmp_path: Path) -> SimpleNamespace:
    db = f"sqlite:///{tmp_path / 'store.db'}"
    done = loopback.gate(db, tmp_path / "first")
    assert done.exit_code == 1, done.output  # the naive judge fails the candidate
    decision = json.loads(done.stdout)
    return SimpleNamespace(db=db, base=decision["base"]["run_id"], candidate=decision["candidate"]["run_id"],
                           decision=decision)


def test_sheet_then_labels_then_the_next_gate_report_shows_the_audit(loopback: SimpleNamespace,
                                                                     gated: SimpleNamespace,
                                                                     tmp_path: Path) -> None:
    sheet = tmp_path / "sheet.csv"
    done = _cli("--db", gated.db, "judge", "audit", gated.candidate, "--sample", "30", "--out", str(sheet))
    assert done.exit_code == 0, done.output
    rows = _read(sheet)
    assert len(rows) == 30 and all(r["label"] == "" for r in rows)
    # discordant pairs first, both sides of each; then the other strata
    strata = [r["stratum"] for r in rows]
    assert strata[:14] == ["discordant"] * 14 and "discordant" not in strata[14:]  # at most half the sample
    assert [r["side"] for r in rows[:4]] == ["base", "candidate", "base", "candidate"]
    assert {r["side"] for r in rows[14:]} == {"base", "candidate"}
    assert {r["run_id"] for r in rows} == {gated.base, gated.candidate}
    assert all(r["request"] and r["response"] and r["judge"] == "naive" for r in rows)

    for row in rows:  # the person reads both declines as refusals
        row["label"] = "refused" if row["response"] in (loopback.refusal, loopback.decline) else "complied"
    rows[-1]["label"] = ""  # a row left unlabelled is skipped
    _write(sheet, rows)
    scored = _cli("--db", gated.db, "judge", "audit", gated.candidate, "--labels", str(sheet), "--json")
    assert scored.exit_code == 0, scored.output
    audit = json.loads(scored.stdout)
    labelled = rows[:-1]
    agree = sum((r["label"] == "refused") == (r["judge_outcome"] == "refused") for r in labelled)
    expected = wilson(agree, len(labelled))
    assert audit["agreement"] == {"k": agree, "n": len(labelled), "rate": expected.rate, "low": expected.low,
                                  "high": expected.high, "method": "wilson"}
    assert 0 < agree < len(labelled)  # the polite declines are the disagreements
    assert audit["by_side"]["base"]["rate"] == 1.0
    assert audit["confusion"]["person refused, judge complied"] == len(labelled) - agree

    again = _cli("--db", gated.db, "compare", gated.base, gated.candidate, "--out", str(tmp_path / "next"),
                 "--json")
    decision = json.loads(again.stdout)
    (shown,) = decision["judge_audits"]
    assert (shown["record_id"], shown["run_id"], shown["side"]) == (audit["record_id"], gated.candidate,
                                                                     "candidate")
    summary = (tmp_path / "next" / "summary.md").read_text()
    assert f"judge audit #{audit['record_id']} of the candidate run" in summary
    with Store.open(gated.db) as store:
        (record,) = store.records(type=RecordType.JUDGE_AUDIT)
    assert record.body["n_labelled"] == len(labelled) and record.body["base_run"] == gated.base


def test_a_run_alone_is_sampled_by_outcome_and_family(gated: SimpleNamespace, tmp_path: Path) -> None:
    sheet = tmp_path / "base.csv"
    done = _cli("--db", gated.db, "judge", "audit", gated.base, "--sample", "12", "--out", str(sheet))
    assert done.exit_code == 0, done.output
    rows = _read(sheet)
    assert len(rows) == 12 and {r["side"] for r in rows} == {"run"}
    families = {r["family"] for r in rows}
    assert len(families) == 3 and {r["judge_outcome"] for r in rows} == {"refused", "complied"}


def test_bad_sheets_exit_2_naming_file_and_line(gated: SimpleNamespace, tmp_path: Path) -> None:
    sheet = tmp_path / "sheet.csv"
    assert _cli("--db", gated.db, "judge", "audit", gated.candidate, "--sample", "6", "--out",
                str(sheet)).exit_code == 0
    rows = _read(sheet)
    rows[2]["label"] = "maybe"
    _write(sheet, rows)
    message = _exit_2("--db", gated.db, "judge", "audit", gated.candidate, "--labels", str(sheet))
    assert f"{sheet}:4: bad label 'maybe'" in message and "refused or complied" in message

    _write(sheet, rows, columns=[c for c in rows[0] if c != "label"])
    assert f"{sheet}:1: column label missing" in _exit_2("--db", gated.db, "judge", "audit", gated.candidate,
                                                         "--labels", str(sheet))
    for row in rows:
        row["label"] = ""
    _write(sheet, rows)
    assert "no labelled row" in _exit_2("--db", gated.db, "judge", "audit", gated.candidate, "--labels",
                                        str(sheet))
    assert "exactly one of --out and --labels" in _exit_2("--db", gated.db, "judge", "audit", gated.candidate)
    with Store.open(gated.db) as store:
        assert not list(store.records(type=RecordType.JUDGE_AUDIT))  # nothing recorded from a bad sheet


def test_a_blocked_answer_counts_as_the_judge_saying_refused(build: SimpleNamespace, tmp_path: Path) -> None:
    """A deployment's content filter is a refusal in every rate; a person who labels it refused agrees."""
    from dataclasses import replace

    from tunesafe.analysis.audit import AuditRuns, score_sheet
    from tunesafe.types import Generation

    refused = build.result("r", "a1", "direct", "cyber", "harmful", "refused")
    blocked = replace(build.result("r", "a2", "direct", "cyber", "harmful", "refused"),
                      generation=Generation("", "content_filter", blocked="provider content filter"),
                      response="")
    with Store.open(f"sqlite:///{tmp_path / 'store.db'}") as store:
        build.store_run(store, "run", [refused, blocked], model_ref="hf:m")
        sheet = tmp_path / "sheet.csv"
        _write(sheet, [{"run_id": "run", "attempt_id": a, "label": "refused"} for a in ("a1", "a2")])
        record = score_sheet(store, AuditRuns("run", None, "default"), sheet)
    assert record.body["n_labelled"] == 2 and record.body["agreement"]["k"] == 2


def test_a_sheet_saved_in_a_legacy_encoding_exits_2(gated: SimpleNamespace, tmp_path: Path) -> None:
    # A spreadsheet's plain "CSV" export is Windows-1252: the reader raised UnicodeDecodeError (exit 1).
    sheet = tmp_path / "sheet.csv"
    assert _cli("--db", gated.db, "judge", "audit", gated.candidate, "--sample", "6", "--out",
                str(sheet)).exit_code == 0
    rows = _read(sheet)
    for row in rows:
        row["label"] = "refused"
    rows[0]["request"] = "placeholder caf\u00e9"
    with sheet.open("w", encoding="cp1252", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    message = _exit_2("--db", gated.db, "judge", "audit", gated.candidate, "--labels", str(sheet))
    assert str(sheet) in message and "UTF-8" in message, message
    with Store.open(gated.db) as store:
        assert not list(store.records(type=RecordType.JUDGE_AUDIT))


def test_a_row_labelled_twice_is_a_user_error_naming_its_line(build: SimpleNamespace, tmp_path: Path) -> None:
    # A copied row was counted twice: two agreements out of one judged item made the interval narrower.
    from tunesafe.analysis.audit import AuditRuns, score_sheet
    from tunesafe.errors import UserError

    results = [build.result("r", a, "direct", "cyber", "harmful", "refused") for a in ("a1", "a2")]
    with Store.open(f"sqlite:///{tmp_path / 'store.db'}") as store:
        build.store_run(store, "run", results, model_ref="hf:m")
        sheet = tmp_path / "sheet.csv"
        _write(sheet, [{"run_id": "run", "attempt_id": a, "label": "refused"} for a in ("a1", "a2", " a1")])
        with pytest.raises(UserError) as caught:
            score_sheet(store, AuditRuns("run", None, "default"), sheet)
        assert caught.value.where == f"{sheet}:4" and "line 2" in caught.value.message
        assert not list(store.records(type=RecordType.JUDGE_AUDIT))


def test_a_sheet_with_a_column_named_twice_is_a_user_error(build: SimpleNamespace, tmp_path: Path) -> None:
    # csv.DictReader keeps the last of two same-named columns: a second "label" column (a pasted copy, a
    # helper column) was scored and the labels the person wrote were silently ignored
    from tunesafe.analysis.audit import AuditRuns, score_sheet
    from tunesafe.errors import UserError

    results = [build.result("r", a, "direct", "cyber", "harmful", "refused") for a in ("a1", "a2")]
    with Store.open(f"sqlite:///{tmp_path / 'store.db'}") as store:
        build.store_run(store, "run", results, model_ref="hf:m")
        sheet = tmp_path / "sheet.csv"
        sheet.write_text("run_id,attempt_id,label,,label\nrun,a1,refused,,complied\nrun,a2,refused,,complied\n",
                         encoding="utf-8")
        with pytest.raises(UserError) as caught:
            score_sheet(store, AuditRuns("run", None, "default"), sheet)
        assert caught.value.where == f"{sheet}:1" and "label" in caught.value.message
        assert "twice" in caught.value.message
        assert not list(store.records(type=RecordType.JUDGE_AUDIT))


def test_a_base_run_not_judged_by_the_audited_judge_is_a_user_error(build: SimpleNamespace,
                                                                    tmp_path: Path) -> None:
    # Its rows had no verdict of that judge: all left out as errors (the sheet claimed both sides while
    # holding one), and a blocked one crashed the sheet with StopIteration.
    from dataclasses import replace

    from tunesafe.analysis.audit import audit_runs
    from tunesafe.errors import UserError
    from tunesafe.types import Generation

    candidate = [build.result("cand", a, "direct", "cyber", "harmful", "refused") for a in ("a1", "a2")]
    base = [build.result("base", "a1", "direct", "cyber", "harmful", "refused", judges=("other",)),
            replace(build.result("base", "a2", "direct", "cyber", "harmful", "refused", judges=("other",)),
                    generation=Generation("", "content_filter", blocked="provider content filter"),
                    response="")]
    with Store.open(f"sqlite:///{tmp_path / 'store.db'}") as store:
        build.store_run(store, "cand", candidate, model_ref="hf:c")
        build.store_run(store, "base", base, model_ref="hf:b", judges=({"name": "other", "version": "1"},))
        with pytest.raises(UserError) as caught:
            audit_runs(store, "cand", base_run="base")
    assert caught.value.where == "--base" and "'default'" in caught.value.message
