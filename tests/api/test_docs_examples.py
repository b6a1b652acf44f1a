"""The Python examples in docs/ run as written, so the docs cannot drift from the API.

docs/python-api.md runs block after block in one namespace against loopback servers (tunesafe.testing):
its notebook session with BASE / TUNED pointed at the smoke pair instead of a vLLM server, the rest as
written. Every other ```python block in docs/ compiles and imports only names that exist (most are
fragments of a training script). The documented return types are checked on the annotations, as a type
checker reads them through py.typed."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import typing
from importlib import import_module
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import tunesafe
from tunesafe.cli.app import app
from tunesafe.testing.smoke_pair import smoke_pair

DOCS = Path(__file__).resolve().parents[2] / "docs"
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(page: Path) -> list[str]:
    return FENCE.findall(page.read_text(encoding="utf-8"))


ALL_BLOCKS = [pytest.param(block, id=f"{page.name}-{i}")
              for page in sorted(DOCS.glob("*.md")) for i, block in enumerate(python_blocks(page))]


def chat_file(path: Path, n: int = 12) -> list[dict[str, Any]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                          {"role": "assistant", "content": f"{i} plus {i} is {2 * i}."}]} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return rows


@pytest.mark.parametrize("block", ALL_BLOCKS)
def test_every_python_block_compiles_and_imports_what_exists(block: str) -> None:
    tree = ast.parse(block)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tunesafe"):
            module = import_module(node.module)
            missing = [a.name for a in node.names if not hasattr(module, a.name)]
            assert not missing, f"{node.module} has no {missing}"
        if isinstance(node, ast.Attribute) and getattr(node.value, "id", None) == "tunesafe":
            assert hasattr(tunesafe, node.attr), f"tunesafe.{node.attr}"


@pytest.mark.slow  # with the next two, about 30 s
def test_python_api_page_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notebook, pipeline, trying = python_blocks(DOCS / "python-api.md")[:3]
    monkeypatch.chdir(tmp_path)
    chat_file(tmp_path / "data" / "train.jsonl")  # the notebook's data/train.jsonl
    namespace: dict[str, Any] = {}
    with smoke_pair() as models:
        pointed, n = re.subn(r'^(BASE|TUNED) = "[^"]*"',
                             lambda m: f'{m[1]} = {models.base if m[1] == "BASE" else models.eroded!r}',
                             notebook, flags=re.M)
        assert n == 2, "the notebook example names BASE and TUNED"
        exec(compile(pointed, "python-api.md notebook", "exec"), namespace)
        outcome = namespace["outcome"]
        assert outcome.decision.verdict == "fail" and Path(outcome.reports["html"]).is_file()
        assert (namespace["rows"][0]["refused"], namespace["rows"][0]["harmful"]) == (True, False)
        assert namespace["report"].summary.overall.refusal.n > 0
        assert namespace["scan"].rating == "low"

        with pytest.raises(SystemExit) as exited:
            exec(compile(pipeline, "python-api.md pipeline", "exec"), namespace)
        assert exited.value.code == outcome.decision.exit_code == 1
        # the CLI exits with the same code for the same gate
        cli = CliRunner().invoke(app, ["--db", str(tmp_path / "evidence.db"), "gate", "--base", models.base,
                                       "--candidate", models.eroded, "--suite", "smoke", "--attacks",
                                       "template", "--out", str(tmp_path / "cli-report")])
        assert cli.exit_code == exited.value.code, cli.output

    exec(compile(trying, "python-api.md smoke_pair", "exec"), namespace)
    assert namespace["outcome"].decision.verdict == "fail"


@pytest.mark.slow
def test_custom_screener_example_runs(tmp_path: Path) -> None:
    """docs/screening.md: the screener registered as written finds what it is for (in its own process:
    the registration is global)."""
    (block,) = python_blocks(DOCS / "screening.md")
    data = tmp_path / "train.jsonl"
    chat_file(data)
    with data.open("a", encoding="utf-8") as rows:
        rows.write(json.dumps({"messages": [{"role": "user", "content": "WHAT IS THE TIME?"},
                                            {"role": "assistant", "content": "Noon."}]}) + "\n")
    script = f"{block}\nimport tunesafe\nreport = tunesafe.scan_data({str(data)!r}, record=False)\n" \
             "print(sorted({f.type for f in report.findings}))\n"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "style.shouting" in out.stdout


@pytest.mark.slow
def test_training_callback_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/training.md's SFTTrainer example, on a tiny random Llama (tunesafe.testing) as the base; its
    trainer's model, config, dataset and tokenizer are the script's own, given here."""
    trl = pytest.importorskip("trl", reason="the example needs tunesafe[train]")
    import transformers
    from datasets import Dataset

    from tunesafe.testing.random_llama import save_random_llama

    monkeypatch.chdir(tmp_path)
    save_random_llama(tmp_path / "base")
    rows = chat_file(tmp_path / "train.jsonl")
    (tmp_path / "tunesafe-policy.yaml").write_text("version: 1\ntraining:\n  min_examples: 10\n",
                                                   encoding="utf-8")
    example = python_blocks(DOCS / "training.md")[0]
    assert "hf:/models/qwen-0.5b" in example
    namespace: dict[str, Any] = {
        "SFTTrainer": trl.SFTTrainer,
        "model": transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "base"),
        "tokenizer": transformers.AutoTokenizer.from_pretrained(tmp_path / "base"),
        "dataset": Dataset.from_list(rows),
        "config": trl.SFTConfig(output_dir="checkpoints", max_steps=2, per_device_train_batch_size=4,
                                report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True,
                                bf16=False)}
    exec(compile(example.replace("hf:/models/qwen-0.5b", f"hf:{tmp_path / 'base'}"), "training.md", "exec"),
         namespace)
    safety = namespace["safety"]
    assert safety.record is not None and safety.record["status"] == "completed"
    assert (tmp_path / ".tunesafe" / "tunesafe.db").is_file() and (tmp_path / "out" / "adapter").is_dir()


