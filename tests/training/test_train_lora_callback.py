"""`tunesafe train-lora` under the SafetyCallback, on the tiny Llama of conftest saved as an hf: folder:
a policy limit stops the run, and the evidence (a real SQLite store) and the report are written anyway;
the report shows the curves and events of the training_run body; a run refused before the first step
and bad input exit 2. The loop gives the same adapter for a seed with or without the probes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tunesafe.evidence.store import Store
from tunesafe.types import RecordType

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")

POLICY_MAX_STEPS = """\
training:
  max_steps: 12
  max_probe_asr_increase_points: 100
  max_probe_over_refusal_increase_points: 100
"""


def tunesafe(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real entry point, so a user error must come out as one line and exit code 2."""
    return subprocess.run([sys.executable, "-m", "tunesafe.cli.app", *args], capture_output=True, text=True,
                          timeout=900, cwd=cwd)


def assert_user_error(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert fragment in " ".join(result.stderr.split()), result.stderr


@pytest.fixture(scope="module")
def tiny_base(tiny: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-base")
    tiny.model().save_pretrained(folder, safe_serialization=True)
    tiny.tokenizer.save_pretrained(folder)
    return folder


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def polyline_points(html: str, series: str) -> int:
    match = re.search(rf"<polyline data-series='{re.escape(series)}' points='([^']*)'", html)
    assert match, f"no polyline for {series}"
    return len(match.group(1).split())


def only_training_run(db: Path) -> Any:
    """The store's one training_run record."""
    store = Store.open(str(db))
    try:
        (run,) = store.records(type=RecordType.TRAINING_RUN)
    finally:
        store.close()
    return run

def test_policy_stop_still_writes_evidence_and_report(tiny: Any, tiny_base: Path, tmp_path: Path) -> None:
    data = write_rows(tmp_path / "train.jsonl", tiny.rows(tiny.REFUSAL, 12))
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY_MAX_STEPS)
    db, out = tmp_path / "evidence.db", tmp_path / "adapter"
    result = tunesafe("--db", str(db), "train-lora", str(data), "--base", f"hf:{tiny_base}",
                      "--out", str(out), "--epochs", "2", "--lr", "1e-2", "--probe-every", "6",
                      "--policy", str(policy), "--model-name", "tiny-ft", cwd=tmp_path)
    assert result.returncode == 1, (result.stdout, result.stderr)  # stopped: not a pass for CI
    assert "STOPPED" in result.stdout and "max_steps" in result.stdout

    store = Store.open(str(db))
    try:
        assert store.verify().ok
        (run,) = store.records(type=RecordType.TRAINING_RUN)
    finally:
        store.close()
    body = run.body
    assert run.subject == "tiny-ft"
    assert body["status"] == "stopped" and body["stopped_by"]["kind"] == "max_steps"
    assert body["steps"] == 12 and body["planned_steps"] == 24
    assert [step for step, _ in body["loss_curve"]] == list(range(1, 13))
    assert [(p["step"], p["trigger"]) for p in body["probes"]] == [(0, "start"), (6, "interval"),
                                                                   (12, "interval")]
    assert [(e["kind"], e["step"], e["action"]) for e in body["events"]] == [
        ("max_steps", 0, "warn"), ("max_steps", 12, "stop")]  # announced at step 0, enforced at 12
    config = body["config"]
    assert config["arguments"] == "LoopArguments" and config["per_device_train_batch_size"] == 1
    lineage = body["lineage"]
    assert lineage["base"]["ref"] == f"hf:{tiny_base}" and len(lineage["base"]["sha256"]) == 64
    assert lineage["dataset"]["hash_of"] == "file" and lineage["dataset"]["n_examples"] == 12
    assert lineage["run"] == body["run_id"]
    assert lineage["adapter"]["path"] == str(out.resolve()) and (out / "adapter_model.safetensors").is_file()

    report = tmp_path / "adapter-report"  # the default: next to --out, never inside it (hashed)
    html = (report / "report.html").read_text()
    assert polyline_points(html, "training loss") == 12
    assert polyline_points(html, "probe ASR (harmful)") == 3
    assert polyline_points(html, "probe over-refusal") == 3
    assert "STOPPED" in html and body["stopped_by"]["reason"] in html
    events = re.search(r"<div class=\"card\" id=\"events\">(.*?)</div>", html, re.S)
    assert events and events.group(1).count("<tr") == 1 + len(body["events"])  # header + one per event
    assert lineage["adapter"]["sha256"] in html and lineage["dataset"]["sha256"] in html
    assert json.loads((report / "training_run.json").read_text())["run_id"] == body["run_id"]
    summary = (report / "summary.md").read_text()
    assert "STOPPED" in summary and "| 12 | max_steps | stop |" in summary

    again = tmp_path / "from-store"
    rendered = tunesafe("--db", str(db), "training", "report", body["run_id"], "--out", str(again),
                        cwd=tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    html_again = (again / "report.html").read_text()
    assert f"evidence record #{run.id}" in html_again
    assert polyline_points(html_again, "training loss") == 12
    missing = tunesafe("--db", str(db), "training", "report", "nope", "--out", str(again), cwd=tmp_path)
    assert_user_error(missing, "no training_run record")


def test_refused_run_exits_2_with_evidence_and_report(tiny: Any, tiny_base: Path, tmp_path: Path) -> None:
    data = write_rows(tmp_path / "train.jsonl", tiny.rows(tiny.REFUSAL, 4))
    policy = tmp_path / "policy.yaml"
    policy.write_text("training:\n  min_examples: 10\n")
    db, out = tmp_path / "evidence.db", tmp_path / "adapter"
    result = tunesafe("--db", str(db), "train-lora", str(data), "--base", f"hf:{tiny_base}",
                      "--out", str(out), "--policy", str(policy), "--report", str(tmp_path / "r"),
                      cwd=tmp_path)
    assert_user_error(result, "training.actions.min_examples")
    assert not (out / "adapter_model.safetensors").exists()  # refused before the first step
    run = only_training_run(db)
    assert run.body["status"] == "refused" and run.body["steps"] == 0
    assert "REFUSED" in (tmp_path / "r" / "report.html").read_text()


def test_bad_input_exits_2(tiny: Any, tiny_base: Path, tmp_path: Path) -> None:
    rows = tiny.rows(tiny.REFUSAL, 3)
    rows[1] = {"messages": [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "last"}]}
    data = write_rows(tmp_path / "train.jsonl", rows)
    out = str(tmp_path / "out")
    result = tunesafe("train-lora", str(data), "--base", f"hf:{tiny_base}", "--out", out, cwd=tmp_path)
    assert_user_error(result, "train.jsonl:2")

    good = write_rows(tmp_path / "good.jsonl", tiny.rows(tiny.REFUSAL, 3))
    no_section = tmp_path / "policy.yaml"
    no_section.write_text("max_regression_points: 5\n")
    assert_user_error(tunesafe("train-lora", str(good), "--base", f"hf:{tiny_base}", "--out", out, "--policy",
                               str(no_section), cwd=tmp_path), "no training: section")
    assert_user_error(tunesafe("train-lora", str(good), "--base", f"hf:{tiny_base}", "--out", out,
                               "--probe-every", "0", cwd=tmp_path), "--probe-every")

    # an adapter trained for another base (other hidden size) is refused when continuing training
    from peft import LoraConfig, get_peft_model

    other = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=len(tiny.tokenizer), hidden_size=48, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2))
    adapter = tmp_path / "other-adapter"
    get_peft_model(other, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(str(adapter))
    assert_user_error(tunesafe("train-lora", str(good), "--base", f"hf:{tiny_base}+{adapter}", "--out", out,
                               cwd=tmp_path), "adapter does not match the base model")
    assert not Path(out).exists()


def test_an_example_with_no_answer_token_left_is_named_by_file_and_line(tiny: Any, tiny_base: Path,
                                                                       tmp_path: Path) -> None:
    """The line in the file, not the example's index: blank lines and other formats make them differ."""
    rows = tiny.rows(tiny.REFUSAL, 3)
    long_prompt = {"role": "user", "content": "word " * 400}
    rows[2] = {"messages": [long_prompt, {"role": "assistant", "content": "ok"}]}
    data = tmp_path / "train.jsonl"
    data.write_text("\n" + "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")  # example 3: line 4
    result = tunesafe("train-lora", str(data), "--base", f"hf:{tiny_base}", "--out", str(tmp_path / "out"),
                      cwd=tmp_path)
    assert_user_error(result, "train.jsonl:4: its prompt fills the 256 tokens")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("inside", [".", "report", "a/b"])
def test_a_report_folder_inside_out_is_refused(tiny: Any, tiny_base: Path, tmp_path: Path,
                                               inside: str) -> None:
    """The adapter folder is hashed whole (subfolders included): a report in it would change the hash."""
    data = write_rows(tmp_path / "train.jsonl", tiny.rows(tiny.REFUSAL, 2))
    out = tmp_path / "out"
    result = tunesafe("train-lora", str(data), "--base", f"hf:{tiny_base}", "--out", str(out), "--report",
                      str(out / inside), "--epochs", "1", cwd=tmp_path)
    assert_user_error(result, "the report would be hashed with the adapter")
    assert not out.exists()


class InterruptingJudge:
    """Ctrl-C while the probe before the first step is judged (the probe takes seconds on a real model)."""

    name = "interrupting"
    version = "1"

    async def judge(self, items: Any) -> list[Any]:
        raise KeyboardInterrupt


def test_an_interrupt_during_the_start_probe_is_recorded(tiny: Any, tmp_path: Path) -> None:
    from tunesafe.training.callback import SafetyCallback
    from tunesafe.training.lora_sft import LoraConfig, train_lora

    db = tmp_path / "evidence.db"
    callback = SafetyCallback(store=db, judge=InterruptingJudge(), max_new_tokens=4)
    conversations = [r["messages"] for r in tiny.rows(tiny.COMPLY, 3)]
    with pytest.raises(KeyboardInterrupt):
        train_lora(tiny.model(), tiny.tokenizer, conversations, tmp_path / "out", LoraConfig(epochs=1),
                   callback=callback)
    assert callback.record is not None and callback.record["status"] == "interrupted"  # the CLI's report
    run = only_training_run(db)
    assert run.body["status"] == "interrupted" and run.body["steps"] == 0
    assert not (tmp_path / "out").exists()


def test_probes_do_not_change_the_adapter(tiny: Any, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from tunesafe.policy.model import TrainingPolicy
    from tunesafe.training.callback import SafetyCallback
    from tunesafe.training.lora_sft import LoraConfig, train_lora

    conversations = [r["messages"] for r in tiny.rows(tiny.COMPLY, 6)]
    config = LoraConfig(epochs=2, learning_rate=1e-2, seed=3)
    train_lora(tiny.model(), tiny.tokenizer, conversations, tmp_path / "plain", config)
    never_stop = TrainingPolicy(max_probe_asr_increase_points=100, max_probe_over_refusal_increase_points=100)
    callback = SafetyCallback(policy=never_stop, probe_every=2, max_new_tokens=4)
    info = train_lora(tiny.model(), tiny.tokenizer, conversations, tmp_path / "probed", config,
                      callback=callback)
    assert len(info["training_run"]["probes"]) == 7  # start + every 2 of 12 steps
    plain = load_file(str(tmp_path / "plain" / "adapter_model.safetensors"))
    probed = load_file(str(tmp_path / "probed" / "adapter_model.safetensors"))
    assert plain.keys() == probed.keys()
    assert all(torch.equal(plain[k], probed[k]) for k in plain)


def test_stop_on_regression_makes_probe_rises_stop(tmp_path: Path) -> None:
    from tunesafe.cli.training_cmds import _safety_callback, _training_policy

    policy = tmp_path / "policy.yaml"
    policy.write_text("training:\n  actions: {probe_asr: warn, probe_over_refusal: warn, max_steps: warn}\n")
    data = write_rows(tmp_path / "d.jsonl", [])
    kwargs: dict[str, Any] = {"store": None, "model_name": None, "base": "hf:/x", "data": data}
    as_written = _safety_callback(_training_policy(policy, False), 5, **kwargs)
    written = as_written.policy.actions
    assert (written.probe_asr, written.probe_over_refusal) == ("warn", "warn")
    stricter = _safety_callback(_training_policy(policy, True), 5, **kwargs)
    actions = stricter.policy.actions
    assert (actions.probe_asr, actions.probe_over_refusal, actions.max_steps) == ("stop", "stop", "warn")
    assert stricter.policy_hash != as_written.policy_hash  # the record names the policy enforced
    default_stricter = _safety_callback(_training_policy(None, True), "auto", **kwargs)
    assert default_stricter.policy.actions.probe_over_refusal == "stop"


def test_continued_adapter_is_part_of_the_recorded_base(tiny: Any, tiny_base: Path, tmp_path: Path) -> None:
    """Training BASE+ADAPTER starts from the adapter's weights: the record's base is that ref, hashed as
    `tunesafe eval` hashes it (base weights and adapter files), not the bare base's hash."""
    from peft import LoraConfig, get_peft_model

    from tunesafe.models.hashing import files_sha256

    start = tmp_path / "start-adapter"
    get_peft_model(tiny.model(), LoraConfig(r=2, target_modules=["q_proj", "v_proj"],
                                            init_lora_weights=False)).save_pretrained(str(start))
    data = write_rows(tmp_path / "train.jsonl", tiny.rows(tiny.REFUSAL, 2))
    db, ref = tmp_path / "evidence.db", f"hf:{tiny_base}+{start}"
    result = tunesafe("--db", str(db), "train-lora", str(data), "--base", ref, "--out", str(tmp_path / "out"),
                      "--epochs", "1", "--lr", "1e-5", cwd=tmp_path)
    assert result.returncode == 0, (result.stdout, result.stderr)
    # OUT holds the whole continued adapter: the candidate is the bare base with OUT, on one line to copy
    gate = f"gate it: tunesafe gate --base {ref} --candidate hf:{tiny_base}+{tmp_path / 'out'}"
    assert gate in result.stdout.splitlines(), result.stdout
    run = only_training_run(db)
    base = run.body["lineage"]["base"]
    assert base["ref"] == ref
    assert base["sha256"] == files_sha256([tiny_base / "model.safetensors", start / "adapter_config.json",
                                           start / "adapter_model.safetensors"])


def test_stop_on_regression_with_the_asr_check_switched_off_is_refused(tmp_path: Path) -> None:
    """--stop-on-regression promises a stop when the probe ASR rises; a policy that sets no ASR limit
    would let any rise through without a word."""
    from tunesafe.cli.training_cmds import _training_policy
    from tunesafe.errors import UserError

    policy = tmp_path / "policy.yaml"
    policy.write_text("training:\n  max_probe_asr_increase_points: null\n")
    assert _training_policy(policy, False) is not None  # without the flag the policy is as written
    with pytest.raises(UserError, match="max_probe_asr_increase_points") as err:
        _training_policy(policy, True)
    assert err.value.where == str(policy)
