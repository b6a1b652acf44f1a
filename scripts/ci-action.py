#!/usr/bin/env python3
"""The step that action.yml runs: `tunesafe gate` from the action's inputs, its summary.md appended to the
job summary, outputs written for later steps, and the gate's exit code mapped to the job's.

Inputs come as INPUT_* environment variables (action.yml sets them from `inputs`); GITHUB_STEP_SUMMARY and
GITHUB_OUTPUT are the files GitHub Actions gives every step (unset: skipped, so it runs locally too).

    gate exit 0 pass          -> 0
    gate exit 1 fail          -> 1, an error annotation with the reasons
    gate exit 3 inconclusive  -> 1 with INPUT_FAIL_ON_INCONCLUSIVE=true (the default), else 0 and a warning
    gate exit 2 input error   -> 2; anything else (a crash) -> that code. Neither is ever a pass.

Outputs: verdict (pass / fail / inconclusive / error), exit-code (the gate's), report-dir, decision
(decision.json's path, when written), evidence-id (the gate_decision record).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

EXIT_VERDICTS = {0: "pass", 1: "fail", 3: "inconclusive"}
TRUE = ("true", "1", "yes")
FALSE = ("false", "0", "no")
OPTIONAL = {"POLICY": "--policy", "BASE_NAME": "--base-name", "CANDIDATE_NAME": "--candidate-name"}


class InputError(Exception):
    pass


def gate_command(env: Mapping[str, str]) -> list[str]:
    """The tunesafe command line for these inputs (run with this interpreter, where it is installed)."""
    command = [sys.executable, "-m", "tunesafe.cli.app"]
    if _get(env, "STORE"):
        command += ["--db", _get(env, "STORE")]
    command += ["gate", "--base", _required(env, "BASE"), "--candidate", _required(env, "CANDIDATE"),
                "--suite", _get(env, "SUITE", "default"), "--attacks", _get(env, "ATTACKS", "all"),
                "--out", report_dir(env), "--no-progress"]
    for judge in _get(env, "JUDGE", "default").split(","):
        command += ["--judge", judge.strip()]
    for name, flag in OPTIONAL.items():
        if _get(env, name):
            command += [flag, _get(env, name)]
    return command + shlex.split(_get(env, "EXTRA_ARGS"))


def report_dir(env: Mapping[str, str]) -> str:
    return _get(env, "OUT", "tunesafe-report")


def job_exit(gate_exit: int, fail_on_inconclusive: bool) -> int:
    if gate_exit == 3:
        return 1 if fail_on_inconclusive else 0
    return gate_exit


def main(env: Mapping[str, str] = os.environ) -> int:
    try:
        command = gate_command(env)
        fail_on_inconclusive = _flag(env, "FAIL_ON_INCONCLUSIVE", default=True)
    except InputError as exc:
        _annotate("error", f"tunesafe action: {exc}")
        _write_outputs(env, {"verdict": "error", "exit-code": "2"})
        return 2
    if not _get(env, "STORE"):  # the .tunesafe/ workspace of this folder, made on the first run
        subprocess.run([sys.executable, "-m", "tunesafe.cli.app", "init"], check=False)
    print("$ " + shlex.join(["tunesafe", *command[3:]]), flush=True)
    code = subprocess.run(command, check=False).returncode

    out = Path(report_dir(env))
    decision = _decision(out / "decision.json")
    verdict = EXIT_VERDICTS.get(code, "error")
    summary = out / "summary.md"
    if verdict != "error" and summary.is_file():
        _append(env.get("GITHUB_STEP_SUMMARY"), summary.read_text(encoding="utf-8"))
    else:
        _append(env.get("GITHUB_STEP_SUMMARY"), "## tunesafe gate: no decision\n\n`tunesafe gate` exited "
                                                f"with code {code}; the job log says why.\n")
    outputs = {"verdict": verdict, "exit-code": str(code), "report-dir": str(out)}
    if decision is not None and verdict != "error":
        outputs["decision"] = str(out / "decision.json")
        outputs["evidence-id"] = str((decision.get("evidence") or {}).get("id", ""))
    _write_outputs(env, outputs)

    exit_code = job_exit(code, fail_on_inconclusive)
    reasons = "; ".join((decision or {}).get("reasons", [])[:3]) if verdict != "error" else ""
    if verdict == "fail" or (verdict == "inconclusive" and exit_code):
        _annotate("error", f"safety gate {verdict.upper()}: {reasons}")
    elif verdict == "inconclusive":
        _annotate("warning", "safety gate INCONCLUSIVE (not failing: fail-on-inconclusive is false): "
                             f"{reasons}")
    elif verdict == "error":
        _annotate("error", f"tunesafe gate stopped with exit code {code} before deciding")
    return exit_code


def _get(env: Mapping[str, str], name: str, default: str = "") -> str:
    return env.get(f"INPUT_{name}", "").strip() or default


def _required(env: Mapping[str, str], name: str) -> str:
    value = _get(env, name)
    if not value:
        raise InputError(f"input '{name.lower().replace('_', '-')}' is required")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = _get(env, name).lower()
    if not value:
        return default
    if value not in TRUE + FALSE:
        raise InputError(f"input '{name.lower().replace('_', '-')}' must be true or false, got {value!r}")
    return value in TRUE


def _decision(path: Path) -> dict[str, Any] | None:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def _append(path: str | None, text: str) -> None:
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text if text.endswith("\n") else text + "\n")


def _write_outputs(env: Mapping[str, str], outputs: Mapping[str, str]) -> None:
    _append(env.get("GITHUB_OUTPUT"), "".join(f"{k}={_one_line(v)}\n" for k, v in outputs.items()))


def _one_line(value: str) -> str:
    return " ".join(value.split())


def _annotate(level: str, message: str) -> None:
    # workflow commands: % and newlines must be escaped, or the annotation is cut
    text = message.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    print(f"::{level} title=tunesafe gate::{text}", flush=True)


def _run(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        print(__doc__)
        return 2
    return main()


if __name__ == "__main__":
    sys.exit(_run(sys.argv))