def test_documented_return_types_are_the_annotations() -> None:
    """What docs/python-api.md's table promises, as a type checker sees it (the package ships py.typed)."""
    from tunesafe import api
    from tunesafe.analysis.metrics import Summary
    from tunesafe.engine.runner import RunReport
    from tunesafe.gating import GateOutcome
    from tunesafe.screening.scan import ScanReport
    from tunesafe.types import EvidenceRecord, GateDecision

    assert (Path(api.__file__).parent / "py.typed").is_file()
    from tunesafe.judges.base import JudgeInput
    from tunesafe.policy import Policy

    # the annotations name these only under TYPE_CHECKING (import tunesafe stays light): given here
    names = {"RunReport": RunReport, "GateOutcome": GateOutcome, "ScanReport": ScanReport, "Policy": Policy,
             "JudgeInput": JudgeInput}
    returns = {name: typing.get_type_hints(getattr(api, name), localns=names)["return"]
               for name in ("evaluate", "gate", "scan_data", "judge")}
    assert returns == {"evaluate": RunReport, "gate": GateOutcome, "scan_data": ScanReport,
                       "judge": list[dict[str, Any]]}
    gate = typing.get_type_hints(GateOutcome)
    assert gate["decision"] is GateDecision and gate["record"] is EvidenceRecord
    assert {"body", "reports"} <= set(gate)
    assert typing.get_type_hints(GateDecision)["verdict"] == typing.Literal["pass", "fail", "inconclusive"]
    assert isinstance(GateDecision.exit_code, property)
    # evaluate returns complete runs only: `report.summary.overall` needs no None check
    run = typing.get_type_hints(RunReport)
    assert {"run_id", "status", "stats"} <= set(run) and run["summary"] is Summary
    assert {"rating", "reasons", "findings", "similarity", "sha256"} <= set(typing.get_type_hints(ScanReport))
