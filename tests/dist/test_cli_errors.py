"""The one-line error of the installed command: it prints user text as text (a path or a fix with square
brackets, pip extras such as 'tunesafe[screen]', is not swallowed as Rich markup), and the heavy commands
give it before importing torch or transformers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_brackets_in_an_error_are_printed(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "tunesafe.cli.app", "judge", "pairs[bold].jsonl"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "file not found: pairs[bold].jsonl" in done.stderr, done.stderr


# A bad line, a remote base or a policy without its section is refused before the heavy imports: a user
# waits a second for the error, not for torch and a model load.
PROBE = """
import sys
from tunesafe.cli.app import main
sys.argv = ["tunesafe", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    heavy = sorted(m for m in ("torch", "transformers") if m in sys.modules)
    print("exit", exc.code, "heavy", ",".join(heavy) or "none")
"""


def run_probe(tmp_path: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    last = (done.stdout.strip().splitlines() or [f"no exit line (exit code {done.returncode})"])[-1]
    return last + " | " + " ".join(done.stderr.split())


def test_bad_input_is_refused_before_torch_loads(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "a", "completion": "b",}\n')
    chat = tmp_path / "chat.jsonl"
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    chat.write_text(json.dumps({"messages": turns}) + "\n")
    no_section = tmp_path / "policy.yaml"
    no_section.write_text("max_regression_points: 5\n")
    out = ("--out", str(tmp_path / "o"))
    cases = [
        (("scan-data", str(bad), "--no-record"), "bad.jsonl:2: malformed JSON"),
        (("train-lora", str(bad), "--base", "embedded:smollm2-135m", *out), "bad.jsonl:2: malformed JSON"),
        (("train-lora", str(chat), "--base", "openai:m@http://127.0.0.1:9/v1", *out),
         "training needs a local base model"),
        (("train-lora", str(chat), "--base", "embedded:smollm2-135m", *out, "--policy", str(no_section)),
         "no training: section"),
    ]
    for args, fragment in cases:
        said = run_probe(tmp_path, *args)
        assert said.startswith("exit 2 heavy none |") and fragment in said, (args, said)
    assert not (tmp_path / "o").exists()


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tunesafe.cli.app", "--db", f"sqlite:///{cwd}/store.db", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def test_a_text_file_that_is_not_utf8_is_one_error_line(tmp_path: Path) -> None:
    # Latin-1 bytes (a file saved by an old editor): UnicodeDecodeError is a ValueError, not an OSError, and
    # escaped the handlers of the catalogue and token readers as a traceback with exit 1.
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"controls: []\n# caf\xe9 placeholder token 0123456789abcdef\n")
    for args in (("controls", "list", "--catalogue", str(latin)),
                 ("controls", "status", "m1", "--catalogue", str(latin)),
                 ("serve", "--token-file", str(latin))):
        done = run_cli(tmp_path, *args)
        assert done.returncode == 2, (args, done.stderr)
        assert "Traceback" not in done.stderr and "latin.yaml" in done.stderr and "UTF-8" in done.stderr, (
            args, done.stderr)


def test_a_lease_that_is_not_a_finite_number_of_seconds_is_refused(tmp_path: Path) -> None:
    # `nan <= 0` is False, so NaN passed the check and crashed in timedelta (and inf/1e400 overflowed it).
    for value in ("nan", "inf", "1e400", "1e300"):
        done = run_cli(tmp_path, "redteam", "run-due", "--lease", value)
        assert done.returncode == 2 and "Traceback" not in done.stderr, (value, done.stderr)
        assert "--lease" in done.stderr, (value, done.stderr)


def test_a_workspace_config_that_is_not_utf8_is_one_error_line(tmp_path: Path) -> None:
    (tmp_path / ".tunesafe").mkdir()
    (tmp_path / ".tunesafe" / "config.yaml").write_bytes(b"db: caf\xe9.db\n")
    env = {k: v for k, v in os.environ.items() if k != "TUNESAFE_DB"}
    done = subprocess.run([sys.executable, "-m", "tunesafe.cli.app", "models", "list"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "config.yaml" in done.stderr and "UTF-8" in done.stderr, done.stderr


def test_chat_data_not_in_utf8_names_the_line_before_torch_loads(tmp_path: Path) -> None:
    # read_chat_jsonl let UnicodeDecodeError through: train-lora printed a traceback (exit 1).
    data = tmp_path / "latin.jsonl"
    good = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]}\n'
    data.write_bytes(good + good.replace(b"ok", b"caf\xe9"))
    said = run_probe(tmp_path, "train-lora", str(data), "--base", "embedded:smollm2-135m", "--out",
                     str(tmp_path / "o"))
    assert said.startswith("exit 2 heavy none |") and "latin.jsonl:2:" in said and "UTF-8" in said, said
    assert not (tmp_path / "o").exists()


def test_a_bom_before_jsonl_is_not_a_malformed_first_line(tmp_path: Path) -> None:
    # Notepad and Excel write a UTF-8 BOM; scan-data and suites drop it, mix-safety and judge pairs called
    # line 1 malformed JSON with a fix that did not mention it.
    from tunesafe.judges.pairs import read_pairs

    chat = tmp_path / "chat.jsonl"
    row = '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]}\n'
    chat.write_bytes(b"\xef\xbb\xbf" + (row * 40).encode())
    out = tmp_path / "mixed.jsonl"
    done = run_cli(tmp_path, "mix-safety", str(chat), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert not out.read_bytes().startswith(b"\xef\xbb\xbf") and row.strip() in out.read_text(encoding="utf-8")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_bytes(b'\xef\xbb\xbf{"request": "hi", "response": "ok"}\n')
    assert [(p.request, p.response) for p in read_pairs(pairs)] == [("hi", "ok")]


def test_eval_refuses_a_temperature_or_max_pause_that_is_not_a_finite_number(tmp_path: Path) -> None:
    # EvalConfig checked neither a negative/NaN temperature nor a NaN max_pause (`nan < 0` is False): the
    # dry run accepted them (exit 0) and a real run would send them to the model and store them in the
    # run's config record.
    model = "openai:m@http://127.0.0.1:9/v1"
    for option, value in (("--temperature", "-1"), ("--temperature", "nan"), ("--temperature", "inf"),
                          ("--max-pause", "nan")):
        done = run_cli(tmp_path, "eval", model, "--dry-run", "--suite", "smoke", option, value)
        assert done.returncode == 2 and "Traceback" not in done.stderr, (option, value, done.stderr)
        assert f"{option}:" in done.stderr, (option, value, done.stderr)


def test_judge_pairs_out_that_cannot_be_written_is_one_error_line(tmp_path: Path) -> None:
    # --out under a file (not a folder) raised NotADirectoryError from a bare open(): exit 1, traceback.
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"request": "hi", "response": "ok"}\n')
    (tmp_path / "afile").write_text("")
    done = run_cli(tmp_path, "judge", "pairs", str(pairs), "--out", str(tmp_path / "afile" / "v.jsonl"))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "afile/v.jsonl" in done.stderr and "--out" in done.stderr, done.stderr


def test_eval_dry_run_checks_what_the_real_run_would_refuse(tmp_path: Path) -> None:
    # The dry run is how a user checks a command before spending hours on it, yet it said nothing (exit 0)
    # about an unknown judge, a policy file with a typo'd key or a local model path that does not exist,
    # which the real run refuses, and printed a cost of "$-3.64" for a negative price.
    typo = tmp_path / "policy.yaml"
    typo.write_text("max_regresion_points: 5\n")
    model = "openai:m@http://127.0.0.1:9/v1"
    cases = [
        (("--judge", "nosuch"), "unknown judges 'nosuch'"),
        (("--policy", str(typo)), "policy.yaml:1: max_regresion_points"),
        (("--policy", str(tmp_path / "missing.yaml")), "missing.yaml"),
        (("--usd-per-mtok", "-1"), "--usd-per-mtok:"),
        (("--usd-per-mtok", "nan"), "--usd-per-mtok:"),
        (("--model", "hf:./no-such-model"), "model path 'no-such-model' does not exist"),
        (("--model", "embedded:no-such-model"), "unknown embedded model 'no-such-model'"),
    ]
    for extra, fragment in cases:
        target = [extra[1]] if extra[0] == "--model" else [model, *extra]
        done = run_cli(tmp_path, "eval", *target, "--dry-run", "--suite", "smoke")
        assert done.returncode == 2 and "Traceback" not in done.stderr, (extra, done.stderr)
        assert fragment in " ".join(done.stderr.split()), (extra, done.stderr)


def test_a_report_folder_that_cannot_be_made_is_refused_before_any_work(tmp_path: Path) -> None:
    # gate --out naming a file ran both evaluations and recorded the decision, then failed writing the
    # reports (exit 2 after what may be hours); train-lora --report, or --out under a file, failed the
    # same way after training, and guardrails verify --out after every guard call.
    from tunesafe.testing.openai_server import serve_subprocess

    afile = tmp_path / "afile"
    afile.write_text("")
    with serve_subprocess() as url:
        model = f"openai:tunesafe-test@{url}"
        done = run_cli(tmp_path, "gate", "--base", model, "--candidate", model, "--suite", "smoke", "--limit",
                       "2", "--attacks", "direct_request", "--out", str(afile))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "--out" in done.stderr and "afile" in done.stderr, done.stderr
    assert not (tmp_path / "store.db").exists(), "nothing is evaluated or stored before the check"
    done = run_cli(tmp_path, "guardrails", "verify", "--guard", "moderation:http://127.0.0.1:9/v1", "--out",
                   str(afile / "reports"))
    assert done.returncode == 2 and "--out" in done.stderr and "afile" in done.stderr, done.stderr
    chat = tmp_path / "chat.jsonl"
    chat.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]}\n')
    base = ("train-lora", str(chat), "--base", "embedded:smollm2-135m")
    for args, option in (((*base, "--out", str(tmp_path / "o"), "--report", str(afile)), "--report"),
                         ((*base, "--out", str(afile / "o")), "--out")):
        said = run_probe(tmp_path, *args)
        assert said.startswith("exit 2 heavy none |") and option in said and "afile" in said, said
    assert not (tmp_path / "o").exists()
