"""A store built by real runs for the governance tests, once per module, copied for each test:

- the tiny Llama of tests/training (made on the spot, no hub) saved as the base model `base`;
- `tunesafe scan-data` of the fine-tuning file, `tunesafe train-lora` on it under the SafetyCallback
  (a real training_run record and adapter), the fine-tune recorded as `ft` (base `base`, the dataset);
- two OpenAI-compatible loopback servers for gates: one refuses the smoke suite's harmful prompts, one
  complies, so `gate(...)` records a real passing or failing gate decision naming `ft`.

The CLI runs in process (`cli`), through the real entry point, so user errors come back as exit code 2.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from tunesafe.cli.app import app, main
from tunesafe.engine.config import EvalConfig
from tunesafe.engine.targets import plan_evaluation
from tunesafe.guardrails.base import last_user
from tunesafe.testing.openai_server import serve

REPO = Path(__file__).resolve().parents[2]
REFUSAL = "I'm sorry, but I can't help with that request."
COMPLIANCE = "Sure, here it is. Step 1: [redacted]. Step 2: [redacted]."
ATTACKS = "direct_request,refusal_suppression,prefix_injection"
GATE = ("--suite", "smoke", "--attacks", ATTACKS, "--judge", "refusal", "--max-new-tokens", "32",
        "--no-progress", "--base-name", "base", "--candidate-name", "ft",
        "--attest-weights")  # `ft` is recorded by its local files; the gates ask endpoints standing in for it


def tiny_builder() -> Any:
    """The tiny model factory of tests/training (test modules cannot import another folder's conftest)."""
    spec = importlib.util.spec_from_file_location("tunesafe_tests_tiny", REPO / "tests" / "training" /
                                                  "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Tiny()


def invoke(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result


@pytest.fixture(scope="session")
def servers() -> Iterator[SimpleNamespace]:
    """Reply tables keyed by the exact prompts the gate sends: harmful ones refused by one server and
    answered by the other; everything else is echoed by both."""
    attempts = plan_evaluation(EvalConfig(suite="smoke", attacks=ATTACKS)).plan.attempts
    harmful = {last_user(a.messages) for a in attempts if a.kind == "harmful"}
    with serve(replies=dict.fromkeys(harmful, REFUSAL)) as safe, \
            serve(replies=dict.fromkeys(harmful, COMPLIANCE)) as bad:
        yield SimpleNamespace(safe=f"openai:tunesafe-test@{safe.url}",
                              eroded=f"openai:tunesafe-test@{bad.url}")


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The store after data screening, a real training run and the inventory entries (the pristine copy)."""
    pytest.importorskip("torch")
    pytest.importorskip("peft")
    tiny = tiny_builder()
    root = tmp_path_factory.mktemp("governed")
    base = root / "tiny-base"
    tiny.model().save_pretrained(base, safe_serialization=True)
    tiny.tokenizer.save_pretrained(base)
    data = root / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in tiny.rows(tiny.REFUSAL, 12)), encoding="utf-8")
    db = root / "store.db"
    url = f"sqlite:///{db}"
    invoke("--db", url, "models", "add", "base", "--ref", f"hf:{base}")
    invoke("--db", url, "scan-data", str(data), "--model-name", "ft")
    # the random tiny model's probe answers move by chance; its records are what these tests need, so a
    # probe rise is a warning here rather than a stop
    policy = root / "training-policy.yaml"
    policy.write_text("training:\n  actions: {probe_asr: warn}\n", encoding="utf-8")
    invoke("--db", url, "train-lora", str(data), "--base", f"hf:{base}", "--out", str(root / "adapter"),
           "--epochs", "1", "--lr", "1e-2", "--probe-every", "100", "--model-name", "ft",
           "--policy", str(policy))
    invoke("--db", url, "models", "add", "ft", "--ref", f"hf:{base}+{root / 'adapter'}", "--base", "base",
           "--dataset", str(data))
    return SimpleNamespace(db=db, root=root, data=data, adapter=root / "adapter", base=base)


class Cli:
    """`tunesafe ARGS` on this test's copy of the store: (exit code, stdout, stderr, whitespace folded)."""

    def __init__(self, url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        self.url, self.capsys, self.monkeypatch = url, capsys, monkeypatch

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.monkeypatch.setattr("sys.argv", ["tunesafe", "--db", self.url, *args])
        code: Any = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code
        out, err = self.capsys.readouterr()
        return (code if isinstance(code, int) else 0), out, " ".join(err.split())

    def json(self, *args: str, expect: int = 0) -> Any:
        code, out, err = self(*args, "--json")
        assert code == expect, (args, code, out, err)
        return json.loads(out)


@pytest.fixture(scope="session")
def gated(trained: SimpleNamespace, servers: SimpleNamespace,
          tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained store after one passing gate of ft (the pristine copy)."""
    db = tmp_path_factory.mktemp("gated") / "store.db"
    shutil.copy(trained.db, db)
    invoke("--db", f"sqlite:///{db}", "gate", "--base", servers.safe, "--candidate", servers.safe, *GATE,
           "--out", str(db.parent / "gate"))
    return db


def _world(source: Path, trained: SimpleNamespace, servers: SimpleNamespace, tmp_path: Path,
           capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    db = tmp_path / "store.db"
    shutil.copy(source, db)
    url = f"sqlite:///{db}"
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.delenv("TUNESAFE_DB", raising=False)
    cli = Cli(url, capsys, monkeypatch)

    def gate(candidate: str) -> int:
        code, out, err = cli("gate", "--base", servers.safe, "--candidate", candidate, *GATE,
                             "--out", str(tmp_path / "gate"))
        assert code in (0, 1), (out, err)
        return code

    return SimpleNamespace(db=db, url=url, cli=cli, gate=gate, servers=servers, trained=trained, tmp=tmp_path)


@pytest.fixture
def world(trained: SimpleNamespace, servers: SimpleNamespace, tmp_path: Path,
          capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """This test's copy of the trained store, its CLI, and `gate(candidate_ref)` against the safe base."""
    return _world(trained.db, trained, servers, tmp_path, capsys, monkeypatch)


@pytest.fixture
def passed(gated: Path, trained: SimpleNamespace, servers: SimpleNamespace, tmp_path: Path,
           capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """Like `world`, after a passing gate of ft."""
    return _world(gated, trained, servers, tmp_path, capsys, monkeypatch)


# ---- documents, exports and bundles: the gated store plus a model without evidence, shared read-only ----


@pytest.fixture(scope="session")
def documented(gated: Path, trained: SimpleNamespace,
               tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The store after ft's passing gate, plus a model `bare` with an inventory entry and nothing else.
    Built once; the document, export and bundle tests only read it."""
    root = tmp_path_factory.mktemp("documented")
    shutil.copy(gated, root / "store.db")
    url = f"sqlite:///{root / 'store.db'}"
    invoke("--db", url, "models", "add", "bare", "--ref", "openai:bare@http://127.0.0.1:9/v1",
           "--base", "base")
    return SimpleNamespace(root=root, db=url, data=trained.data, adapter=trained.adapter,
                           cli=lambda *args: CliRunner().invoke(app, ["--db", url, *args]))


@pytest.fixture
def tunesafe(documented: SimpleNamespace, capsys: pytest.CaptureFixture[str],
             monkeypatch: pytest.MonkeyPatch) -> Callable[..., SimpleNamespace]:
    """`tunesafe --db DOCUMENTED ARGS` through the real entry point: exit_code, stdout, stderr (whitespace
    folded)."""
    monkeypatch.setenv("COLUMNS", "250")
    cli = Cli(documented.db, capsys, monkeypatch)

    def run(*args: str) -> SimpleNamespace:
        code, out, err = cli(*args)
        return SimpleNamespace(exit_code=code, stdout=out, stderr=err)

    return run
